"""The mean-face template: ICT-FaceKit's 68 landmarks, for registration and head pose.

Built from the 3D model by training/build_face_template.py (models/face_template.npz).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from fer3d_ros.core.files import find_model

# Model axes are ICT's (x to the subject's left, y up, z out of the face); camera axes are
# OpenCV's (x right, y down, z away from the camera). A face looking at the camera has its
# model axes turned by 180 degrees about x.
MODEL_TO_CAMERA = np.diag([1.0, -1.0, -1.0])
# The aligned crop spans this many model centimetres horizontally and vertically, centred this
# far above the model origin: the 14.7 cm wide landmark set plus forehead and a chin margin.
CROP_EXTENT_CM = 20.0
CROP_CENTRE_Y_CM = 1.2


@dataclass(frozen=True)
class FaceTemplate:
    landmarks_3d: np.ndarray     # (68, 3) centimetres, camera axes, frontal pose
    rigid_landmarks: np.ndarray  # indices of landmarks that expressions barely move

    def frontal_points(self, size: int) -> np.ndarray:
        """The 68 landmarks projected frontally into a size x size crop, (68, 2) pixels."""
        pixels_per_cm = size / CROP_EXTENT_CM
        centre = np.array([0.0, -CROP_CENTRE_Y_CM])  # camera y points down
        return ((self.landmarks_3d[:, :2] - centre) * pixels_per_cm + (size - 1) / 2.0)


@cache
def load_face_template(path: str | None = None) -> FaceTemplate:
    """Load the shipped template (or `path`)."""
    data = np.load(path or find_model('face_template.npz'))
    return FaceTemplate(landmarks_3d=data['landmarks_3d'].astype(np.float64) @ MODEL_TO_CAMERA,
                        rigid_landmarks=data['rigid_landmarks'].astype(np.intp))
