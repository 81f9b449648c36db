"""The TensorRT backend: engines, the keys that tie them to a GPU and TensorRT version, and the GPU
memory they run in.

A TensorRT engine is only valid for the GPU model (compute capability) and TensorRT version that
built it, so every engine carries a sidecar `<engine>.json` whose `key` names both; the backend
refuses an engine whose key differs from this machine's. Engines are built on the target machine
with `python3 -m fer3d_ros.core.inference.engine_builder` (or by open_backend(...,
allow_engine_build=True)).

Device memory and the CUDA stream come from cupy if it imports, else from PyTorch with CUDA; the
robot runtime needs one of them but never PyTorch specifically. (cuda-python would work too, but
its raw cudaMalloc/cudaMemcpy calls with error tuples need more code than both adapters together.)
"""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import numpy as np

from fer3d_ros.core.files import BackendUnavailableError, ModelFileError, require_file

PRECISIONS = ('fp16', 'fp32', 'int8')
INSTALL_TENSORRT = ('install TensorRT 10 for Python (pip install tensorrt-cu12, or apt install '
                    'python3-libnvinfer on Jetson) and a CUDA array library (pip install cupy-cuda12x, '
                    'or PyTorch with CUDA)')


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
    return (f'python3 -m fer3d_ros.core.inference.engine_builder --onnx {onnx_path} --precision {precision} '
            f'--engine {engine_path}')


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


