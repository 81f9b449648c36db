"""Scaled-orthographic camera (POS) and head pose from 2D landmarks and 3D model points.

Image point = scale * R[0:2] @ X + t for a model point X in camera axes (x right, y down,
z away from the camera), R = Rz(roll) @ Ry(yaw) @ Rx(pitch). Positive pitch nods the face
down, positive yaw turns it toward the image's left, positive roll turns it clockwise in the
image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScaledOrthographicCamera:
    scale: float             # pixels per model unit (centimetre)
    rotation: np.ndarray     # (3, 3) rotation matrix
    translation: np.ndarray  # (2,) pixels

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project (N, 3) model points to (N, 2) image points."""
        return self.scale * points @ self.rotation[:2].T + self.translation

    def euler(self) -> tuple[float, float, float]:
        """(roll, pitch, yaw) in radians for R = Rz(roll) Ry(yaw) Rx(pitch)."""
        r = self.rotation
        yaw = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
        pitch = float(np.arctan2(r[2, 1], r[2, 2]))
        roll = float(np.arctan2(r[1, 0], r[0, 0]))
        return roll, pitch, yaw


def rotation_from_euler(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(roll) @ Ry(yaw) @ Rx(pitch)."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return rz @ ry @ rx


def fit_camera(image_points: np.ndarray, model_points: np.ndarray,
               weights: np.ndarray | None = None) -> ScaledOrthographicCamera:
    """Fit a scaled-orthographic camera by POS (Pose from Orthography and Scaling).

    Solves the 2x4 affine camera in least squares, then projects its two rows onto the
    nearest pair of orthonormal rows scaled by one common factor (the "extended" POS step:
    the plain affine solution is neither orthogonal nor isotropic under noise).
    """
    image_points = np.asarray(image_points, np.float64)
    model_points = np.asarray(model_points, np.float64)
    if len(model_points) < 4:
        raise ValueError(f'need at least 4 point pairs for a camera, got {len(model_points)}')
    sqrt_w = np.ones(len(model_points)) if weights is None else np.sqrt(np.asarray(weights, np.float64))
    homogeneous = np.hstack([model_points, np.ones((len(model_points), 1))]) * sqrt_w[:, None]
    affine, *_ = np.linalg.lstsq(homogeneous, image_points * sqrt_w[:, None], rcond=None)
    affine = affine.T  # (2, 4)
    rows = affine[:, :3]
    u, singular, vt = np.linalg.svd(rows, full_matrices=False)
    top_rows = u @ vt  # nearest rows with orthonormal directions
    rotation = np.vstack([top_rows, np.cross(top_rows[0], top_rows[1])])  # det = +1
    scale = float(singular.mean())
    # Re-solve the translation for the orthonormalised rows.
    residual = image_points - scale * model_points @ rotation[:2].T
    translation = (residual * sqrt_w[:, None] ** 2).sum(axis=0) / (sqrt_w ** 2).sum()
    return ScaledOrthographicCamera(scale, rotation, translation)
