"""68-point facial landmarks, behind a small interface so that another model can replace dlib's.

The default is dlib's ensemble-of-regression-trees shape predictor trained on iBUG 300-W
(Kazemi & Sullivan 2014). Its trees start from a mean shape placed in a box like those of
dlib's HOG detector, upright and frontal. `DlibLandmarker` therefore (1) maps each RetinaFace
box to the box dlib expects (BOX_TO_DLIB) and (2) levels the eyes first: it resamples the face
into an upright patch using the detector's eye keypoints, runs the trees there and maps the
points back, so tilted heads do not start from a wrongly rotated mean shape. The patch has a
fixed size, which also makes the cost independent of the face's size in the image.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fer3d_ros.core.files import ModelFileError

DLIB_MODEL = 'shape_predictor_68_face_landmarks.dat'
# Places the model file is installed by registry packages: Debian's libdlib-data, then PyPI's
# face_recognition_models (found without importing it: its pkg_resources import breaks).
_DEBIAN_MODEL = Path('/usr/share/dlib') / DLIB_MODEL

# RetinaFace box -> dlib HOG box, as (centre shift x, centre shift y, width scale, height scale)
# relative to the RetinaFace box size: the median over the images of ../shared/data/landmarks68
# where both detectors find the face (training/eval_landmarks.py --calibrate-box prints it).
BOX_TO_DLIB = (-0.035, 0.014, 1.153, 0.869)
PATCH_SIZE = 192        # pixels of the upright patch the trees run on
PATCH_BOX_FRACTION = 0.5  # the dlib box spans this fraction of the patch


class Landmarker(Protocol):
    def __call__(self, image: np.ndarray, boxes: np.ndarray, eyes: np.ndarray | None = None) -> np.ndarray:
        """Landmarks (N, 68, 2) in pixels of a BGR or grey image.

        `boxes` (N, 4: x0, y0, x1, y1) come from the detector; `eyes` (N, 2, 2), when given, hold
        the centres of the eye on the image's left and right, which fix the in-plane rotation.
        """


def find_dlib_model(path: str | os.PathLike | None = None) -> Path:
    """The shape predictor file: `path` if given, else where registry packages install it."""
    candidates = [Path(path).expanduser()] if path else [_DEBIAN_MODEL]
    if not path:
        spec = importlib.util.find_spec('face_recognition_models')
        if spec and spec.origin:
            candidates.append(Path(spec.origin).parent / 'models' / DLIB_MODEL)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ModelFileError(
        f'dlib 68-point shape predictor not found (looked at {", ".join(map(str, candidates))}). '
        'Install it with `pip install face_recognition_models==0.3.0` or `apt install libdlib-data`, '
        'or set the landmark model path parameter.')


class DlibLandmarker:
    """dlib's 68-point shape predictor, started from a detector box."""

    def __init__(self, model_path: str | os.PathLike | None = None,
                 box_to_dlib: tuple[float, float, float, float] = BOX_TO_DLIB) -> None:
        import dlib

        self.model_path = find_dlib_model(model_path)
        self._predictor = dlib.shape_predictor(str(self.model_path))
        self._rectangle = dlib.rectangle
        self.box_to_dlib = box_to_dlib

    def __call__(self, image: np.ndarray, boxes: np.ndarray, eyes: np.ndarray | None = None) -> np.ndarray:
        if not len(boxes):  # most frames of an empty scene: skip the grey conversion
            return np.empty((0, 68, 2), np.float32)
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        dlib_boxes = self.dlib_boxes(boxes)
        result = np.empty((len(dlib_boxes), 68, 2), np.float32)
        half = PATCH_SIZE * PATCH_BOX_FRACTION / 2
        patch_box = self._rectangle(*(int(round(PATCH_SIZE / 2 + sign * half)) for sign in (-1, -1, 1, 1)))
        for index, box in enumerate(dlib_boxes):
            angle = 0.0 if eyes is None else _eye_line_angle(eyes[index])
            to_patch = _patch_transform(box, angle)
            patch = cv2.warpAffine(grey, to_patch, (PATCH_SIZE, PATCH_SIZE), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
            shape = self._predictor(patch, patch_box)
            points = np.array([(point.x, point.y) for point in shape.parts()], np.float64)
            result[index] = (points - to_patch[:, 2]) @ np.linalg.inv(to_patch[:, :2]).T
        return result

    def dlib_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Detector boxes (N, 4) moved and scaled to where dlib's training boxes would be."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        shift_x, shift_y, scale_w, scale_h = self.box_to_dlib
        size = boxes[:, 2:] - boxes[:, :2]
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + size * (shift_x, shift_y)
        half = size * (scale_w, scale_h) / 2
        return np.hstack([centre - half, centre + half])


def _eye_line_angle(eyes: np.ndarray) -> float:
    """Angle in radians of the line from the image-left eye to the image-right eye."""
    dx, dy = eyes[1] - eyes[0]
    return float(np.arctan2(dy, dx))


def _patch_transform(box: np.ndarray, angle: float) -> np.ndarray:
    """2x3 transform taking the image to an upright patch where `box` spans PATCH_BOX_FRACTION.

    A non-square box is stretched to a square: dlib's training boxes are square.
    """
    centre = (box[:2] + box[2:]) / 2
    scale = PATCH_SIZE * PATCH_BOX_FRACTION / (box[2:] - box[:2])
    cos, sin = np.cos(-angle), np.sin(-angle)
    linear = np.diag(scale) @ np.array([[cos, -sin], [sin, cos]])
    return np.hstack([linear, (PATCH_SIZE / 2 - linear @ centre)[:, None]])
