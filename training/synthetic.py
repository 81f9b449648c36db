"""Synthetic landmark videos with known identity, expressions and camera, for fitting checks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer3d_ros.core.expression.morphable_model import LandmarkModel
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera, rotation_from_euler


@dataclass(frozen=True, eq=False)
class SyntheticVideo:
    identity: np.ndarray            # (n_id,)
    expressions: np.ndarray         # (F, n_exp)
    cameras: list[ScaledOrthographicCamera]
    clean: np.ndarray               # (F, 68, 2) projected landmarks
    landmarks: np.ndarray           # (F, 68, 2) with pixel noise


def expression_trajectory(model: LandmarkModel, frames: int, rng: np.random.Generator,
                          events_per_second: float = 1.0, fps: float = 30.0) -> np.ndarray:
    """Sparse, smooth expressions: blendshape events (raised-cosine bumps, 0.5-2 s, peak 0.3-1)."""
    active = model.observable_expressions()
    expressions = np.zeros((frames, model.n_expression))
    t = np.arange(frames)
    for _ in range(rng.poisson(events_per_second * frames / fps) + 1):
        shape = rng.choice(active)
        centre, width = rng.uniform(0, frames), rng.uniform(0.5, 2.0) * fps
        bump = np.where(np.abs(t - centre) < width / 2, 0.5 * (1 + np.cos(2 * np.pi * (t - centre) / width)), 0.0)
        expressions[:, shape] += rng.uniform(0.3, 1.0) * bump
    return np.clip(expressions, 0.0, 1.0)


def camera_path(frames: int, rng: np.random.Generator, fps: float = 30.0) -> list[ScaledOrthographicCamera]:
    """Slow head motion: yaw +-0.4, pitch +-0.2, roll +-0.15 rad; ~10 px/cm (a 150 px face)."""
    t = np.arange(frames) / fps
    def wave(amplitude):
        return amplitude * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi))
    yaw, pitch, roll = wave(0.4), wave(0.2), wave(0.15)
    scale = rng.uniform(8.0, 12.0) * (1 + wave(0.1))
    x, y = 320 + wave(40.0), 240 + wave(30.0)
    return [ScaledOrthographicCamera(float(scale[f]), rotation_from_euler(roll[f], pitch[f], yaw[f]),
                                     np.array([x[f], y[f]])) for f in range(frames)]


def synthetic_video(model: LandmarkModel, frames: int, noise_px: float, seed: int) -> SyntheticVideo:
    rng = np.random.default_rng(seed)
    identity = rng.standard_normal(model.n_identity)
    expressions = expression_trajectory(model, frames, rng)
    cameras = camera_path(frames, rng)
    clean = np.stack([c.project(model.landmarks(identity, e)) for c, e in zip(cameras, expressions)])
    return SyntheticVideo(identity, expressions, cameras, clean, clean + rng.normal(0, noise_px, clean.shape))
