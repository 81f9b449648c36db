"""Optimisation helpers shared by the trainers: the optimiser, its schedule, checkpoints, workers."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def seed_worker(_: int) -> None:
    """Each DataLoader worker (a fresh copy per epoch) draws its own augmentations."""
    info = torch.utils.data.get_worker_info()
    info.dataset.rng = np.random.default_rng(torch.initial_seed() % 2 ** 32)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                    final_ratio: float = 0.01) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LR factor: linear warm-up, then cosine from 1 down to `final_ratio`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and batch-norm parameters (1-D tensors)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.AdamW([{'params': decay, 'weight_decay': weight_decay},
                              {'params': no_decay, 'weight_decay': 0.0}], lr=lr)


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file, then rename: a kill mid-write never corrupts the checkpoint."""
    temporary = path.with_suffix('.tmp')
    torch.save(state, temporary)
    os.replace(temporary, path)


