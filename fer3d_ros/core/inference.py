"""Inference backends behind one interface: `infer(batch) -> {output name: array}`.

Every network of the pipeline (face detector, expression regressor) is an ONNX model with one
input. ONNX Runtime runs it on CPU (or CUDA); a TensorRT engine built from the same ONNX file
runs it on NVIDIA GPUs. Callers never see which one they got.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np


class ModelFileError(FileNotFoundError):
    """A model or engine file is missing or unreadable; the text says which and how to get it."""


class InferenceBackend(Protocol):
    name: str

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on one input batch (N, ...) and return its outputs by name."""


def require_file(path: str | os.PathLike, what: str, how_to_get: str) -> Path:
    """Return `path` as a Path, or raise ModelFileError naming the file and how to obtain it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelFileError(f'{what} not found: {path}. {how_to_get}')
    return path


class OnnxRuntimeBackend:
    """ONNX Runtime on CPU (default) or CUDA, with a fixed number of intra-op threads."""

    def __init__(self, model_path: str | os.PathLike, device: str = 'cpu', threads: int = 1,
                 how_to_get: str = 'It ships in the fer3d_ros package (models/).') -> None:
        import onnxruntime as ort

        path = require_file(model_path, 'ONNX model', how_to_get)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = ['CPUExecutionProvider']
        if device == 'cuda':
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise RuntimeError('ONNX Runtime was asked for CUDA but this onnxruntime has no CUDA '
                                   'provider; install onnxruntime-gpu or use device "cpu"')
            providers.insert(0, 'CUDAExecutionProvider')
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelFileError(f'cannot load ONNX model {path}: {error}') from error
        self._input = self._session.get_inputs()[0].name
        self.output_names = [output.name for output in self._session.get_outputs()]
        self.name = f'onnxruntime-{device}'

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._session.run(self.output_names, {self._input: np.ascontiguousarray(batch, np.float32)})
        return dict(zip(self.output_names, outputs))
