"""The face front end: detect, find 68 landmarks, track, register to the template, head pose.

`FaceFrontEnd.process(bgr)` takes one frame and returns one `FaceObservation` per face, in
original-image pixels, plus the time each stage took (for diagnostics and benchmarks).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fer3d_ros.core.alignment import align_face, similarity_transform
from fer3d_ros.core.detection import FaceDetector, check_image
from fer3d_ros.core.face_template import FaceTemplate
from fer3d_ros.core.landmarks import Landmarker
from fer3d_ros.core.pose import ScaledOrthographicCamera, fit_camera
from fer3d_ros.core.tracking import FaceTracker

STAGES = ('detect', 'landmarks', 'track', 'align', 'pose')


@dataclass(frozen=True, eq=False)
class FaceObservation:
    id: str
    confirmed: bool
    score: float
    box: np.ndarray               # (4,) x0, y0, x1, y1 pixels
    landmarks: np.ndarray         # (68, 2) pixels
    pose: ScaledOrthographicCamera
    alignment: np.ndarray         # (2, 3) image -> crop
    crop: np.ndarray | None       # (S, S, 3) bgr8, None when crops are off


@dataclass
class FrameResult:
    faces: list[FaceObservation]
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, see STAGES


class FaceFrontEnd:
    def __init__(self, detector: FaceDetector, landmarker: Landmarker, tracker: FaceTracker,
                 template: FaceTemplate, crop_size: int = 224, make_crops: bool = True) -> None:
        if crop_size < 16:
            raise ValueError(f'crop_size must be at least 16 pixels, got {crop_size}')
        self.detector = detector
        self.landmarker = landmarker
        self.tracker = tracker
        self.template = template
        self.crop_size = crop_size
        self.make_crops = make_crops
        self._template_points = template.frontal_points(crop_size)
        self._rigid_model_points = template.landmarks_3d[template.rigid_landmarks]

    def process(self, image: np.ndarray) -> FrameResult:
        """Run every stage on one BGR frame (H, W, 3) uint8."""
        check_image(image)
        clock = _StageClock()
        detections = self.detector.detect(image)
        clock.lap('detect')
        boxes = np.array([d.box for d in detections], np.float64).reshape(-1, 4)
        eyes = np.array([d.keypoints5[:2] for d in detections]).reshape(-1, 2, 2)
        landmarks = self.landmarker(image, boxes, eyes)
        clock.lap('landmarks')
        tracks = self.tracker.update(boxes, landmarks)
        clock.lap('track')
        alignments = [align_face(image, points, self._template_points, self.crop_size) if self.make_crops
                      else (None, similarity_transform(points, self._template_points)) for points in landmarks]
        clock.lap('align')
        poses = [self.head_pose(points) for points in landmarks]
        clock.lap('pose')
        faces = [FaceObservation(id=track.id, confirmed=track.confirmed, score=detection.score,
                                 box=box, landmarks=points, pose=pose, alignment=transform, crop=crop)
                 for track, detection, box, points, pose, (crop, transform)
                 in zip(tracks, detections, boxes, landmarks, poses, alignments)]
        return FrameResult(faces, clock.seconds)

    def head_pose(self, landmarks: np.ndarray) -> ScaledOrthographicCamera:
        """Scaled-orthographic camera of the rigid landmarks (those expressions barely move)."""
        return fit_camera(landmarks[self.template.rigid_landmarks], self._rigid_model_points)


class _StageClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now
