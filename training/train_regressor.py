"""Train the DeepExp3D expression regressor on the built data set (training/build_dataset.py).

Reads data/dataset/manifest.csv, trains on split=train with on-the-fly augmentation and an L2 (MSE)
loss on the 55 blendshape weights, validates on split=val after every epoch (no augmentation, the
runtime's preprocessing: INTER_AREA resize of the 224 crop), keeps the best-val checkpoint, and
finally evaluates the best model on split=test and exports it to ONNX with its model card.
AdamW with linear warm-up and a cosine decay per step; resumable from the checkpoint written after
every epoch (--resume continues at the next epoch; --epochs may be raised to extend the schedule).
Output folder (--out, default out/regressor/<arch>_<size>): last.pt, best.pt, log.csv, loss.png,
deepexp3d_<r18|r50>_<size>.onnx and .json.

    python -m training.train_regressor --arch resnet18 --input-size 128 --epochs 30
    python -m training.train_regressor --epochs 2 --max-train-images 2000 --threads 1   # smoke run
    python -m training.train_regressor --resume                                        # after a stop
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fer3d_ros.core.expression.morphable_model import load_landmark_model
from training.augmentation import Augmentation, augment, mirror_permutation, to_input
from training.deepexp3d import ARCHITECTURES, DeepExp3D, model_id
from training.export_regressor import export_onnx
from training.optimisation import cosine_schedule, make_optimizer, save_atomic, seed_worker
from training.paths import DATA, OUT


def load_split(manifest: Path, split: str, names: list[str], limit: int | None = None,
               seed: int = 0) -> tuple[list[Path], np.ndarray]:
    """Crop paths (absolute) and (N, 55) float32 targets of one split; a seeded subsample if `limit`."""
    with open(manifest, newline='') as file:
        rows = [row for row in csv.DictReader(file) if row['split'] == split]
    if limit is not None and len(rows) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
        rows = [rows[k] for k in keep]
    paths = [manifest.parent / row['crop'] for row in rows]
    targets = np.array([[float(row[name]) for name in names] for row in rows], np.float32).reshape(-1, len(names))
    return paths, targets


class CropDataset(Dataset):
    """(image (3, S, S) float32 BGR 0..255, target (55,) float32) from the manifest's crops."""

    def __init__(self, paths: list[Path], targets: np.ndarray, input_size: int, names: list[str],
                 aug: Augmentation | None = None, seed: int = 0) -> None:
        self.paths, self.targets, self.input_size, self.aug = paths, targets, input_size, aug
        self.mirror = mirror_permutation(names)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        crop = cv2.imread(str(self.paths[index]), cv2.IMREAD_COLOR)
        if crop is None:
            raise OSError(f'cannot read crop {self.paths[index]}')
        target = self.targets[index]
        if self.aug is not None:
            crop, target = augment(crop, target, self.aug, self.rng, self.mirror)
        return torch.from_numpy(to_input(crop, self.input_size)), torch.from_numpy(np.array(target))


# ------------------------------------------------------------------------------------ training

def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device, label: str) -> float:
    """One pass over the training set; returns the mean (augmented) MSE."""
    model.train()
    total, count = 0.0, 0
    with tqdm(loader, desc=label, unit='batch', leave=False) as bar:
        for image, target in bar:
            image, target = image.to(device, non_blocking=True), target.to(device, non_blocking=True)
            loss = nn.functional.mse_loss(model(image), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, count = total + loss.item() * len(image), count + len(image)
            bar.set_postfix(mse=f'{total / count:.4f}', lr=f'{scheduler.get_last_lr()[0]:.1e}')
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, label: str) -> dict[str, Any]:
    """MSE, MAE and per-expression MAE over a split (eval mode, no augmentation)."""
    model.eval()
    squared, absolute, count = 0.0, None, 0
    for image, target in tqdm(loader, desc=label, unit='batch', leave=False):
        error = model(image.to(device)) - target.to(device)
        squared += float((error ** 2).sum())
        batch_abs = error.abs().sum(0).double().cpu()
        absolute = batch_abs if absolute is None else absolute + batch_abs
        count += len(image)
    if count == 0:
        return {'mse': float('nan'), 'mae': float('nan'), 'mae_per_expression': []}
    per_expression = (absolute / count).tolist()
    return {'mse': squared / (count * len(per_expression)), 'mae': float(np.mean(per_expression)),
            'mae_per_expression': per_expression}


def write_log(history: list[dict[str, float]], out: Path) -> None:
    """log.csv (one row per epoch) and loss.png (train and val MSE, log scale)."""
    keys = ['epoch', 'train_mse', 'val_mse', 'val_mae', 'lr', 'seconds']
    with open(out / 'log.csv', 'w', newline='') as file:
        writer = csv.DictWriter(file, keys)
        writer.writeheader()
        writer.writerows({k: row[k] for k in keys} for row in history)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(6, 4))
    epochs = [row['epoch'] for row in history]
    axis.plot(epochs, [row['train_mse'] for row in history], 'o-', label='train (augmented)')
    axis.plot(epochs, [row['val_mse'] for row in history], 's-', label='val')
    axis.set(xlabel='epoch', ylabel='MSE (55 weights)', yscale='log', title=out.name)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / 'loss.png', dpi=100)
    plt.close(figure)


# ----------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--manifest', type=Path, default=DATA / 'dataset' / 'manifest.csv')
    parser.add_argument('--arch', choices=sorted(ARCHITECTURES), default='resnet18')
    parser.add_argument('--input-size', type=int, default=128)
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--lr', type=float, default=1e-3, help='peak AdamW learning rate')
    parser.add_argument('--weight-decay', type=float, default=0.05)
    parser.add_argument('--warmup-steps', type=int, default=500, help='at most 5%% of all steps')
    parser.add_argument('--max-train-images', type=int, help='seeded subsample of split=train')
    parser.add_argument('--max-val-images', type=int, help='seeded subsample of split=val and test')
    parser.add_argument('--no-augment', action='store_true', help='train on the plain crops')
    parser.add_argument('--threads', type=int, help='torch.set_num_threads (default: torch decides)')
    parser.add_argument('--workers', type=int, help='DataLoader worker processes (default: 1 on CPU, 8 on CUDA)')
    parser.add_argument('--device', help='default: cuda if available, else cpu')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path, help='default: out/regressor/<arch>_<size>')
    parser.add_argument('--resume', action='store_true', help='continue from <out>/last.pt')
    args = parser.parse_args(argv)
    args.out = args.out or OUT / 'regressor' / f'{args.arch}_{args.input_size}'
    return args


def loaders(args: argparse.Namespace, names: list[str],
            device: torch.device) -> tuple[DataLoader, DataLoader, DataLoader, np.ndarray]:
    """Train (shuffled, augmented), val and test loaders, and the mean training target."""
    if not args.manifest.is_file():
        raise FileNotFoundError(f'{args.manifest} not found: run python -m training.build_dataset first')
    train_paths, train_targets = load_split(args.manifest, 'train', names, args.max_train_images, args.seed)
    if not train_paths:
        raise ValueError(f'{args.manifest} has no split=train rows')
    aug = None if args.no_augment else Augmentation()
    common = {'num_workers': args.workers, 'pin_memory': device.type == 'cuda',
              'worker_init_fn': seed_worker if args.workers else None}
    train = DataLoader(CropDataset(train_paths, train_targets, args.input_size, names, aug, args.seed),
                       batch_size=args.batch_size, shuffle=True, drop_last=len(train_paths) > args.batch_size,
                       **common)

    def plain(split: str) -> DataLoader:
        paths, targets = load_split(args.manifest, split, names, args.max_val_images, args.seed)
        return DataLoader(CropDataset(paths, targets, args.input_size, names), batch_size=args.batch_size, **common)
    return train, plain('val'), plain('test'), train_targets.mean(axis=0)


def card_train(args: argparse.Namespace, train: DataLoader, val: DataLoader, test: DataLoader) -> dict[str, Any]:
    """The training settings recorded in every checkpoint and in the model card."""
    aug = train.dataset.aug
    return {'manifest': str(args.manifest), 'epochs': args.epochs, 'batch_size': args.batch_size,
            'lr': args.lr, 'weight_decay': args.weight_decay, 'optimizer': 'AdamW, warm-up + cosine per step',
            'loss': 'mse', 'seed': args.seed, 'n_train': len(train.dataset), 'n_val': len(val.dataset),
            'n_test': len(test.dataset), 'augmentation': asdict(aug) if aug else None}


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume), keep best.pt, export the best model to ONNX; returns the model card."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if args.workers is None:  # ~1.2 ms/img of decoding + augmentation per worker: a GPU needs several
        args.workers = min(8, os.cpu_count() or 1) if device.type == 'cuda' else 1
    names = list(load_landmark_model().expression_names)
    train_loader, val_loader, test_loader, mean_target = loaders(args, names, device)
    model = DeepExp3D(args.arch, len(names))
    model.set_output_prior(mean_target)
    model.to(device)
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    total_steps = args.epochs * len(train_loader)
    scheduler = cosine_schedule(optimizer, total_steps, max(1, min(args.warmup_steps, total_steps // 20)))
    args.out.mkdir(parents=True, exist_ok=True)
    start, best, history = 0, {'val_mse': math.inf, 'epoch': 0}, []
    if args.resume:
        start, best, history = resume(args, model, optimizer, scheduler, device)
    train_settings = card_train(args, train_loader, val_loader, test_loader)
    for epoch in range(start + 1, args.epochs + 1):
        began = time.perf_counter()
        train_mse = train_epoch(model, train_loader, optimizer, scheduler, device, f'epoch {epoch}/{args.epochs}')
        val = evaluate(model, val_loader, device, 'val')
        history.append({'epoch': epoch, 'train_mse': train_mse, 'val_mse': val['mse'], 'val_mae': val['mae'],
                        'lr': scheduler.get_last_lr()[0], 'seconds': time.perf_counter() - began})
        state = {'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                 'scheduler': scheduler.state_dict(), 'epoch': epoch, 'arch': args.arch,
                 'input_size': args.input_size, 'expression_names': names, 'history': history,
                 'args': {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                 'card_train': {**train_settings, 'epoch': epoch},
                 'card_metrics': {'val_mse': val['mse'], 'val_mae': val['mae']}}
        if not val['mse'] >= best['val_mse']:  # an empty val split (NaN) makes best.pt follow last.pt
            best = {'val_mse': val['mse'], 'epoch': epoch}
            save_atomic({k: v for k, v in state.items() if k not in ('optimizer', 'scheduler')}, args.out / 'best.pt')
        save_atomic({**state, 'best': best}, args.out / 'last.pt')
        write_log(history, args.out)
        tqdm.write(f"epoch {epoch}: train {train_mse:.5f}  val {val['mse']:.5f} (MAE {val['mae']:.4f})  "
                   f"best {best['val_mse']:.5f} @ {best['epoch']}  {history[-1]['seconds']:.0f} s")
    return finish(args, model, names, val_loader, test_loader, device)


def resume(args: argparse.Namespace, model: nn.Module, optimizer: torch.optim.Optimizer,
           scheduler: torch.optim.lr_scheduler.LRScheduler,
           device: torch.device) -> tuple[int, dict[str, Any], list[dict[str, float]]]:
    """Load <out>/last.pt into model, optimizer and scheduler; returns (epoch done, best, history)."""
    path = args.out / 'last.pt'
    if not path.is_file():
        raise FileNotFoundError(f'--resume: no checkpoint {path}')
    state = torch.load(path, map_location=device, weights_only=False)
    if (state['arch'], state['input_size']) != (args.arch, args.input_size):
        raise ValueError(f"--resume: {path} is {state['arch']} at {state['input_size']} px, "
                         f'not {args.arch} at {args.input_size} px')
    model.load_state_dict(state['model'])
    optimizer.load_state_dict(state['optimizer'])
    scheduler.load_state_dict(state['scheduler'])
    tqdm.write(f"resuming {path} after epoch {state['epoch']} (best val {state['best']['val_mse']:.5f})")
    return state['epoch'], state['best'], state['history']


def finish(args: argparse.Namespace, model: DeepExp3D, names: list[str], val_loader: DataLoader,
           test_loader: DataLoader, device: torch.device) -> dict[str, Any]:
    """Evaluate the best checkpoint on val and test, export it to ONNX with the card."""
    best = torch.load(args.out / 'best.pt', map_location=device, weights_only=False)
    model.load_state_dict(best['model'])
    val, test = evaluate(model, val_loader, device, 'val'), evaluate(model, test_loader, device, 'test')
    metrics = {'val_mse': val['mse'], 'val_mae': val['mae'], 'test_mse': test['mse'], 'test_mae': test['mae'],
               'val_mae_per_expression': dict(zip(names, val['mae_per_expression']))}
    metrics = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}  # JSON
    stem = model_id(args.arch, args.input_size)
    card = export_onnx(model, args.out / f'{stem}.onnx', args.input_size, stem,
                       {'expression_names': names, 'train': best['card_train'], 'metrics': metrics})
    tqdm.write(f"best epoch {best['epoch']}: val MSE {val['mse']:.5f}, test MSE {test['mse']:.5f}; "
               f"wrote {args.out / stem}.onnx")
    return card


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == '__main__':
    main()
