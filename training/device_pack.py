"""Pack the registered training crops small enough to travel to a GPU machine, and unpack them there.

A `device` run carries the repository and at most 64 MiB in all (this repository is ~12 MiB), and
data/dataset (the manifest, 25 MB, and pack_128.npy, 2.3 GB) is far over that. This packs the
manifest's train and val rows (FER+ Test and the other held-out groups stay here, unread by
training anyway) into one .npz: the manifest's CSV (zlib) and each crop as WebP bytes at the
training pack's size (FER2013's grey crops cost WebP no chroma). Measured on the 44,508 train and
val crops at 128 px: WebP quality 70 is 50.5 MiB (mean absolute error 2.1 grey levels, below the
training augmentation's noise), so with this repository 63 MiB travel; quality 75 (52.8 MiB) is
over. Unpacking there takes ~15 s. `unpack` writes manifest.csv and pack_128.npy as
train_multitask reads them, so the same training command runs there without the crop files.

    python -m training.device_pack pack --out devpack/crops.npz            # here; devpack/ ignored
    python -m training.device_pack unpack devpack/crops.npz --dataset /tmp/dataset   # there
    python -m training.train_multitask --manifest /tmp/dataset/manifest.csv --device cuda --out $OUT/run ...
What comes back from $OUT (16 MiB a file): best.pt, the ONNX model and its card, emotion_head.npz,
log.csv; not last.pt, whose optimiser state makes it larger. The GPU machine's image has what
training imports (PyTorch, OpenCV, onnx, onnxruntime, scikit-learn, tqdm; KINDS.md).
"""
from __future__ import annotations

import argparse
import csv
import io
import zlib
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from training.paths import DATA
from training.train_multitask import PACK_SIZE, packed_crops, write_pack

SPLITS = ('train', 'val')


def pack(manifest: Path, out: Path, quality: int = 70, splits: tuple[str, ...] = SPLITS) -> int:
    """Writes `out`; returns its size in bytes. `quality` > 100 is lossless WebP."""
    with open(manifest, newline='') as file:
        header, *rows = list(csv.reader(file))
    crop, split = header.index('crop'), header.index('split')
    crops = packed_crops(manifest, [row[crop] for row in rows])
    keep = [k for k, row in enumerate(rows) if row[split] in splits]
    text = io.StringIO()
    csv.writer(text, lineterminator='\n').writerows([header, *(rows[k] for k in keep)])
    encoded = [webp(np.asarray(crops[k]), quality) for k in tqdm(keep, desc='WebP', leave=False)]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, manifest=np.frombuffer(zlib.compress(text.getvalue().encode(), 9), np.uint8),
             encoded=np.concatenate(encoded), offsets=np.cumsum([0, *map(len, encoded)]))
    return out.stat().st_size


def webp(crop: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode('.webp', crop, [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise OSError('OpenCV could not encode WebP: it was built without libwebp')
    return data.ravel()


def unpack(packed: Path, dataset: Path) -> Path:
    """manifest.csv and pack_<PACK_SIZE>.npy (+ its index) in `dataset`; returns the manifest."""
    with np.load(packed) as data:
        text = zlib.decompress(data['manifest'].tobytes()).decode()
        encoded, offsets = data['encoded'], data['offsets']
    dataset.mkdir(parents=True, exist_ok=True)
    (dataset / 'manifest.csv').write_text(text)
    crops = [row['crop'] for row in csv.DictReader(io.StringIO(text))]
    write_pack(dataset, crops, PACK_SIZE, lambda k: cv2.imdecode(encoded[offsets[k]:offsets[k + 1]], cv2.IMREAD_COLOR),
               'decoding')
    return dataset / 'manifest.csv'


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    packing = commands.add_parser('pack', help='here: the train and val crops into one .npz')
    packing.add_argument('--manifest', type=Path, default=DATA / 'dataset' / 'manifest.csv')
    packing.add_argument('--out', type=Path, required=True)
    packing.add_argument('--quality', type=int, default=70, help='WebP quality 1-100; above 100 lossless')
    unpacking = commands.add_parser('unpack', help='there: the .npz into a dataset folder train_multitask reads')
    unpacking.add_argument('packed', type=Path)
    unpacking.add_argument('--dataset', type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == 'pack':
        print(f'{args.out}: {pack(args.manifest, args.out, args.quality) / 2 ** 20:.1f} MiB')
    else:
        print(f'wrote {unpack(args.packed, args.dataset)} and its crops')


if __name__ == '__main__':
    main()
