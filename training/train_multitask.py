"""Train DeepExp3D multi-task through the coefficient bottleneck: image -> backbone -> the 55
blendshape weights in [0, 1] -> a small emotion head that sees only the observable weights.

Loss = regression to the pseudo-ground truth where a row has one (video fits weigh most, image-set
fits as much, FER+'s single-image fits less: `--fit-weights`) + cross-entropy of the emotion head
to the FER+ vote distribution (7 emotions; contempt, unknown and not-a-face votes dropped) + a
down-weighted cross-entropy to facial_expressions' noisy labels. CK+ rows have no label in the
manifest: the network never sees CK+ emotions, so the classifier's CK+ cross-validation stays honest.
The 13 weights that 68 landmarks cannot observe are not an input of the head, and their pseudo-ground
truth (always 0) keeps them at 0: they cannot become free channels for emotion.

Data: data/dataset/manifest.csv (python -m training.build_dataset), packed once into a uint8 array
of PACK_SIZE crops (data/dataset/pack_<size>.npy) so that an epoch decodes no JPEG. Augmentation as
train_regressor's (misalignment, flip with L/R weights swapped, colour and grey, blur, noise,
occlusion) plus low resolution (faces of 20-64 px, as far from a robot's camera). Selection on
FER+ Valid (accuracy of the head, majority label) and the held-out clips' MSE; FER+ Test is not
read here. Resumable: --resume continues after the last finished epoch.

    python -m training.train_multitask --arch mobilenetv2 --input-size 96 --epochs 16
    python -m training.train_multitask --resume
    python -m training.train_multitask --init out/multitask/mobilenetv2_96/best.pt --epochs 4 --lr 5e-4 \
        --fit-weights 2 1 0.3 --out out/multitask/mobilenetv2_96_ft   # a fine-tune
Output (--out, default out/multitask/<arch>_<size>): last.pt, best.pt, log.csv, the ONNX model
with its card, and the emotion head as a NumPy model (emotion_head.npz).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fer3d_ros.core.affect.emotion import EMOTIONS, HeadModel
from fer3d_ros.core.expression.morphable_model import load_landmark_model
from training.augmentation import Augmentation, augment, mirror_permutation, to_input
from training.deepexp3d import ARCHITECTURES, DeepExp3D, model_id
from training.emotion_data import FERPLUS_VOTES
from training.export_regressor import export_onnx
from training.optimisation import cosine_schedule, make_optimizer, save_atomic, seed_worker
from training.paths import DATA, OUT, REPO

PACK_SIZE = 128
CROP_SIZE = 224  # the manifest's crops
FIT_WEIGHTS = {'video': 1.0, 'image_set': 1.0, 'image': 0.3}
# FER+ vote columns that are emotions, in the order of EMOTIONS
EMOTION_VOTES = [FERPLUS_VOTES.index(name) for name in EMOTIONS]


# ---------------------------------------------------------------------------------------- data

@dataclass
class Rows:
    """The manifest as arrays, one row per crop."""
    crops: list[str]
    source: np.ndarray         # (N,) str
    split: np.ndarray          # (N,) str
    targets: np.ndarray        # (N, 55) pseudo-ground truth
    target_weight: np.ndarray  # (N,) regression weight by kind of fit (0: none)
    emotion: np.ndarray        # (N, 7) emotion distribution (zeros where unknown)
    emotion_weight: np.ndarray  # (N,) weight of the emotion loss (0: no emotion)
    majority: np.ndarray       # (N,) index of the FER+ majority emotion, -1 where none or tied

    def select(self, mask: np.ndarray) -> Rows:
        keep = np.flatnonzero(mask)
        return Rows([self.crops[k] for k in keep], *(getattr(self, f)[keep] for f in (
            'source', 'split', 'targets', 'target_weight', 'emotion', 'emotion_weight', 'majority')))


def vote_distribution(votes: list[str]) -> tuple[np.ndarray, int]:
    """FER+ votes -> (distribution over EMOTIONS, majority index or -1 when tied, not an emotion or absent)."""
    counts = np.array([float(v) for v in votes]) if votes and votes[0] != '' else np.zeros(len(FERPLUS_VOTES))
    top = np.flatnonzero(counts == counts.max())
    majority = EMOTIONS.index(FERPLUS_VOTES[top[0]]) if counts.max() > 0 and len(top) == 1 and \
        FERPLUS_VOTES[top[0]] in EMOTIONS else -1
    emotion = counts[EMOTION_VOTES]
    return (emotion / emotion.sum() if emotion.sum() > 0 else emotion), majority


def load_rows(manifest: Path, names: list[str], fit_weights: dict[str, float], label_weight: float) -> Rows:
    with open(manifest, newline='') as file:
        rows = list(csv.DictReader(file))
    if not rows or 'fit' not in rows[0]:
        raise ValueError(f'{manifest} predates the multi-task columns: rebuild it (python -m training.build_dataset)')
    votes = [vote_distribution([row[f'vote_{name}'] for name in FERPLUS_VOTES]) for row in rows]
    emotion = np.array([distribution for distribution, _ in votes], np.float32)
    emotion_weight = (emotion.sum(axis=1) > 0).astype(np.float32)
    for index, row in enumerate(rows):  # a noisy label where there are no votes
        if emotion_weight[index] == 0 and row['label'] in EMOTIONS:
            emotion[index, EMOTIONS.index(row['label'])] = 1.0
            emotion_weight[index] = label_weight
    return Rows([row['crop'] for row in rows], np.array([row['source'] for row in rows]),
                np.array([row['split'] for row in rows]),
                np.array([[float(row[name]) for name in names] for row in rows], np.float32),
                np.array([fit_weights.get(row['fit'], 0.0) for row in rows], np.float32),
                emotion, emotion_weight, np.array([majority for _, majority in votes]))


def packed_crops(manifest: Path, crops: list[str], size: int = PACK_SIZE) -> np.ndarray:
    """(N, size, size, 3) uint8 of the manifest's crops (INTER_AREA), built once and memory-mapped."""
    pack, index = manifest.parent / f'pack_{size}.npy', manifest.parent / f'pack_{size}.txt'
    if index.is_file() and index.read_text().split('\n') == crops and pack.is_file():
        return np.load(pack, mmap_mode='r')

    def read(k: int) -> np.ndarray:
        image = cv2.imread(str(manifest.parent / crops[k]), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f'cannot read crop {manifest.parent / crops[k]}')
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return write_pack(manifest.parent, crops, size, read, f'packing crops at {size} px')


def write_pack(folder: Path, crops: list[str], size: int, read, label: str) -> np.ndarray:
    """pack_<size>.npy (crop k = read(k), written to a temporary file first) and its index of crop
    names, as packed_crops finds them; returns the pack memory-mapped."""
    pack = folder / f'pack_{size}.npy'
    array = np.lib.format.open_memmap(pack.with_suffix('.tmp.npy'), 'w+', np.uint8, (len(crops), size, size, 3))
    for k in tqdm(range(len(crops)), desc=label, leave=False):
        array[k] = read(k)
    array.flush()
    del array
    os.replace(pack.with_suffix('.tmp.npy'), pack)
    pack.with_suffix('.txt').write_text('\n'.join(crops))
    return np.load(pack, mmap_mode='r')


def low_resolution(crop: np.ndarray, rng: np.random.Generator, sides: tuple[int, int] = (20, 64)) -> np.ndarray:
    """The crop as if the face (about 60 % of it) had been `sides` pixels wide in the camera image."""
    side = int(rng.uniform(*sides) / 0.6)
    if side >= crop.shape[0]:
        return crop
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, crop.shape[1::-1], interpolation=cv2.INTER_LINEAR)


class MultiTaskDataset(Dataset):
    """(image (3, S, S), target (55,), target weight, emotion (7,), emotion weight) from packed crops."""

    def __init__(self, pack: np.ndarray, rows: Rows, indices: np.ndarray, input_size: int, names: list[str],
                 aug: Augmentation | None = None, low_res: float = 0.0, seed: int = 0) -> None:
        self.pack, self.rows, self.indices, self.input_size = pack, rows, indices, input_size
        self.aug, self.low_res = aug, low_res
        self.mirror = mirror_permutation(names)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        k = self.indices[item]
        crop, target = np.array(self.pack[k]), self.rows.targets[k]
        if self.aug is not None:
            if self.rng.random() < self.low_res:
                crop = low_resolution(crop, self.rng)
            crop, target = augment(crop, target, self.aug, self.rng, self.mirror)
        return (torch.from_numpy(to_input(crop, self.input_size)), torch.from_numpy(np.array(target)),
                torch.tensor(self.rows.target_weight[k]), torch.from_numpy(self.rows.emotion[k]),
                torch.tensor(self.rows.emotion_weight[k]))


# ---------------------------------------------------------------------------------------- model

class EmotionHead(nn.Module):
    """A small MLP on the observable expression weights only: the bottleneck the emotion must pass."""

    def __init__(self, observable: np.ndarray, hidden: int = 64, n_classes: int = len(EMOTIONS)) -> None:
        super().__init__()
        self.register_buffer('observable', torch.as_tensor(np.asarray(observable), dtype=torch.long))
        self.layers = nn.Sequential(nn.Linear(len(observable), hidden), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, n_classes))

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        return self.layers(coefficients[:, self.observable])

    def numpy_model(self, model_id: str, names: list[str]) -> HeadModel:
        """The head as the run-time emotion model (fer3d_ros.core.affect.emotion.HeadModel)."""
        first, last = self.layers[0], self.layers[2]
        weights = (first.weight.T, first.bias, last.weight.T, last.bias)
        return HeadModel(model_id, EMOTIONS, tuple(names), 'raw', self.observable.cpu().numpy(),
                         *(w.detach().cpu().numpy().astype(np.float64) for w in weights))


def losses(model: DeepExp3D, head: EmotionHead, batch: tuple[torch.Tensor, ...],
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(regression, emotion) losses of a batch (weighted means over its rows) and the logits."""
    image, target, target_weight, emotion, emotion_weight = (t.to(device, non_blocking=True) for t in batch)
    coefficients = model(image)
    squared = ((coefficients - target) ** 2).mean(dim=1)
    regression = (squared * target_weight).sum() / len(image)
    logits = head(coefficients)
    cross_entropy = -(emotion * torch.log_softmax(logits, dim=1)).sum(dim=1)
    return regression, (cross_entropy * emotion_weight).sum() / len(image), logits


@torch.no_grad()
def evaluate(model: DeepExp3D, head: EmotionHead, loader: DataLoader, rows: Rows, indices: np.ndarray,
             device: torch.device, label: str) -> dict[str, float]:
    """Regression MSE (all rows with a pseudo-ground truth, and clips only) and FER+ majority accuracy."""
    model.eval()
    head.eval()
    predictions, squared = [], []
    for batch in tqdm(loader, desc=label, unit='batch', leave=False):
        image, target = batch[0].to(device), batch[1].to(device)
        coefficients = model(image)
        squared.append(((coefficients - target) ** 2).mean(dim=1).cpu().numpy())
        predictions.append(head(coefficients).argmax(dim=1).cpu().numpy())
    squared, predicted = np.concatenate(squared), np.concatenate(predictions)
    has_target, clips = rows.target_weight[indices] > 0, rows.source[indices] == 'clips'
    majority = rows.majority[indices]
    voted = majority >= 0
    return {'mse': float(squared[has_target].mean()) if has_target.any() else math.nan,
            'clip_mse': float(squared[clips].mean()) if clips.any() else math.nan,
            'ferplus_accuracy': float((predicted[voted] == majority[voted]).mean()) if voted.any() else math.nan,
            'ferplus_images': int(voted.sum())}


# ------------------------------------------------------------------------------------- training

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--manifest', type=Path, default=DATA / 'dataset' / 'manifest.csv')
    parser.add_argument('--arch', choices=sorted(ARCHITECTURES), default='mobilenetv2')
    parser.add_argument('--input-size', type=int, default=96)
    parser.add_argument('--epochs', type=int, default=16)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--lr', type=float, default=2e-3, help='peak AdamW learning rate')
    parser.add_argument('--weight-decay', type=float, default=0.05)
    parser.add_argument('--regression-weight', type=float, default=20.0,
                        help='weight of the pseudo-ground-truth MSE (about 0.01 at convergence) against the '
                             'emotion cross-entropy (about 0.6)')
    parser.add_argument('--emotion-weight', type=float, default=1.0)
    parser.add_argument('--fit-weights', type=float, nargs=3, default=list(FIT_WEIGHTS.values()),
                        metavar=('VIDEO', 'IMAGE_SET', 'IMAGE'), help='regression weight per kind of fit')
    parser.add_argument('--label-weight', type=float, default=0.3, help='facial_expressions labels (noisy)')
    parser.add_argument('--low-resolution', type=float, default=0.25, help='probability of a 20-64 px face')
    parser.add_argument('--max-train-images', type=int, help='seeded subsample of split=train')
    parser.add_argument('--threads', type=int)
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--device')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path)
    parser.add_argument('--resume', action='store_true')
    parser.add_argument('--init', type=Path, help='start from the network and head of this checkpoint (a fine-tune: '
                        'fresh optimiser and schedule), e.g. out/multitask/mobilenetv2_96/best.pt')
    args = parser.parse_args(argv)
    args.out = args.out or OUT / 'multitask' / f'{args.arch}_{args.input_size}'
    return args


def make_loaders(args: argparse.Namespace, names: list[str],
                 device: torch.device) -> tuple[Rows, DataLoader, DataLoader, np.ndarray]:
    if not args.manifest.is_file():
        raise FileNotFoundError(f'{args.manifest} not found: run python -m training.build_dataset first')
    rows = load_rows(args.manifest, names, dict(zip(FIT_WEIGHTS, args.fit_weights)), args.label_weight)
    pack = packed_crops(args.manifest, rows.crops)
    train = np.flatnonzero(rows.split == 'train')
    if args.max_train_images and len(train) > args.max_train_images:
        train = np.sort(np.random.default_rng(args.seed).choice(train, args.max_train_images, replace=False))
    val = np.flatnonzero(rows.split == 'val')  # FER+ Valid and the held-out people and clips
    scale = PACK_SIZE / CROP_SIZE  # the augmentation's pixel ranges are in 224-crop pixels
    aug = replace(Augmentation(), shift_px=Augmentation().shift_px * scale,
                  blur_sigma=tuple(s * scale for s in Augmentation().blur_sigma))
    common = {'num_workers': args.workers, 'pin_memory': device.type == 'cuda',
              'worker_init_fn': seed_worker if args.workers else None, 'batch_size': args.batch_size}
    train_loader = DataLoader(MultiTaskDataset(pack, rows, train, args.input_size, names, aug, args.low_resolution,
                                               args.seed), shuffle=True, drop_last=True, **common)
    val_loader = DataLoader(MultiTaskDataset(pack, rows, val, args.input_size, names), **common)
    mean_target = np.average(rows.targets[train], axis=0, weights=rows.target_weight[train] + 1e-9)
    return rows, train_loader, val_loader, mean_target


def train_epoch(model: DeepExp3D, head: EmotionHead, loader: DataLoader, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, args: argparse.Namespace,
                device: torch.device, label: str) -> dict[str, float]:
    model.train()
    head.train()
    totals, count = np.zeros(2), 0
    with tqdm(loader, desc=label, unit='batch', leave=False) as bar:
        for batch in bar:
            regression, emotion, _ = losses(model, head, batch, device)
            loss = args.regression_weight * regression + args.emotion_weight * emotion
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            totals += (regression.item() * len(batch[0]), emotion.item() * len(batch[0]))
            count += len(batch[0])
            bar.set_postfix(mse=f'{totals[0] / count:.4f}', ce=f'{totals[1] / count:.3f}')
    return {'train_mse': totals[0] / max(count, 1), 'train_ce': totals[1] / max(count, 1)}


def selection_score(metrics: dict[str, float]) -> float:
    """FER+ Valid accuracy, for the epochs whose held-out clip MSE stays within 0.0075 (the previous
    regressor's); beyond it, the clip error decides (lower is better)."""
    if math.isnan(metrics['clip_mse']) or metrics['clip_mse'] <= 0.0075:
        return metrics['ferplus_accuracy']
    return -metrics['clip_mse']


def train(args: argparse.Namespace) -> Path:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    landmark_model = load_landmark_model()
    names = list(landmark_model.expression_names)
    rows, train_loader, val_loader, mean_target = make_loaders(args, names, device)
    model, head = DeepExp3D(args.arch, len(names)), EmotionHead(landmark_model.observable_expressions())
    model.set_output_prior(mean_target)
    if args.init:
        initial = torch.load(args.init, map_location='cpu', weights_only=False)
        model.load_state_dict(initial['model'])
        head.load_state_dict(initial['head'])
    model.to(device), head.to(device)
    optimizer = make_optimizer(nn.ModuleList([model, head]), args.lr, args.weight_decay)
    total_steps = args.epochs * len(train_loader)
    scheduler = cosine_schedule(optimizer, total_steps, max(1, min(500, total_steps // 20)))
    args.out.mkdir(parents=True, exist_ok=True)
    start, best, history = 0, {'score': -math.inf, 'epoch': 0}, []
    if args.resume:
        state = torch.load(args.out / 'last.pt', map_location=device, weights_only=False)
        model.load_state_dict(state['model'])
        head.load_state_dict(state['head'])
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        start, best, history = state['epoch'], state['best'], state['history']
        tqdm.write(f'resuming {args.out / "last.pt"} after epoch {start}')
    val_indices = val_loader.dataset.indices
    for epoch in range(start + 1, args.epochs + 1):
        began = time.perf_counter()
        train_metrics = train_epoch(model, head, train_loader, optimizer, scheduler, args, device,
                                    f'epoch {epoch}/{args.epochs}')
        val = evaluate(model, head, val_loader, rows, val_indices, device, 'val')
        history.append({'epoch': epoch, **train_metrics, **{f'val_{k}': v for k, v in val.items()},
                        'lr': scheduler.get_last_lr()[0], 'seconds': time.perf_counter() - began})
        state = {'model': model.state_dict(), 'head': head.state_dict(), 'optimizer': optimizer.state_dict(),
                 'scheduler': scheduler.state_dict(), 'epoch': epoch, 'arch': args.arch,
                 'input_size': args.input_size, 'expression_names': names, 'history': history,
                 'args': {k: portable(v) for k, v in vars(args).items() if k != 'resume'}}
        if selection_score(val) > best['score']:
            best = {'score': selection_score(val), 'epoch': epoch, **val}
            save_atomic({k: v for k, v in state.items() if k not in ('optimizer', 'scheduler')}, args.out / 'best.pt')
        save_atomic({**state, 'best': best}, args.out / 'last.pt')
        write_log(history, args.out)
        tqdm.write(f"epoch {epoch}: train MSE {train_metrics['train_mse']:.5f} CE {train_metrics['train_ce']:.3f} | "
                   f"val MSE {val['mse']:.5f} clips {val['clip_mse']:.5f} FER+ {val['ferplus_accuracy']:.3f} | "
                   f"best @ {best['epoch']}  {history[-1]['seconds']:.0f} s")
    return export(args, model, head, names)


def portable(value):
    """A setting as the model card records it: paths inside the repository relative to it."""
    if not isinstance(value, Path):
        return value
    path = value.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(value)


def write_log(history: list[dict[str, float]], out: Path) -> None:
    with open(out / 'log.csv', 'w', newline='') as file:
        writer = csv.DictWriter(file, list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def export(args: argparse.Namespace, model: DeepExp3D, head: EmotionHead, names: list[str]) -> Path:
    """The best checkpoint as ONNX (+ card) and its emotion head as a NumPy model."""
    best = torch.load(args.out / 'best.pt', map_location='cpu', weights_only=False)
    model.load_state_dict(best['model'])
    head.load_state_dict(best['head'])
    stem = model_id(args.arch, args.input_size)
    chosen = best['history'][best['epoch'] - 1]
    metrics = {k.removeprefix('val_'): v for k, v in chosen.items() if k.startswith('val_')}
    export_onnx(model, args.out / f'{stem}.onnx', args.input_size, stem, {
        'expression_names': names, 'metrics': metrics,
        'train': {'trainer': 'training.train_multitask', 'epoch': best['epoch'], **best['args']}})
    head_path = args.out / 'emotion_head.npz'
    head.numpy_model(f'mlp-head-{stem}', names).save(head_path)
    tqdm.write(f"best epoch {best['epoch']}: {metrics}; wrote {args.out / stem}.onnx and {head_path}")
    return args.out / f'{stem}.onnx'


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == '__main__':
    main()
