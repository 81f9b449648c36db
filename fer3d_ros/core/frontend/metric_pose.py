"""Metric 6D head pose: where a face is, in metres, in the camera's optical frame, and REP-155's
`face_<id>` / `gaze_<id>` axes.

A perspective solve (OpenCV's SQPnP, then Levenberg-Marquardt) of the 68 image landmarks against the
person's own 3D landmarks: the ICT-FaceKit mean face until the person is calibrated, then their
fitted identity (and this frame's expression, where known). Model points are in the model's camera
axes (x right, y down, z away from the camera for a face looking at it; centimetres, converted
here); the pose maps them into the camera's optical frame (x right, y down, z forward).

REP-155: the face frame's origin is the sellion (landmark 27, the top of the nose bridge between
the eyes), x forward (out of the face), y to the face's left, z toward the scalp; the gaze frame
sits there with z along the gaze (here the head's forward axis), x to the face's right, y down.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SELLION = 27
CM = 0.01  # metres
# Face frame axes (columns: x forward, y the face's left, z up) in the model's camera axes, where a
# face looking at the camera has forward = -z, its left = +x (the image's right), up = -y.
FACE_AXES = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
# Gaze axes (x the face's right, y down, z forward) in face axes.
GAZE_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: K (3, 3) in pixels and OpenCV distortion coefficients (as camera_info's D)."""
    matrix: np.ndarray
    distortion: np.ndarray

    @classmethod
    def from_field_of_view(cls, width: int, height: int, horizontal_fov_deg: float) -> Intrinsics:
        """Square pixels, principal point at the centre, no distortion."""
        focal = width / 2 / np.tan(np.radians(horizontal_fov_deg) / 2)
        return cls(np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1.0]]), np.zeros(5))


@dataclass(frozen=True)
class HeadPose6D:
    rotation: np.ndarray     # (3, 3) model axes -> camera optical frame
    translation: np.ndarray  # (3,) metres: the model origin in the camera frame
    sellion: np.ndarray      # (3,) metres: REP-155's face origin in the camera frame
    reprojection_px: float   # RMS reprojection error of the points solved for

    @property
    def distance(self) -> float:
        return float(np.linalg.norm(self.sellion))

    def face_rotation(self) -> np.ndarray:
        """REP-155 face frame axes (columns x forward, y left, z up) in the camera frame."""
        return self.rotation @ FACE_AXES

    def gaze_rotation(self) -> np.ndarray:
        """REP-155 gaze frame axes (x right, y down, z along the gaze = the head's forward) in the camera frame."""
        return self.face_rotation() @ GAZE_AXES


def solve_head_pose(landmarks: np.ndarray, model_points_cm: np.ndarray, intrinsics: Intrinsics,
                    indices: np.ndarray | None = None) -> HeadPose6D:
    """The pose that projects the (68, 3) model points (cm) onto the (68, 2) image landmarks (pixels);
    `indices` selects the points to solve with (default: all). ValueError for non-finite input."""
    landmarks = np.asarray(landmarks, np.float64)
    model = np.asarray(model_points_cm, np.float64) * CM
    chosen = np.arange(len(model)) if indices is None else np.asarray(indices)
    if not (np.isfinite(landmarks[chosen]).all() and np.isfinite(model[chosen]).all()):
        raise ValueError('landmarks and model points must be finite')
    image, world = landmarks[chosen].reshape(-1, 1, 2), model[chosen].reshape(-1, 1, 3)
    ok, rvec, tvec = cv2.solvePnP(world, image, intrinsics.matrix, intrinsics.distortion, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise ValueError('no pose fits these landmarks')
    rvec, tvec = cv2.solvePnPRefineLM(world, image, intrinsics.matrix, intrinsics.distortion, rvec, tvec)
    rotation = cv2.Rodrigues(rvec)[0]
    projected = cv2.projectPoints(world, rvec, tvec, intrinsics.matrix, intrinsics.distortion)[0]
    error = float(np.sqrt(((projected - image) ** 2).sum(axis=2).mean()))
    translation = tvec.ravel()
    return HeadPose6D(rotation, translation, rotation @ model[SELLION] + translation, error)
