"""Build a TensorRT 10 engine from one of the ONNX models, on the machine that will run it.

An engine runs only on the GPU model and TensorRT version that built it, so it is built on the
target (robot or workstation) and never shipped. Next to it goes `<engine>.json` with the key that
fer3d_ros.core.inference.tensorrt.TensorRTBackend checks, the ONNX file's SHA-256 and the input shapes.
The optimisation profile covers batches 1..max_batch; dynamic height and width (the detector's)
need --input-size (the size tuned for) and optionally --min-input-size and --max-input-size.

    python3 -m fer3d_ros.core.inference.engine_builder --onnx models/retinaface_mnet025.onnx --input-size 480x640 \\
        --min-input-size 120x160 --max-input-size 640x640 --max-batch 1
    python3 -m fer3d_ros.core.inference.engine_builder --onnx models/X.onnx --precision int8 --calibration-dir CROPS

INT8 uses TensorRT's entropy calibration (deprecated since TensorRT 10.1 in favour of explicit
Q/DQ quantization, but still supported in 10.x) on images preprocessed exactly as at run time.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from fer3d_ros.core.files import require_file
from fer3d_ros.core.inference.tensorrt import (
    PRECISIONS,
    CudaDevice,
    DeviceBuffer,
    engine_metadata_path,
    engine_path_for,
    format_engine_key,
    open_cuda,
    tensorrt_available,
    trt_logger,
)

Shape = tuple[int, ...]
Size = tuple[int, int]
IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.webp'}
# What --calibration-dir images go through for each shipped model (module:function, BGR -> NCHW).
DEFAULT_PREPROCESS = {'retinaface_mnet025': 'fer3d_ros.core.frontend.detection:network_input'}


def profile_shapes(shape: Shape, max_batch: int, input_size: Size | None = None, min_input_size: Size | None = None,
                   max_input_size: Size | None = None) -> tuple[Shape, Shape, Shape]:
    """(min, opt, max) input shapes for an ONNX input `shape` (-1 marks a dynamic dim).

    A dynamic batch spans 1..max_batch, tuned for max_batch // 2 (at least 1). Dynamic height and
    width (the last two dims) take `input_size` as opt and min/max_input_size (default input_size)
    as bounds; static dims stay as they are, and other dynamic dims are not supported.
    """
    if max_batch < 1:
        raise ValueError(f'max_batch must be at least 1, got {max_batch}')
    low, opt, high = list(shape), list(shape), list(shape)
    if shape[0] < 0:
        low[0], opt[0], high[0] = 1, max(1, max_batch // 2), max_batch
    spatial = [i for i in range(1, len(shape)) if shape[i] < 0]
    if spatial:
        if len(shape) != 4 or spatial[0] < 2:
            raise ValueError(f'input shape {shape}: only the batch, height and width of an NCHW input may '
                             'be dynamic')
        if input_size is None:
            raise ValueError(f'input shape {shape} has a dynamic height/width: give input_size (--input-size HxW)')
        bounds = [min_input_size or input_size, input_size, max_input_size or input_size]
        if not all(lo <= mid <= hi for lo, mid, hi in zip(*bounds)):
            raise ValueError(f'need min_input_size <= input_size <= max_input_size, got {bounds}')
        for target, size in zip((low, opt, high), bounds):
            for i in spatial:
                target[i] = int(size[i - 2])
    return tuple(low), tuple(opt), tuple(high)


def calibration_batches(source: str | Path | np.ndarray, shape: Shape,
                        preprocess: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """Float32 NCHW batches of exactly `shape` for INT8 calibration.

    `source` is either ready network inputs (M, C, H, W) or a folder of images (aligned crops for
    the expression network), each resized to (H, W) and passed through `preprocess` (BGR uint8
    (H, W, 3) -> (C, H, W) or (1, C, H, W)), the same function the caller uses at run time. The
    last batch is filled up by repeating its own samples.
    """
    size, sample_shape = shape[0], tuple(shape[1:])
    if isinstance(source, np.ndarray):
        if source.ndim != 4 or source.shape[1:] != sample_shape:
            raise ValueError(f'calibration array has shape {source.shape}, expected (M, {sample_shape})')
        samples: Iterator[np.ndarray] = iter(source)
    else:
        if preprocess is None:
            raise ValueError('calibration images from a folder need the preprocess function of the model')
        files = sorted(path for path in Path(source).expanduser().iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f'no images ({", ".join(sorted(IMAGE_SUFFIXES))}) in {source}')
        samples = (_load_sample(path, sample_shape, preprocess) for path in files)
    batch: list[np.ndarray] = []
    for sample in samples:
        batch.append(np.asarray(sample, np.float32))
        if len(batch) == size:
            yield np.ascontiguousarray(batch)
            batch = []
    if batch:
        yield np.ascontiguousarray(np.resize(np.asarray(batch), shape))


def _load_sample(path: Path, sample_shape: Shape, preprocess: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """One image file -> one preprocessed network input of `sample_shape` (C, H, W)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'cannot read calibration image {path}')
    height, width = sample_shape[1:]
    sample = np.asarray(preprocess(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)))
    if sample.shape[-3:] != sample_shape or sample.size != np.prod(sample_shape):
        raise ValueError(f'preprocess turned {path.name} into shape {sample.shape}, expected {sample_shape}')
    return sample.reshape(sample_shape)


def _entropy_calibrator(trt, batches: Iterator[np.ndarray], cuda: CudaDevice):
    """A trt.IInt8EntropyCalibrator2 that uploads `batches` one by one to the GPU."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 needs the base initialised explicitly
            self.buffer: DeviceBuffer | None = None
            self.count = 0

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks take the batch from the calibration profile's shape

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(batches, None)
            if batch is None:
                return None
            if self.buffer is None or self.buffer.nbytes < batch.nbytes:
                self.buffer = cuda.empty(batch.nbytes)
            cuda.upload(self.buffer, batch)
            cuda.synchronize()
            self.count += len(batch)
            return [self.buffer.ptr]

        def read_calibration_cache(self) -> None:
            return None  # always calibrate afresh: the data or the model may have changed

        def write_calibration_cache(self, cache) -> None:
            return None

    return EntropyCalibrator()


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, recorded so an engine can be traced to its ONNX model."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_engine(onnx_path: str | Path, engine_path: str | Path, precision: str = 'fp16', max_batch: int = 8,
                 calibration_images: str | Path | np.ndarray | None = None,
                 preprocess: Callable[[np.ndarray], np.ndarray] | None = None, input_size: Size | None = None,
                 min_input_size: Size | None = None, max_input_size: Size | None = None,
                 workspace_mib: int = 1024) -> Path:
    """Build `engine_path` (and `<engine>.json`) from `onnx_path` for GPU 0; return the engine path.

    `precision`: 'fp32', 'fp16' (layers may run in FP16; inputs and outputs stay float32) or
    'int8' (needs `calibration_images`, see calibration_batches, and falls back to FP16 per layer).
    `workspace_mib` caps TensorRT's scratch memory while choosing kernels (Jetsons share RAM).
    """
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
    if precision == 'int8' and calibration_images is None:
        raise ValueError('INT8 needs calibration images (--calibration-dir): a few hundred typical inputs')
    if precision != 'fp32' and not hasattr(trt.BuilderFlag, 'FP16'):
        raise RuntimeError(f'TensorRT {trt.__version__} has no FP16/INT8 builder flags (removed in TensorRT 11); '
                           'use TensorRT 10 or --precision fp32')
    onnx_path = require_file(onnx_path, 'ONNX model', 'It ships in the fer3d_ros package (models/).')
    engine_path = Path(engine_path).expanduser()
    cuda = open_cuda()

    builder = trt.Builder(trt_logger())
    network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
    parser = trt.OnnxParser(network, trt_logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors = '\n'.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f'TensorRT cannot parse {onnx_path}:\n{errors}')
    if network.num_inputs != 1:
        raise ValueError(f'{onnx_path} has {network.num_inputs} inputs; only single-input models are supported')
    tensor = network.get_input(0)
    shapes = profile_shapes(tuple(tensor.shape), max_batch, input_size, min_input_size, max_input_size)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, *shapes)
    config.add_optimization_profile(profile)
    calibrator = None
    if precision in ('fp16', 'int8'):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == 'int8':
        batches = calibration_batches(calibration_images, shapes[1], preprocess)
        first = next(batches, None)  # bad data or preprocessing fails here, not deep inside the build
        if first is None:
            raise ValueError('the INT8 calibration data is empty')
        calibrator = _entropy_calibrator(trt, itertools.chain([first], batches), cuda)
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)  # calibration runs at the profile's opt shape

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f'TensorRT failed to build an engine from {onnx_path} (see its log above)')
    if calibrator is not None and calibrator.count == 0:
        raise RuntimeError('INT8 calibration received no data')
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(memoryview(serialized))
    metadata = {
        'key': format_engine_key(cuda.gpu_name, cuda.capability, trt.__version__, precision),
        'precision': precision,
        'tensorrt_version': trt.__version__,
        'gpu_name': cuda.gpu_name,
        'compute_capability': '{}.{}'.format(*cuda.capability),
        'onnx': str(onnx_path),
        'onnx_sha256': sha256(onnx_path),
        'inputs': {tensor.name: dict(zip(('min', 'opt', 'max'), (list(shape) for shape in shapes)))},
        'calibration_samples': calibrator.count if calibrator is not None else 0,
    }
    engine_metadata_path(engine_path).write_text(json.dumps(metadata, indent=2) + '\n')
    return engine_path


def parse_size(text: str) -> Size:
    """'480x640' -> (480, 640): height then width."""
    try:
        height, width = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected HEIGHTxWIDTH such as 480x640, got {text!r}') from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f'sizes must be positive, got {text!r}')
    return height, width


def load_function(spec: str) -> Callable[[np.ndarray], np.ndarray]:
    """'package.module:function' -> that function."""
    module, _, name = spec.partition(':')
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--onnx', type=Path, required=True, help='the ONNX model')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp16')
    parser.add_argument('--max-batch', type=int, default=8, help='largest batch the engine accepts')
    parser.add_argument('--input-size', type=parse_size, help='HxW tuned for, if height/width are dynamic')
    parser.add_argument('--min-input-size', type=parse_size, help='smallest HxW accepted (default --input-size)')
    parser.add_argument('--max-input-size', type=parse_size, help='largest HxW accepted (default --input-size)')
    parser.add_argument('--calibration-dir', type=Path, help='images for INT8 calibration (aligned crops)')
    parser.add_argument('--preprocess', help='module:function turning a BGR image into the network input '
                        f'(known models: {DEFAULT_PREPROCESS})')
    output = parser.add_mutually_exclusive_group()
    output.add_argument('--out-dir', type=Path, help='folder for <model>.<key>.engine (default: ~/.cache/...)')
    output.add_argument('--engine', type=Path, help='exact engine path')
    args = parser.parse_args(argv)

    available, reason = tensorrt_available()
    if not available:
        sys.exit(f'cannot build a TensorRT engine on this machine: {reason}')
    spec = args.preprocess or DEFAULT_PREPROCESS.get(args.onnx.stem)
    if args.calibration_dir is not None and spec is None:
        parser.error(f'give --preprocess module:function for {args.onnx.name}')
    preprocess = load_function(spec) if args.calibration_dir is not None else None
    engine = args.engine or engine_path_for(args.onnx, args.precision, args.out_dir)
    try:
        build_engine(args.onnx, engine, args.precision, args.max_batch, args.calibration_dir, preprocess,
                     args.input_size, args.min_input_size, args.max_input_size)
    except (ValueError, RuntimeError, FileNotFoundError) as error:
        sys.exit(f'error: {error}')
    print(f'engine: {engine}\nmetadata: {engine_metadata_path(engine)}')


if __name__ == '__main__':
    main()
