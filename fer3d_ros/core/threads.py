"""The thread pools of the numerical libraries in a node's process: BLAS and OpenMP (through
threadpoolctl) and OpenCV's.

Each library starts a pool of one thread per core. The graph's work is many small problems (a
100x100 identity update, a 55-variable bounded solve, a face-sized resize) where a pool's
threads only wait on each other, and on a robot's computer several node processes share the
cores: with unpinned pools per-track calibration cost 57 ms a frame instead of 1.5 ms and the
graph ran at a quarter of its speed (2 cores, nothing set in the environment, as a robot's shell
is). So every node limits the pools of its own process, whatever the environment says.
ONNX Runtime's threads are separate: they are each session's own setting.
"""
from __future__ import annotations

import cv2
import numpy  # noqa: F401 - loaded first: threadpoolctl can only limit libraries already loaded
import scipy.linalg  # noqa: F401 - SciPy brings its own OpenBLAS
from threadpoolctl import ThreadpoolController

_first_limiter = None  # restores the pools' own sizes
_requested: int | None = None  # the limit in force: the largest request so far, 0 = none
_original_opencv_threads = cv2.getNumThreads()


def limit_library_threads(threads: int) -> int:
    """Limit every BLAS, OpenMP and OpenCV pool of this process to `threads` threads (0: leave the
    libraries' own defaults). Several nodes in one process may ask: the largest request holds,
    and 0 (no limit) wins. Returns the limit in force (0: none)."""
    global _first_limiter, _requested
    if threads < 0:
        raise ValueError(f'library threads must be >= 0 (0 = the libraries\' defaults), got {threads}')
    _requested = 0 if threads == 0 or _requested == 0 else max(threads, _requested or 0)
    if _requested:
        limiter = ThreadpoolController().limit(limits=_requested)
        _first_limiter = _first_limiter or limiter
        cv2.setNumThreads(_requested)
    elif _first_limiter is not None:
        _first_limiter.restore_original_limits()
        cv2.setNumThreads(_original_opencv_threads)
    return _requested


def library_threads() -> dict[str, int]:
    """The largest pool of each kind now loaded in this process: {'blas': n, 'openmp': n, 'opencv': n}
    (a kind with no library loaded is left out). Read from the libraries, ~1 ms."""
    sizes: dict[str, int] = {}
    for pool in ThreadpoolController().info():
        sizes[pool['user_api']] = max(sizes.get(pool['user_api'], 0), pool['num_threads'])
    sizes['opencv'] = cv2.getNumThreads()
    return sizes
