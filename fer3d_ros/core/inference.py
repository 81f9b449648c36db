"""Inference backends behind one interface: `infer(batch) -> {output name: array}`.

Every network of the pipeline (face detector, expression regressor) is an ONNX model with one
input. ONNX Runtime runs it on CPU (or CUDA); a TensorRT engine built from the same ONNX file
runs it on NVIDIA GPUs. Callers never see which one they got.
"""
from __future__ import annotations

import functools
import json
import os
import re
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
        # Idle worker threads busy-wait for work by default: a little faster alone, but they take the
        # cores the graph's other nodes need (bench/bench_onnxruntime.py measures both).
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
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


# --- TensorRT -------------------------------------------------------------------------------------
#
# A TensorRT engine is only valid for the GPU model (compute capability) and TensorRT version that
# built it, so every engine carries a sidecar `<engine>.json` whose `key` names both; the backend
# refuses an engine whose key differs from this machine's. Engines are built on the target machine
# with `python -m training.build_engine` (or by open_backend(..., allow_engine_build=True)).
#
# Device memory and the CUDA stream come from cupy if it imports, else from PyTorch with CUDA; the
# robot runtime needs one of them but never PyTorch specifically. (cuda-python would work too, but
# its raw cudaMalloc/cudaMemcpy calls with error tuples need more code than both adapters together.)

BACKEND_KINDS = ('auto', 'tensorrt', 'onnxruntime')
PRECISIONS = ('fp16', 'fp32', 'int8')
INSTALL_TENSORRT = ('install TensorRT 10 for Python (pip install tensorrt-cu12, or apt install '
                    'python3-libnvinfer on Jetson) and a CUDA array library (pip install cupy-cuda12x, '
                    'or PyTorch with CUDA)')


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run on this machine; the text says what is missing."""


class EngineMismatchError(RuntimeError):
    """A TensorRT engine was built for another GPU, TensorRT version or precision."""


class DeviceBuffer:
    """A block of GPU memory: `ptr` is its device address, `nbytes` its size."""

    def __init__(self, array: object, ptr: int, nbytes: int) -> None:
        self.array, self.ptr, self.nbytes = array, int(ptr), int(nbytes)


class CudaDevice:
    """GPU 0 through a CUDA array library: byte buffers, host<->device copies on one stream.

    Subclasses wrap cupy or PyTorch; TensorRT only ever sees raw addresses and the stream handle.
    """

    library: str
    gpu_name: str
    capability: tuple[int, int]
    stream: int  # the cudaStream_t handle for execute_async_v3

    def empty(self, nbytes: int) -> DeviceBuffer:
        """Uninitialised device memory of at least `nbytes` bytes."""
        raise NotImplementedError

    def upload(self, buffer: DeviceBuffer, host: np.ndarray) -> None:
        """Queue a copy of the C-contiguous `host` array to the start of `buffer` on the stream."""
        raise NotImplementedError

    def download(self, buffer: DeviceBuffer, host: np.ndarray) -> None:
        """Copy the start of `buffer` into the C-contiguous, writeable `host` array (after the
        work queued on the stream)."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait until everything queued on the stream has finished."""
        raise NotImplementedError


class _CupyDevice(CudaDevice):
    library = 'cupy'

    def __init__(self) -> None:
        import cupy

        self._cupy, runtime = cupy, cupy.cuda.runtime
        if runtime.getDeviceCount() < 1:  # raises CUDARuntimeError when there is no driver
            raise RuntimeError('no CUDA GPU is visible')
        properties = runtime.getDeviceProperties(0)
        name = properties['name']
        self.gpu_name = name.decode() if isinstance(name, bytes) else str(name)
        self.capability = (int(properties['major']), int(properties['minor']))
        self._stream = cupy.cuda.Stream(non_blocking=True)
        self.stream = self._stream.ptr

    def empty(self, nbytes: int) -> DeviceBuffer:
        array = self._cupy.empty(max(1, nbytes), self._cupy.uint8)
        return DeviceBuffer(array, array.data.ptr, array.nbytes)

    def upload(self, buffer: DeviceBuffer, host: np.ndarray) -> None:
        runtime = self._cupy.cuda.runtime
        runtime.memcpyAsync(buffer.ptr, host.ctypes.data, host.nbytes, runtime.memcpyHostToDevice, self.stream)

    def download(self, buffer: DeviceBuffer, host: np.ndarray) -> None:
        runtime = self._cupy.cuda.runtime
        runtime.memcpyAsync(host.ctypes.data, buffer.ptr, host.nbytes, runtime.memcpyDeviceToHost, self.stream)

    def synchronize(self) -> None:
        self._stream.synchronize()


class _TorchDevice(CudaDevice):
    library = 'torch'

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(f'PyTorch {torch.__version__} sees no CUDA GPU')
        self._torch = torch
        self.gpu_name = torch.cuda.get_device_name(0)
        self.capability = tuple(torch.cuda.get_device_capability(0))
        self._stream = torch.cuda.Stream(device=0)
        self.stream = self._stream.cuda_stream

    def empty(self, nbytes: int) -> DeviceBuffer:
        with self._torch.cuda.stream(self._stream):  # memory owned by our stream's allocator pool
            array = self._torch.empty(max(1, nbytes), dtype=self._torch.uint8, device='cuda:0')
        return DeviceBuffer(array, array.data_ptr(), array.numel())

    def upload(self, buffer: DeviceBuffer, host: np.ndarray) -> None:
        if not host.flags.writeable:  # torch.from_numpy warns about read-only arrays
            host = host.copy()
        source = self._torch.from_numpy(host.reshape(-1).view(np.uint8))
        with self._torch.cuda.stream(self._stream):
            buffer.array[:host.nbytes].copy_(source, non_blocking=True)

    def download(self, buffer: DeviceBuffer, host: np.ndarray) -> None:
        target = self._torch.from_numpy(host.reshape(-1).view(np.uint8))
        with self._torch.cuda.stream(self._stream):
            target.copy_(buffer.array[:host.nbytes])

    def synchronize(self) -> None:
        self._stream.synchronize()


def open_cuda() -> CudaDevice:
    """GPU 0 through cupy, else PyTorch; BackendUnavailableError saying why neither works."""
    reasons = []
    for adapter in (_CupyDevice, _TorchDevice):
        try:
            return adapter()
        except ImportError:
            reasons.append(f'{adapter.library} is not installed')
        except Exception as error:  # each library raises its own CUDA error types
            reasons.append(f'{adapter.library}: {error}')
    raise BackendUnavailableError('no usable CUDA GPU (' + '; '.join(reasons) + ')')


def tensorrt_available() -> tuple[bool, str]:
    """(True, '') when TensorRT imports and a CUDA GPU is usable, else (False, the reason)."""
    try:
        import tensorrt
    except (ImportError, OSError) as error:  # OSError: the package is there but libnvinfer is not
        return False, f'the tensorrt Python package cannot be imported ({error}); {INSTALL_TENSORRT}'
    try:
        open_cuda()
    except BackendUnavailableError as error:
        return False, f'TensorRT {tensorrt.__version__} is installed but {error}; {INSTALL_TENSORRT}'
    return True, ''


def _safe_name(text: str) -> str:
    """`text` with every run of characters other than letters, digits and dots replaced by '_'."""
    return re.sub(r'[^A-Za-z0-9.]+', '_', text).strip('_')


def format_engine_key(gpu_name: str, capability: tuple[int, int], trt_version: str, precision: str) -> str:
    """The file-name-safe key of an engine, e.g. 'NVIDIA_RTX_A2000-sm86-trt10.3.0-fp16'."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
    major, minor = capability
    return f'{_safe_name(gpu_name)}-sm{int(major)}{int(minor)}-trt{_safe_name(trt_version)}-{precision}'


def engine_key(precision: str) -> str:
    """The key of an engine built on this machine (GPU 0, installed TensorRT) at `precision`."""
    import tensorrt as trt

    cuda = open_cuda()
    return format_engine_key(cuda.gpu_name, cuda.capability, trt.__version__, precision)


def default_engine_dir() -> Path:
    """Where engines go by default: $XDG_CACHE_HOME/fer3d_ros/engines (engines are per machine, and
    the installed share folder may be read-only)."""
    return Path(os.environ.get('XDG_CACHE_HOME') or '~/.cache').expanduser() / 'fer3d_ros' / 'engines'


def engine_path_for(onnx_path: str | os.PathLike, precision: str = 'fp16',
                    folder: str | os.PathLike | None = None) -> Path:
    """`folder`/<onnx stem>.<engine key>.engine, so engines for different machines never collide."""
    folder = Path(folder).expanduser() if folder is not None else default_engine_dir()
    return folder / f'{Path(onnx_path).stem}.{engine_key(precision)}.engine'


def engine_metadata_path(engine_path: str | os.PathLike) -> Path:
    """The sidecar JSON written next to an engine: `<engine>.json`."""
    return Path(f'{Path(engine_path).expanduser()}.json')


def build_command(onnx_path: str | os.PathLike, precision: str, engine_path: str | os.PathLike) -> str:
    """The shell command that builds `engine_path` from `onnx_path` on this machine."""
    return f'python -m training.build_engine --onnx {onnx_path} --precision {precision} --engine {engine_path}'


@functools.lru_cache(maxsize=1)
def trt_logger() -> object:
    """One TensorRT logger (warnings and errors) shared by every builder and runtime of the process."""
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


class TensorRTBackend:
    """A serialized TensorRT 10 engine with one input, run on GPU 0.

    Device buffers are kept between calls and grown only when a batch needs more memory. Outputs
    are fresh NumPy arrays. Not thread-safe: use one backend per thread.
    """

    def __init__(self, engine_path: str | os.PathLike, how_to_build: str | None = None) -> None:
        """`how_to_build`: the advice put into errors about a missing or unusable engine."""
        try:
            import tensorrt as trt
        except (ImportError, OSError) as error:
            raise BackendUnavailableError(f'cannot import tensorrt ({error}); {INSTALL_TENSORRT}') from error

        metadata_path = engine_metadata_path(engine_path)
        fallback = build_command('MODEL.onnx', 'fp16', Path(engine_path).expanduser())
        path = require_file(engine_path, 'TensorRT engine', f'Build it on this machine: {how_to_build or fallback}')
        try:
            metadata = json.loads(metadata_path.read_text())
            recorded, precision = metadata['key'], metadata['precision']
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ModelFileError(f'engine metadata {metadata_path} is missing or unreadable ({error}), so the '
                                 f'engine cannot be checked against this GPU; rebuild it: '
                                 f'{how_to_build or fallback}') from error
        how_to_build = how_to_build or build_command(metadata.get('onnx', 'MODEL.onnx'), precision, path)
        self._cuda = open_cuda()
        current = format_engine_key(self._cuda.gpu_name, self._cuda.capability, trt.__version__, precision)
        if recorded != current:
            raise EngineMismatchError(f'TensorRT engine {path} was built for {recorded} but this machine is '
                                      f'{current}; an engine runs only on the GPU model and TensorRT version '
                                      f'that built it. Rebuild it here: {how_to_build}')

        self._runtime = trt.Runtime(trt_logger())
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ModelFileError(f'TensorRT could not load engine {path} (see its log above); rebuild it: '
                                 f'{how_to_build}')
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [name for name in names if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ValueError(f'engine {path} has inputs {inputs}; this backend runs single-input models')
        self._input = inputs[0]
        self.output_names = [name for name in names if name != self._input]
        self._dtypes = {name: np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))) for name in names}
        self._profile = [tuple(dims) for dims in self._engine.get_tensor_profile_shape(self._input, 0)]
        self._buffers: dict[str, DeviceBuffer] = {}
        self.precision = precision
        self.name = f'tensorrt-{precision}'

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, self._dtypes[self._input])
        self._check_shape(batch.shape)
        if not self._context.set_input_shape(self._input, batch.shape):
            raise ValueError(f'TensorRT rejected input shape {batch.shape} (see its log above)')
        outputs = {}
        for name in self.output_names:
            shape = tuple(self._context.get_tensor_shape(name))
            if any(size < 0 for size in shape):
                raise RuntimeError(f'output {name} has a data-dependent shape {shape}, which this backend '
                                   'does not support')
            outputs[name] = np.empty(shape, self._dtypes[name])
        self._cuda.upload(self._bind(self._input, batch.nbytes), batch)
        for name, host in outputs.items():
            self._bind(name, host.nbytes)
        if not self._context.execute_async_v3(self._cuda.stream):
            raise RuntimeError('TensorRT execution failed (see its log above)')
        for name, host in outputs.items():
            self._cuda.download(self._buffers[name], host)
        self._cuda.synchronize()
        return outputs

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        """ValueError unless `shape` lies within the engine's optimisation profile."""
        low, _, high = self._profile
        if len(shape) != len(low) or any(not lo <= size <= hi for size, lo, hi in zip(shape, low, high)):
            raise ValueError(f'input shape {shape} is outside what the engine was built for '
                             f'(min {low}, max {high}); split the batch or rebuild the engine with a larger '
                             '--max-batch / --max-input-size')

    def _bind(self, name: str, nbytes: int) -> DeviceBuffer:
        """The device buffer of tensor `name`, grown to at least `nbytes`, set as its address."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            buffer = self._buffers[name] = self._cuda.empty(nbytes)
        self._context.set_tensor_address(name, buffer.ptr)
        return buffer


def open_backend(kind: str, model_path: str | os.PathLike, engine_path: str | os.PathLike | None = None,
                 threads: int = 1, device: str = 'cpu', allow_engine_build: bool = False,
                 precision: str = 'fp16', build_options: dict | None = None) -> InferenceBackend:
    """The backend `kind` for the ONNX model `model_path`.

    kind: 'onnxruntime' (on `device`, with `threads` threads), 'tensorrt' (GPU 0; the engine is
    `engine_path`, default engine_path_for(model_path, precision)), or 'auto': TensorRT when it
    imports and a CUDA GPU is visible, else ONNX Runtime. With TensorRT (also under 'auto') a missing
    engine raises ModelFileError with the command that builds it, unless `allow_engine_build`: then
    it is built here first (seconds to minutes), passing `build_options` (e.g. input_size,
    max_batch) to training.build_engine.build_engine, which needs the source checkout's training/.
    """
    if kind not in BACKEND_KINDS:
        raise ValueError(f'unknown inference backend {kind!r}; choose one of {", ".join(BACKEND_KINDS)}')
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
        try:
            from training.build_engine import build_engine
        except ImportError as error:
            raise ModelFileError(f'TensorRT engine not found: {engine_path}, and the engine builder '
                                 '(training/build_engine.py, in the source checkout) cannot be imported here; '
                                 f'build it from the source checkout: {command}') from error
        build_engine(model_path, engine_path, precision=precision, **(build_options or {}))
    return TensorRTBackend(engine_path, how_to_build=command)
