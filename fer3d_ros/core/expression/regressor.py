"""DeepExp3D at run time: aligned face crops -> 3DMM expression coefficients.

The regressor is an ONNX model (trained by training/train_multitask.py) described by a JSON
model card beside it: its id, input size and the names of its outputs (ICT-FaceKit blendshapes).
It runs through any `InferenceBackend` (ONNX Runtime on CPU, TensorRT on NVIDIA GPUs); all faces
of a frame go through the network as one batch.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer3d_ros.core.files import ModelFileError, find_model, require_file
from fer3d_ros.core.inference.backends import InferenceBackend, open_backend

MODEL_FILE = 'deepexp3d_mnv2_96.onnx'
OUTPUT = 'expression'


@dataclass(frozen=True)
class ModelCard:
    model_id: str
    input_size: int
    expression_names: tuple[str, ...]
    onnx_sha256: str = ''  # of the model file, as its card records it (keys caches of its outputs)

    @property
    def version(self) -> str:
        """The model id and the start of its file's hash: what results computed with it are keyed by."""
        return f'{self.model_id}-{self.onnx_sha256[:12]}' if self.onnx_sha256 else self.model_id


def load_card(model_path: str | os.PathLike) -> ModelCard:
    """The JSON card beside an ONNX model (same stem, .json)."""
    card_path = Path(model_path).with_suffix('.json')
    try:
        card = json.loads(card_path.read_text())
        return ModelCard(str(card['model_id']), int(card['input_size']), tuple(card['expression_names']),
                         str(card.get('onnx_sha256', '')))
    except (OSError, ValueError, KeyError) as error:
        raise ModelFileError(f'model card {card_path} is missing or unreadable ({error}); it is written '
                             'by training/export_regressor.py beside the ONNX file') from error


class ExpressionRegressor:
    def __init__(self, backend: InferenceBackend, card: ModelCard, max_batch: int = 16) -> None:
        if max_batch < 1:
            raise ValueError(f'max_batch must be at least 1, got {max_batch}')
        self.backend = backend
        self.card = card
        self.max_batch = max_batch

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, 3, S, S) float32 BGR 0..255: the network normalises its input itself."""
        size = self.card.input_size
        batch = np.empty((len(crops), 3, size, size), np.float32)
        for index, crop in enumerate(crops):
            if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8 or not crop.size:
                raise ValueError(f'expected a bgr8 crop (H, W, 3) uint8, got {crop.shape} {crop.dtype}')
            if crop.shape[:2] != (size, size):
                crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            batch[index] = crop.transpose(2, 0, 1)
        return batch

    def predict(self, crops: list[np.ndarray]) -> np.ndarray:
        """Expression coefficients (N, n_names) in [0, 1], for crops aligned as face_node aligns them."""
        if not crops:
            return np.zeros((0, len(self.card.expression_names)), np.float32)
        outputs = [self.backend.infer(self.preprocess(crops[start:start + self.max_batch]))[OUTPUT]
                   for start in range(0, len(crops), self.max_batch)]
        return np.clip(np.concatenate(outputs), 0.0, 1.0).astype(np.float32)


def default_regressor(model_path: str | os.PathLike | None = None, backend: str = 'auto',
                      engine_path: str | os.PathLike | None = None, threads: int = 1,
                      allow_engine_build: bool = False, max_batch: int = 16) -> ExpressionRegressor:
    """The shipped regressor (or `model_path`) on the chosen backend."""
    path = require_file(model_path, 'DeepExp3D ONNX model', 'Train and export one with '
                        'training/train_multitask.py, or leave the model parameter empty for the shipped one.') \
        if model_path else find_model(MODEL_FILE)
    card = load_card(path)
    runner = open_backend(backend, path, engine_path=engine_path, threads=threads,
                          allow_engine_build=allow_engine_build,
                          build_options={'max_batch': max_batch})
    return ExpressionRegressor(runner, card, max_batch)
