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

from fer3d_ros.core.files import BackendUnavailableError, ModelFileError, require_file


class InferenceBackend(Protocol):
    name: str

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on one input batch (N, ...) and return its outputs by name."""


class OnnxRuntimeBackend:
    """ONNX Runtime on CPU (default) or CUDA, with a fixed number of intra-op threads."""

    def __init__(self, model_path: str | os.PathLike, device: str = 'cpu', threads: int = 1,
                 how_to_get: str = 'It ships in the fer3d_ros package (models/).') -> None:
        import onnxruntime as ort

        path = require_file(model_path, 'ONNX model', how_to_get)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        # Idle worker threads busy-wait for work by default: a little faster alone, but they take the
        # cores the graph's other nodes need (bench/bench_onnxruntime.py measures both).
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        # Real faces drive some activations into denormal floats, which x86 handles ~100x slower:
        # flushing them to zero changes no output that matters and saves 20 % on the landmark CNN.
        options.add_session_config_entry('session.set_denormal_as_zero', '1')
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


BACKEND_KINDS = ('auto', 'tensorrt', 'onnxruntime')


def open_backend(kind: str, model_path: str | os.PathLike, engine_path: str | os.PathLike | None = None,
                 threads: int = 1, device: str = 'cpu', allow_engine_build: bool = False,
                 precision: str = 'fp16', build_options: dict | None = None) -> InferenceBackend:
    """The backend `kind` for the ONNX model `model_path`.

    kind: 'onnxruntime' (on `device`, with `threads` threads), 'tensorrt' (GPU 0; the engine is
    `engine_path`, default engine_path_for(model_path, precision)), or 'auto': TensorRT when it
    imports and a CUDA GPU is visible, else ONNX Runtime. With TensorRT (also under 'auto') a missing
    engine raises ModelFileError with the command that builds it, unless `allow_engine_build`: then
    it is built here first (seconds to minutes), passing `build_options` (e.g. input_size,
    max_batch) to engine_builder.build_engine.
    """
    if kind not in BACKEND_KINDS:
        raise ValueError(f'unknown inference backend {kind!r}; choose one of {", ".join(BACKEND_KINDS)}')
    from fer3d_ros.core.inference.tensorrt import TensorRTBackend, build_command, engine_path_for, tensorrt_available
    if kind != 'onnxruntime':
        available, reason = tensorrt_available()
        if kind == 'tensorrt' and not available:
            raise BackendUnavailableError(f'the TensorRT backend cannot run here: {reason}')
        kind = 'tensorrt' if available else 'onnxruntime'
    if kind == 'onnxruntime':
        return OnnxRuntimeBackend(model_path, device=device, threads=threads)

    engine_path = Path(engine_path).expanduser() if engine_path else engine_path_for(model_path, precision)
    command = build_command(model_path, precision, engine_path)
    if not engine_path.is_file():
        if not allow_engine_build:
            raise ModelFileError(f'TensorRT engine not found: {engine_path}. Build it on this machine with: '
                                 f'{command} (or use the onnxruntime backend)')
        require_file(model_path, 'ONNX model', 'It ships in the fer3d_ros package (models/).')
        from fer3d_ros.core.inference.engine_builder import build_engine
        build_engine(model_path, engine_path, precision=precision, **(build_options or {}))
    return TensorRTBackend(engine_path, how_to_build=command)
