"""68-point facial landmarks (iBUG 300-W order), behind one small interface with two models.

`CnnLandmarker` runs face-api.js's 68-point network (models/face_landmark_68.onnx, converted by
training/convert_face_landmarks.py): every face of a frame is cut out as an upright square crop
(112 px, rotated so that the eyes are level, black outside the image) and all crops go through
ONNX Runtime in one call. It holds on turned heads, where dlib's trees land off the face.

`DlibLandmarker` runs dlib's ensemble-of-regression-trees shape predictor trained on iBUG 300-W
(Kazemi & Sullivan 2014): precise on frontal faces, lost on turned ones. Its trees start from a
mean shape placed in a box like those of dlib's HOG detector, upright and frontal, so it (1) maps
each RetinaFace box to the box dlib expects (BOX_TO_DLIB) and (2) levels the eyes first, in a
fixed-size patch, which also makes the cost independent of the face's size in the image.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fer3d_ros.core.files import ModelFileError, find_model
from fer3d_ros.core.inference.backends import OnnxRuntimeBackend

DLIB_MODEL = 'shape_predictor_68_face_landmarks.dat'
# Places the model file is installed by registry packages: Debian's libdlib-data, then PyPI's
# face_recognition_models (found without importing it: its pkg_resources import breaks).
_DEBIAN_MODEL = Path('/usr/share/dlib') / DLIB_MODEL

# RetinaFace box -> dlib HOG box, as (centre shift x, centre shift y, width scale, height scale)
# relative to the RetinaFace box size: the median over the images of ../shared/data/landmarks68
# where both detectors find the face (training/eval_landmarks.py --calibrate-box prints it).
BOX_TO_DLIB = (-0.035, 0.014, 1.153, 0.869)
CNN_MODELS = {'cnn': 'face_landmark_68.onnx', 'cnn-tiny': 'face_landmark_68_tiny.onnx'}
CNN_INPUT = 112  # pixels of the square crop the CNN reads
# RetinaFace box -> the CNN's square crop, as (centre shift x, centre shift y, side scale) relative
# to the box: chosen on the project's clips (training/eval_landmarks.py --calibrate-crop), never
# on the annotated evaluation images.
BOX_TO_CNN = (0.0, 0.15, 1.1)
PATCH_SIZE = 192        # pixels of the upright patch the trees run on
PATCH_BOX_FRACTION = 0.5  # the dlib box spans this fraction of the patch


LANDMARK_MODELS = ('cnn', 'cnn-tiny', 'dlib')


class Landmarker(Protocol):
    reads_colour: bool  # whether it wants the BGR image (else the grey one is enough)

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


def eye_line_angles(eyes: np.ndarray | None, count: int) -> np.ndarray:
    """(N,) radians of the line from the image-left eye to the image-right eye; 0 without eyes."""
    if eyes is None:
        return np.zeros(count)
    dx, dy = (eyes[:, 1] - eyes[:, 0]).T
    return np.arctan2(dy, dx)


def square_crops(image: np.ndarray, boxes: np.ndarray, size: int,
                 angles: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(crops (N, size, size, C) uint8, transforms (N, 2, 3) image -> crop): the square around each
    box's centre with the box's longer side, turned by -angle (the eyes level), black outside."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    angles = np.zeros(len(boxes)) if angles is None else angles
    crops = np.empty((len(boxes), size, size, *image.shape[2:]), np.uint8)
    transforms = np.empty((len(boxes), 2, 3))
    for index, (box, angle) in enumerate(zip(boxes, angles)):
        centre = (box[:2] + box[2:]) / 2
        scale = size / max(box[2] - box[0], box[3] - box[1], 1e-6)
        cos, sin = scale * np.cos(-angle), scale * np.sin(-angle)
        linear = np.array([[cos, -sin], [sin, cos]])
        transforms[index] = np.hstack([linear, (size / 2 - linear @ centre)[:, None]])
        crops[index] = cv2.warpAffine(image, transforms[index], (size, size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crops, transforms


def from_crops(points: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """(N, K, 2) crop pixels -> image pixels through the inverse of each (2, 3) transform."""
    inverse = np.linalg.inv(transforms[:, :, :2])
    return np.einsum('nij,nkj->nki', inverse, points - transforms[:, None, :, 2])


class CnnLandmarker:
    """face-api.js's 68-point CNN through ONNX Runtime, every face of a frame in one batch."""
    reads_colour = True

    def __init__(self, model_path: str | os.PathLike | None = None, threads: int = 1,
                 box_to_crop: tuple[float, float, float] = BOX_TO_CNN) -> None:
        self.model_path = Path(model_path).expanduser() if model_path else find_model(CNN_MODELS['cnn'])
        self.backend = OnnxRuntimeBackend(self.model_path, threads=threads)
        self.box_to_crop = box_to_crop

    def __call__(self, image: np.ndarray, boxes: np.ndarray, eyes: np.ndarray | None = None) -> np.ndarray:
        if not len(boxes):
            return np.empty((0, 68, 2), np.float32)
        colour = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        crops, transforms = square_crops(colour, self.crop_boxes(boxes), CNN_INPUT, eye_line_angles(eyes, len(boxes)))
        points = self.backend.infer(crops)['landmarks'].astype(np.float64) * CNN_INPUT
        return from_crops(points, transforms).astype(np.float32)

    def crop_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Detector boxes (N, 4) -> the squares the CNN reads (before levelling the eyes)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        shift_x, shift_y, scale = self.box_to_crop
        size = boxes[:, 2:] - boxes[:, :2]
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + size * (shift_x, shift_y)
        half = size.max(axis=1, keepdims=True) * scale / 2
        return np.hstack([centre - half, centre + half])


class DlibLandmarker:
    """dlib's 68-point shape predictor, started from a detector box."""
    reads_colour = False

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
        for index, (box, angle) in enumerate(zip(dlib_boxes, eye_line_angles(eyes, len(dlib_boxes)))):
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


def _patch_transform(box: np.ndarray, angle: float) -> np.ndarray:
    """2x3 transform taking the image to an upright patch where `box` spans PATCH_BOX_FRACTION.

    A non-square box is stretched to a square: dlib's training boxes are square.
    """
    centre = (box[:2] + box[2:]) / 2
    scale = PATCH_SIZE * PATCH_BOX_FRACTION / (box[2:] - box[:2])
    cos, sin = np.cos(-angle), np.sin(-angle)
    linear = np.diag(scale) @ np.array([[cos, -sin], [sin, cos]])
    return np.hstack([linear, (PATCH_SIZE / 2 - linear @ centre)[:, None]])


def make_landmarker(model: str, model_file: str = '', threads: int = 1) -> Landmarker:
    """The landmarker `model` names (LANDMARK_MODELS), from `model_file` or its default file."""
    if model in CNN_MODELS:
        return CnnLandmarker(model_file or find_model(CNN_MODELS[model]), threads=threads)
    if model == 'dlib':
        return DlibLandmarker(model_file or None)
    raise ValueError(f'landmark model must be one of {", ".join(LANDMARK_MODELS)}, got {model!r}')
