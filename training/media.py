"""Reading clips and landmark tracks for the offline tools."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from fer3d_ros.core.frontend.detection import FaceDetector
from fer3d_ros.core.frontend.landmarks import Landmarker
from fer3d_ros.core.video import read_frames


def detect_faces(image: np.ndarray, detector: FaceDetector,
                 landmarker: Landmarker) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every face of one image as (box (4,), landmarks (68, 2))."""
    detections = detector.detect(image)
    if not detections:
        return []
    boxes = np.array([d.box for d in detections])
    landmarks = landmarker(image, boxes, np.array([d.keypoints5[:2] for d in detections]))
    return list(zip(boxes, landmarks))


def clip_detections(path: Path, detector: FaceDetector, landmarker: Landmarker,
                    cache: Path | None = None) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """`detect_faces` on every frame of a clip, kept in `cache` (a folder) for the next run."""
    cached = cache / f'{path.stem}.pickle' if cache else None
    if cached and cached.is_file():
        return pickle.loads(cached.read_bytes())
    detections = [detect_faces(frame, detector, landmarker) for frame in read_frames(path)]
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(pickle.dumps(detections))
    return detections
