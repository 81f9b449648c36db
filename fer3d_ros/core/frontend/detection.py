"""Face detection with RetinaFace (MobileNet-0.25): boxes, scores and five landmarks per face.

The network (models/retinaface_mnet025.onnx, made by training/export_retinaface.py) predicts, for
every prior box, offsets relative to that prior; this module builds the priors for any input size,
decodes boxes and landmarks, and keeps the best non-overlapping faces. It runs the network through
any `InferenceBackend`, so ONNX Runtime and TensorRT are interchangeable.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from fer3d_ros.core.files import find_model
from fer3d_ros.core.inference.backends import InferenceBackend, OnnxRuntimeBackend

MODEL_FILE = 'retinaface_mnet025.onnx'
MEAN_BGR = np.array([104, 117, 123], np.float32)  # the network was trained on BGR minus this mean
MIN_SIZES = ((16, 32), (64, 128), (256, 512))  # anchor sides (pixels) per FPN level
STEPS = (8, 16, 32)  # FPN level strides
VARIANCES = (0.1, 0.2)  # scaling of the (centre, size) regression targets used in training


@dataclass(frozen=True, eq=False)
class Detection:
    """One face in original-image pixels.

    `box` is (x0, y0, x1, y1) and may extend past the image border for a face cut by it.
    `keypoints5` (5, 2) holds x, y of: eye on the image's left, eye on the image's right,
    nose tip, mouth corner on the image's left, mouth corner on the image's right.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints5: np.ndarray


@functools.lru_cache(maxsize=16)
def prior_boxes(height: int, width: int) -> np.ndarray:
    """Prior boxes (P, 4) as (cx, cy, w, h) in input pixels, in the network's output order.

    Order: level (stride 8, 16, 32), then row, then column, then the two anchor sizes of a cell.
    Cached per input size (read-only) because a camera stream keeps one size.
    """
    levels = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step, (np.arange(cols) + 0.5) * step, indexing='ij')
        level = np.empty((rows, cols, len(sizes), 4))
        level[..., 0], level[..., 1] = cx[..., None], cy[..., None]
        level[..., 2] = level[..., 3] = sizes
        levels.append(level.reshape(-1, 4))
    priors = np.concatenate(levels).astype(np.float32)
    priors.setflags(write=False)
    return priors


def decode_boxes(offsets: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Regression offsets (P, 4) relative to priors -> boxes (P, 4) as (x0, y0, x1, y1)."""
    centres = priors[:, :2] + offsets[:, :2] * VARIANCES[0] * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(offsets[:, 2:] * VARIANCES[1])
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)


def decode_landmarks(offsets: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Regression offsets (P, 10) relative to priors -> landmarks (P, 5, 2), each like a box centre."""
    return priors[:, None, :2] + offsets.reshape(-1, 5, 2) * VARIANCES[0] * priors[:, None, 2:]


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes (x0, y0, x1, y1) kept by greedy NMS, best score first."""
    if len(boxes) == 0:
        return np.empty(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    return np.asarray(cv2.dnn.NMSBoxes(xywh, scores, 0.0, iou_threshold), np.int64).reshape(-1)


def network_input(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (1, 3, H, W) float32 minus MEAN_BGR (4x faster than blobFromImage)."""
    blob = np.empty((1, 3, *image.shape[:2]), np.float32)
    np.subtract(image.transpose(2, 0, 1), MEAN_BGR[:, None, None], out=blob[0], dtype=np.float32)
    return blob


def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless `image` is a non-empty (H, W, 3) uint8 BGR array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f'expected a NumPy BGR image, got {type(image).__name__}')
    if image.dtype != np.uint8:
        raise ValueError(f'expected a uint8 BGR image, got dtype {image.dtype}')
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected an (H, W, 3) BGR image, got shape {image.shape}; '
                         'convert grey or BGRA images with cv2.cvtColor first')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'image is empty (shape {image.shape})')


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` reduced to `size` (width, height): halved by area averaging while it is at least
    twice as large (OpenCV's fast path), the rest bilinear. 1920x1080 -> 640x360 costs 0.6 ms
    instead of 4.8 ms by area averaging throughout, which is slow for factors other than 2."""
    while image.shape[1] >= 2 * size[0] and image.shape[0] >= 2 * size[1]:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


class FaceDetector:
    """RetinaFace on one BGR frame at a time; results in the frame's own pixel coordinates."""

    def __init__(self, backend: InferenceBackend, score_threshold: float = 0.5, nms_threshold: float = 0.4,
                 max_size: int = 640, top_k: int = 50) -> None:
        """`max_size`: longest side the network sees (larger frames are downscaled, which bounds the
        cost but misses faces smaller than ~16 px after scaling); `top_k`: most faces returned."""
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 <= nms_threshold <= 1.0:
            raise ValueError(f'thresholds must lie in [0, 1], got score {score_threshold}, '
                             f'nms {nms_threshold}')
        if max_size < 32 or top_k < 1:
            raise ValueError(f'need max_size >= 32 and top_k >= 1, got {max_size} and {top_k}')
        self.backend = backend
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_size = int(max_size)
        self.top_k = int(top_k)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a (H, W, 3) uint8 BGR image, best score first."""
        blob, scale = self.preprocess(image)
        boxes, scores, landmarks = self._select(self.backend.infer(blob), prior_boxes(*blob.shape[2:]))
        boxes, landmarks = boxes / np.tile(scale, 2), landmarks / scale  # back to the original image
        return [Detection(tuple(float(v) for v in box), float(score), _read_only(points))
                for box, score, points in zip(boxes, scores, landmarks)]

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network input (1, 3, h, w) for a BGR image, longest side at most max_size, and the
        (x, y) scale from image to input pixels."""
        check_image(image)
        height, width = image.shape[:2]
        factor = self.max_size / max(height, width)
        scale = np.ones(2, np.float32)
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            image = shrink(image, size)
            scale = np.array([size[0] / width, size[1] / height], np.float32)
        return network_input(image), scale

    def _select(self, outputs: dict[str, np.ndarray],
                priors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (K, 4), scores (K,) and landmarks (K, 5, 2) of the faces kept, in network-input pixels."""
        scores = outputs['scores'][0]
        if scores.shape[0] != priors.shape[0]:
            raise RuntimeError(f'detector model returned {scores.shape[0]} priors, expected '
                               f'{priors.shape[0]}: is it {MODEL_FILE}?')
        candidates = np.flatnonzero(scores >= self.score_threshold)  # decode only the few likely faces
        boxes = decode_boxes(outputs['boxes'][0][candidates], priors[candidates])
        keep = non_max_suppression(boxes, scores[candidates], self.nms_threshold)[:self.top_k]
        chosen = candidates[keep]
        return boxes[keep], scores[chosen], decode_landmarks(outputs['landmarks'][0][chosen], priors[chosen])


def _read_only(array: np.ndarray) -> np.ndarray:
    """A float64 copy that cannot be modified, so a frozen Detection stays unchanged."""
    array = np.array(array, np.float64)
    array.setflags(write=False)
    return array


def default_detector(model_path: str | os.PathLike | None = None, threads: int = 1, **params) -> FaceDetector:
    """A FaceDetector on ONNX Runtime (CPU) with the shipped model, or `model_path` if given."""
    path = model_path if model_path is not None else find_model(MODEL_FILE)
    backend = OnnxRuntimeBackend(path, threads=threads,
                                 how_to_get='Create it with training/export_retinaface.py.')
    return FaceDetector(backend, **params)
