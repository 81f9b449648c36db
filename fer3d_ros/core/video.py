"""Reading video files frame by frame (OpenCV), for the demo, the offline tools and the benchmarks."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


def read_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """BGR frames of a video file; OSError if it cannot be opened or holds no frame."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f'cannot open video {path} (not a video file, or a codec this OpenCV build lacks)')
    count = 0
    try:
        while max_frames is None or count < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield frame
    finally:
        capture.release()
    if count == 0:
        raise OSError(f'{path} holds no readable frame (corrupt or not a video)')


TILE_COPIES = {1: (1, 1), 2: (1, 2), 4: (2, 2), 8: (2, 4)}  # copies -> tile rows, columns


def tiled(frame: np.ndarray, size: tuple[int, int], copies: int = 1) -> np.ndarray:
    """`frame` resized to `size` (width, height), or shrunk into `copies` tiles of that size (2, 4 or
    8 moving faces from a clip of one); what the tiles leave is black."""
    if copies == 1:
        return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
    rows, columns = TILE_COPIES[copies]
    width, height = size
    tile = cv2.resize(frame, (width // columns, height // rows), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width, *frame.shape[2:]), frame.dtype)
    grid = np.vstack([np.hstack([tile] * columns)] * rows)
    canvas[:grid.shape[0], :grid.shape[1]] = grid
    return canvas
