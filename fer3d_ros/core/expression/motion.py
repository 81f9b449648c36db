"""Dense 3D facial motion: how each point of a tracked face moved between two frames, in millimetres.

As DeepFaceFlow does from reconstructions made the way our training package makes them (a fixed
identity, an expression and a scaled-orthographic camera per frame), the motion is that of the
model: the face's 3D points at an evenly spread subset of ICT-FaceKit's vertices (models/
ict_motion_model.npz, 500 points ~11 mm apart) are placed in the camera frame from the track's
identity (per-track calibration), the frame's expression coefficients and head pose, and
differenced with the previous frame's. The motion splits exactly in two:
- rigid: the head's rotation and translation applied to the previous shape;
- non-rigid: the change of shape (expression) under the current pose;
rigid + non-rigid = total. Camera axes: x right, y down, z away from the camera, origin on the
optical axis (the image centre) at the face's depth: the model's origin sits at (t - c) / s, t its
image position, c the image centre, s the scale in pixels per cm. A scaled-orthographic camera sees
no depth, so translation along z is 0, and a face that comes straight closer (a larger scale) does
not move. This is model motion, not optical flow: what the 3DMM cannot express (hair, skin sliding,
the eyes) is not in it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from fer3d_ros.core.expression.morphable_model import LandmarkModel, load_landmark_model
from fer3d_ros.core.files import find_model
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera
from fer3d_ros.core.track_states import TrackStates

MOTION_MODEL_FILE = 'ict_motion_model.npz'
MM_PER_CM = 10.0


@dataclass(frozen=True)
class HeadPose:
    """A scaled-orthographic camera: rotation (3, 3), scale (pixels per cm), translation (2,): the image
    position of the model's origin in pixels from the image centre."""
    rotation: np.ndarray
    scale: float
    translation: np.ndarray

    @classmethod
    def seen_by(cls, camera: ScaledOrthographicCamera, width: int, height: int) -> HeadPose:
        """The pose of a camera fitted in a width x height image (its translation is from the corner)."""
        return cls(camera.rotation, camera.scale, np.asarray(camera.translation) - np.array([width / 2, height / 2]))


@dataclass(frozen=True)
class FaceMotion:
    positions: np.ndarray  # (V, 3) mm, this frame
    rigid: np.ndarray      # (V, 3) mm since the previous frame: head rotation and translation
    nonrigid: np.ndarray   # (V, 3) mm since the previous frame: change of shape under the current pose

    @property
    def total(self) -> np.ndarray:
        return self.rigid + self.nonrigid


@cache
def load_motion_model() -> tuple[LandmarkModel, np.ndarray]:
    """The shipped motion model and its ICT-FaceKit vertex indices."""
    path = find_model(MOTION_MODEL_FILE)
    return load_landmark_model(str(path)), np.load(path)['vertices'].astype(np.int64)


def place(shape_cm: np.ndarray, pose: HeadPose) -> np.ndarray:
    """(V, 3) model points in the camera frame, mm."""
    translation = np.append(np.asarray(pose.translation, np.float64) / pose.scale, 0.0)
    return MM_PER_CM * (shape_cm @ np.asarray(pose.rotation).T + translation)


@dataclass
class _Previous:
    shape: np.ndarray | None = None
    pose: HeadPose | None = None


class MotionTracker:
    """Per-track previous shape and pose; the motion of each face seen again."""

    def __init__(self, model: LandmarkModel | None = None, forget_after: float = 2.0) -> None:
        self.model = model or load_motion_model()[0]
        self.tracks = TrackStates(_Previous, forget_after)

    def new_frame(self, time: float) -> bool:
        """Start a frame at `time` (seconds); True if time went backwards (every track starts again)."""
        return self.tracks.new_frame(time)

    def update(self, face_id: str, identity: np.ndarray | None, expression: np.ndarray,
               pose: HeadPose) -> FaceMotion | None:
        """This face's motion since its previous frame; None on its first frame."""
        shape = self.model.landmarks(identity, np.asarray(expression, np.float64))
        previous = self.tracks.seen(face_id)
        motion = None
        if previous.shape is not None:
            before = place(previous.shape, previous.pose)
            moved_rigidly = place(previous.shape, pose)
            now = place(shape, pose)
            motion = FaceMotion(positions=now, rigid=moved_rigidly - before, nonrigid=now - moved_rigidly)
        previous.shape, previous.pose = shape, pose
        return motion


def image_points(positions: np.ndarray, pixels_per_mm: float, width: int, height: int) -> np.ndarray:
    """(V, 2) pixels where the scaled-orthographic camera sees the (V, 3) mm camera-frame points."""
    return np.array([width / 2, height / 2]) + pixels_per_mm * np.asarray(positions, np.float64)[:, :2]


def direction_colours(motion: np.ndarray, full_scale_mm: float) -> np.ndarray:
    """(V, 3) uint8 BGR: hue and saturation from the direction of each 3D displacement (a point on
    the sphere: hue its azimuth in the image plane, saturation how little it points along z), value
    from its length (full at `full_scale_mm`), as DeepFaceFlow colour-codes 3D flow."""
    import cv2
    length = np.linalg.norm(motion, axis=1)
    unit = motion / np.maximum(length, 1e-9)[:, None]
    hue = (np.degrees(np.arctan2(unit[:, 1], unit[:, 0])) % 360.0) / 2.0  # OpenCV hue: 0..180
    saturation = 255.0 * np.sqrt(np.clip(1.0 - unit[:, 2] ** 2, 0.0, 1.0))
    value = 255.0 * np.clip(length / full_scale_mm, 0.0, 1.0)
    hsv = np.stack([hue, saturation, value], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]
