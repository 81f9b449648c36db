"""Export a DeepExp3D regressor checkpoint to ONNX with its JSON model card, checked against PyTorch.

The ONNX model takes `image` (N, 3, S, S) float32, BGR, raw 0..255 (the aligned crop resized to
S x S with cv2.INTER_AREA, transposed to CHW) and returns `expression` (N, 55) in [0, 1]; only the
batch dimension is dynamic. The card `<stem>.json` beside it records model id, architecture, input
size, expression names, the ONNX file's SHA-256, training settings and metrics (including the
largest torch-vs-ONNX-Runtime difference on a random batch of 4).

    python -m training.export_regressor --checkpoint out/regressor/resnet18_128/best.pt \\
        --out out/regressor/resnet18_128/deepexp3d_r18_128.onnx
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from fer3d_ros.core.expression.morphable_model import load_landmark_model
from training.deepexp3d import DeepExp3D


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file: the card names exactly which ONNX file it describes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def onnx_max_abs_diff(model: DeepExp3D, path: Path, input_size: int, batch: int = 4, seed: int = 0) -> float:
    """Largest |torch - ONNX Runtime| over a random BGR 0..255 batch."""
    image = np.random.default_rng(seed).uniform(0, 255, (batch, 3, input_size, input_size)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(image)).numpy()
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = session.run(['expression'], {'image': image})[0]
    return float(np.abs(expected - got).max())


def export_onnx(model: DeepExp3D, path: str | Path, input_size: int, model_id: str,
                extra_card: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `path` (opset 17, TorchScript exporter, dynamic batch) and `<stem>.json`; return the card.

    `extra_card` may hold 'train' and 'metrics' dicts (merged into the card's) and any other keys
    (added as they are). The model is copied to the CPU in eval mode, so the caller's is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).cpu().eval()
    dummy = torch.zeros(1, 3, input_size, input_size)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(net, (dummy,), str(path), dynamo=False, opset_version=17,
                          input_names=['image'], output_names=['expression'],
                          dynamic_axes={'image': {0: 'batch'}, 'expression': {0: 'batch'}})
    diff = onnx_max_abs_diff(net, path, input_size)
    print(f'{path}: max |torch - onnxruntime| = {diff:.2e} on a random batch of 4')
    extra = dict(extra_card or {})
    card = {
        'model_id': model_id,
        'architecture': net.arch,
        'input_size': int(input_size),
        'input': {'name': 'image', 'shape': ['N', 3, input_size, input_size], 'dtype': 'float32',
                  'channels': 'BGR', 'range': [0, 255], 'resize': 'cv2.INTER_AREA from the aligned crop'},
        'output': {'name': 'expression', 'shape': ['N', net.n_outputs], 'range': [0, 1]},
        'expression_names': list(extra.pop('expression_names', load_landmark_model().expression_names)),
        'onnx_sha256': sha256(path),
        'train': extra.pop('train', {}),
        'metrics': {**extra.pop('metrics', {}), 'onnx_max_abs_diff': diff},
        **extra,
    }
    if len(card['expression_names']) != net.n_outputs:
        raise ValueError(f"{len(card['expression_names'])} expression names for {net.n_outputs} outputs")
    path.with_suffix('.json').write_text(json.dumps(card, indent=2) + '\n')
    return card


def load_checkpoint(path: str | Path) -> tuple[DeepExp3D, dict[str, Any]]:
    """The model (CPU, eval) and the raw checkpoint dict written by training/train_regressor.py."""
    checkpoint = torch.load(str(path), map_location='cpu', weights_only=False)
    model = DeepExp3D(checkpoint['arch'], len(checkpoint['expression_names']))
    model.load_state_dict(checkpoint['model'])
    return model.eval(), checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint', required=True, help='best.pt or last.pt from train_regressor')
    parser.add_argument('--out', required=True, help='ONNX path; the card goes to <stem>.json beside it')
    parser.add_argument('--model-id', help='default: the ONNX file stem')
    args = parser.parse_args(argv)
    model, checkpoint = load_checkpoint(args.checkpoint)
    out = Path(args.out)
    card = export_onnx(model, out, checkpoint['input_size'], args.model_id or out.stem,
                       {'expression_names': checkpoint['expression_names'], 'train': checkpoint.get('card_train', {}),
                        'metrics': checkpoint.get('card_metrics', {})})
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {out.with_suffix('.json')}: "
          f"sha256 {card['onnx_sha256'][:16]}…")


if __name__ == '__main__':
    main()
