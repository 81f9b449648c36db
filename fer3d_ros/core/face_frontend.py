"""The face front end: detect, find 68 landmarks, track, register to the template, head pose.

`FaceFrontEnd.process(bgr)` takes one frame and returns one `FaceObservation` per face, in
original-image pixels, plus the time each stage took (for diagnostics and benchmarks).

Detection is the costly stage, and a face moves little between two frames. With `detect_every`
N > 1 the detector runs on every N-th frame, and on demand: when no face is being followed, or
when a followed face left the image, changed size abruptly or no longer looks like itself (the
landmarks lost it, or the scene changed). In between, each face is followed: its box is predicted
from its previous landmarks (LANDMARKS_TO_BOX) and the landmarks are found again from there. A face
that walks in is found at the next detection, within N frames.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from fer3d_ros.core.alignment import align_face, similarity_transform
from fer3d_ros.core.detection import FaceDetector, check_image
from fer3d_ros.core.face_template import FaceTemplate
from fer3d_ros.core.landmarks import Landmarker
from fer3d_ros.core.pose import ScaledOrthographicCamera, fit_camera
from fer3d_ros.core.tracking import FaceTracker

STAGES = ('detect', 'landmarks', 'track', 'align', 'pose')
DETECT_EVERY = 5  # face_node's default: the detector on every 5th frame, faces followed in between
# Landmarks -> a RetinaFace-like box: (centre shift x, centre shift y, width scale, height scale)
# relative to the landmarks' extent; medians over 440 detections of 16 clips (ratios 10-90 %:
# shift y -0.20..-0.12, width 0.92..1.01, height 1.23..1.38).
LANDMARKS_TO_BOX = (0.0, -0.155, 0.976, 1.316)
# A followed face whose box changes size by more than this factor in one frame is taken as lost,
# and one whose small registered grey patch correlates less than MIN_LIKENESS with its last one
# (16 clips: the same face one frame later 0.62 at worst, 0.99 median; another person 0.19 median,
# up to 0.72; a background patch far less): a false alarm only costs an early detection.
MAX_SIZE_CHANGE = 1.3
MIN_LIKENESS = 0.6
LIKENESS_PATCH = 24  # pixels


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


def box_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(N, 4) RetinaFace-like boxes predicted from (N, 68, 2) landmarks."""
    low, high = landmarks.min(axis=1), landmarks.max(axis=1)
    size, centre = high - low, (low + high) / 2
    shift_x, shift_y, scale_w, scale_h = LANDMARKS_TO_BOX
    centre = centre + size * (shift_x, shift_y)
    half = size * (scale_w, scale_h) / 2
    return np.hstack([centre - half, centre + half])


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """(N, 2, 2): the centres of the eye on the image's left (points 36-41) and right (42-47)."""
    return np.stack([landmarks[:, 36:42].mean(axis=1), landmarks[:, 42:48].mean(axis=1)], axis=1)


class FaceFrontEnd:
    def __init__(self, detector: FaceDetector, landmarker: Landmarker, tracker: FaceTracker,
                 template: FaceTemplate, crop_size: int = 224, make_crops: bool = True,
                 detect_every: int = 1) -> None:
        if crop_size < 16:
            raise ValueError(f'crop_size must be at least 16 pixels, got {crop_size}')
        if detect_every < 1:
            raise ValueError(f'detect_every must be at least 1 frame, got {detect_every}')
        self.detect_every = detect_every
        self._since_detection = 0
        self._scores: dict[str, float] = {}  # last detection score of each track
        self._patches: dict[str, np.ndarray] = {}  # last likeness patch of each track
        self.detector = detector
        self.landmarker = landmarker
        self.tracker = tracker
        self.template = template
        self.crop_size = crop_size
        self.make_crops = make_crops
        self._template_points = template.frontal_points(crop_size)
        self._patch_points = template.frontal_points(LIKENESS_PATCH)
        self._rigid_model_points = template.landmarks_3d[template.rigid_landmarks]

    def process(self, image: np.ndarray) -> FrameResult:
        """Run every stage on one BGR frame (H, W, 3) uint8."""
        check_image(image)
        clock = _StageClock()
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        found = self._follow(image, grey) if self._since_detection + 1 < self.detect_every else None
        if found is None:  # time to detect, nothing to follow, or a followed face was lost
            found = self._detect(image, grey, clock)
        boxes, landmarks, patches, scores = found
        clock.lap('landmarks')
        clock.seconds.setdefault('detect', 0.0)  # a frame where every face was followed
        tracks = self.tracker.update(boxes, landmarks)
        live = {track.id for track in self.tracker.tracks}
        self._patches = {face_id: patch for face_id, patch in self._patches.items() if face_id in live}
        self._patches.update((track.id, patch) for track, patch in zip(tracks, patches))
        if scores is not None:  # a followed face keeps the score of its last detection
            self._scores = {face_id: score for face_id, score in self._scores.items() if face_id in live}
            self._scores.update((track.id, score) for track, score in zip(tracks, scores))
        clock.lap('track')
        alignments = [align_face(image, points, self._template_points, self.crop_size) if self.make_crops
                      else (None, similarity_transform(points, self._template_points)) for points in landmarks]
        clock.lap('align')
        poses = [self.head_pose(points) for points in landmarks]
        clock.lap('pose')
        faces = [FaceObservation(id=track.id, confirmed=track.confirmed, score=self._scores.get(track.id, 0.0),
                                 box=box, landmarks=points, pose=pose, alignment=transform, crop=crop)
                 for track, box, points, pose, (crop, transform) in zip(tracks, boxes, landmarks, poses, alignments)]
        return FrameResult(faces, clock.seconds)

    def _detect(self, image: np.ndarray, grey: np.ndarray, clock: _StageClock) -> tuple:
        """(boxes, landmarks, likeness patches, scores) of the faces the detector finds."""
        detections = self.detector.detect(image)
        self._since_detection = 0
        clock.lap('detect')
        boxes = np.array([d.box for d in detections], np.float64).reshape(-1, 4)
        eyes = np.array([d.keypoints5[:2] for d in detections]).reshape(-1, 2, 2)
        landmarks = self.landmarker(grey, boxes, eyes)
        return boxes, landmarks, [self._likeness_patch(grey, points) for points in landmarks], \
            [d.score for d in detections]

    def _follow(self, image: np.ndarray, grey: np.ndarray) -> tuple | None:
        """The faces seen in the last frame, found again from their landmarks (scores: None); None if
        there is none, or one was lost."""
        visible = [track for track in self.tracker.tracks if track.misses == 0]
        if not visible:
            return None
        previous = np.stack([track.landmarks for track in visible])
        boxes = box_from_landmarks(previous)
        landmarks = self.landmarker(grey, boxes, eye_centres(previous))
        patches = [self._likeness_patch(grey, points) for points in landmarks]
        alike = [likeness(patch, self._patches.get(track.id)) >= MIN_LIKENESS for track, patch in zip(visible, patches)]
        if not all(alike) or self._lost(image, boxes, landmarks).any():
            return None
        self._since_detection += 1
        return boxes, landmarks, patches, None

    def _likeness_patch(self, grey: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The face registered to a LIKENESS_PATCH-pixel grey patch (what a followed face is compared by)."""
        transform = similarity_transform(landmarks, self._patch_points)
        return cv2.warpAffine(grey, transform, (LIKENESS_PATCH, LIKENESS_PATCH), flags=cv2.INTER_AREA,
                              borderMode=cv2.BORDER_REPLICATE).astype(np.float32)

    @staticmethod
    def _lost(image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(N,) faces the landmarks lost: they left the image, or their size jumped."""
        height, width = image.shape[:2]
        centres = landmarks.mean(axis=1)
        outside = (centres[:, 0] < 0) | (centres[:, 0] >= width) | (centres[:, 1] < 0) | (centres[:, 1] >= height)
        area = lambda b: (b[:, 2:] - b[:, :2]).prod(axis=1)
        ratio = np.sqrt(area(box_from_landmarks(landmarks)) / np.maximum(area(boxes), 1e-9))
        return outside | (ratio > MAX_SIZE_CHANGE) | (ratio < 1 / MAX_SIZE_CHANGE)

    def head_pose(self, landmarks: np.ndarray) -> ScaledOrthographicCamera:
        """Scaled-orthographic camera of the rigid landmarks (those expressions barely move)."""
        return fit_camera(landmarks[self.template.rigid_landmarks], self._rigid_model_points)


def likeness(patch: np.ndarray, previous: np.ndarray | None) -> float:
    """Normalised cross-correlation of two patches (1: alike); 1 when there is nothing to compare."""
    if previous is None:
        return 1.0
    a, b = patch - patch.mean(), previous - previous.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 1e-6 else 0.0


class _StageClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now
