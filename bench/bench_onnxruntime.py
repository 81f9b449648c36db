"""ONNX Runtime session options for the two networks on this CPU: threads, spinning, graph
optimisation, memory arena; alone, and with another process keeping one core busy (as the other
nodes of the graph do on a robot's computer).

Median ms of DeepExp3D (batch 1 and 4, the shipped model) and of RetinaFace at 640x480, over 200
runs after a warm-up, for each combination printed. Idle worker threads of ONNX Runtime spin
(busy-wait) for new work by default: fast alone, but the spinning steals the core the other nodes
need; `allow_spinning: 0` is what fer3d_ros sets (OnnxRuntimeBackend).
"""
from __future__ import annotations

import multiprocessing
import time

import numpy as np
import onnxruntime as ort

from fer3d_ros.core.expression.regressor import MODEL_FILE as REGRESSOR_FILE
from fer3d_ros.core.expression.regressor import load_card
from fer3d_ros.core.files import find_model
from fer3d_ros.core.frontend.detection import MODEL_FILE as DETECTOR_FILE

REPEATS = 200


def session(path, threads: int, spinning: bool = True, optimisation: str = 'all', arena: bool = True):
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = {'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimisation]
    options.enable_cpu_mem_arena = arena
    options.add_session_config_entry('session.intra_op.allow_spinning', '1' if spinning else '0')
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def median_ms(run) -> float:
    for _ in range(10):
        run()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def busy(stop) -> None:
    """Keep one core busy until `stop` is set (the rest of the graph, on a robot)."""
    while not stop.is_set():
        sum(range(10000))


def measure(workloads: dict, configurations: dict) -> None:
    print(f'  {"configuration":34s}' + ''.join(f'{name:>20s}' for name in workloads))
    for label, settings in configurations.items():
        cells = []
        for path, feed in workloads.values():
            run_session = session(path, **settings)
            name = run_session.get_inputs()[0].name
            cells.append(median_ms(lambda: run_session.run(None, {name: feed})))
        print(f'  {label:34s}' + ''.join(f'{ms:17.2f} ms' for ms in cells), flush=True)


def main() -> None:
    size = load_card(find_model(REGRESSOR_FILE)).input_size
    rng = np.random.default_rng(0)
    workloads = {
        'DeepExp3D, 1 face': (find_model(REGRESSOR_FILE), rng.uniform(0, 255, (1, 3, size, size)).astype(np.float32)),
        'DeepExp3D, 4 faces': (find_model(REGRESSOR_FILE), rng.uniform(0, 255, (4, 3, size, size)).astype(np.float32)),
        'RetinaFace 640x480': (find_model(DETECTOR_FILE), rng.uniform(-120, 130, (1, 3, 480, 640)).astype(np.float32)),
    }
    configurations = {
        '1 thread (fer3d_ros default)': {'threads': 1},
        '1 thread, basic optimisation': {'threads': 1, 'optimisation': 'basic'},
        '1 thread, no memory arena': {'threads': 1, 'arena': False},
        '2 threads, spinning': {'threads': 2},
        '2 threads, no spinning': {'threads': 2, 'spinning': False},
    }
    print(f'ONNX Runtime {ort.__version__}, {multiprocessing.cpu_count()} cores; {REGRESSOR_FILE} at {size} px')
    print('alone:')
    measure(workloads, configurations)
    stop = multiprocessing.Event()
    other = multiprocessing.Process(target=busy, args=(stop,), daemon=True)
    other.start()
    try:
        print('with another process keeping one core busy:')
        measure(workloads, {k: v for k, v in configurations.items() if k.startswith(('1 thread (', '2 threads'))})
    finally:
        stop.set()
        other.join()


if __name__ == '__main__':
    main()
