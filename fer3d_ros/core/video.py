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
