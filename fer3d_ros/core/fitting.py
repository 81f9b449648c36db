"""Fitting the 3DMM to 68 2D landmarks of one image (the paper's per-image baseline).

Alternates (1) a scaled-orthographic camera by extended POS for the current shape and (2) the
shape weights for that camera: identity i with a Gaussian prior, expression e in [0, 1] with a
Tikhonov prior, by box-constrained least squares (scipy's lsq_linear, trust-region reflective).
Residuals are measured in model centimetres (pixels / camera scale), so the prior weights do not
depend on image resolution. Identity is eliminated in closed form, leaving a small bounded
problem in e alone (same minimiser as the joint problem, several times faster).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve, cholesky
from scipy.optimize import lsq_linear

from fer3d_ros.core.morphable_model import JAW, LandmarkModel
from fer3d_ros.core.pose import ScaledOrthographicCamera, fit_camera


@dataclass(frozen=True)
class FitSettings:
    identity_prior: float = 0.05     # lambda_id, cm^2 (DESIGN 5)
    expression_prior: float = 0.2    # lambda_e, cm^2 (DESIGN 5)
    jaw_weight: float = 0.5          # 2D detectors slide the jaw contour along the silhouette
    iterations: int = 5              # camera <-> shape alternations
    fit_expression: bool = True      # False: identity only (for faces known to be neutral)

    def landmark_weights(self) -> np.ndarray:
        weights = np.ones(68)
        weights[JAW] = self.jaw_weight
        return weights


@dataclass(frozen=True, eq=False)
class ImageFit:
    identity: np.ndarray             # (n_id,)
    expression: np.ndarray           # (n_exp,) in [0, 1]
    camera: ScaledOrthographicCamera
    reprojection_px: float           # mean landmark distance in pixels


def shape_system(model: LandmarkModel, camera: ScaledOrthographicCamera, points: np.ndarray,
                 weights: np.ndarray, expressions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted linear system of one frame: residual = A_id i + A_e e[expressions] - b, in cm.

    Returns A_id (136, n_id), A_e (136, len(expressions)) and b (136,).
    """
    rows = camera.rotation[:2]
    sqrt_w = np.repeat(np.sqrt(weights), 2)
    a_id = np.einsum('ij,kjm->kim', rows, model.identity).reshape(136, -1)
    a_e = np.einsum('ij,kjm->kim', rows, model.expression[:, :, expressions]).reshape(136, -1)
    observed = (points - camera.translation) / camera.scale
    b = (observed - model.mean @ rows.T).reshape(136)
    return a_id * sqrt_w[:, None], a_e * sqrt_w[:, None], b * sqrt_w


def solve_shape(a_id: np.ndarray, a_e: np.ndarray, b: np.ndarray,
                settings: FitSettings) -> tuple[np.ndarray, np.ndarray]:
    """min |A_id i + A_e e - b|^2 + l_id |i|^2 + l_e |e|^2 subject to 0 <= e <= 1.

    For a fixed e the best i is ridge regression; substituting it leaves the quadratic
    (A_e e - b)^T Q (A_e e - b) with Q = l_id (A_id A_id^T + l_id I)^-1.
    """
    lam_id, lam_e = settings.identity_prior, settings.expression_prior
    gram = a_id @ a_id.T + lam_id * np.eye(len(b))
    if a_e.shape[1] == 0:
        return a_id.T @ cho_solve(cho_factor(gram), b), np.zeros(0)
    q_root = cholesky(lam_id * np.linalg.inv(gram))  # upper: Q = R^T R
    system = np.vstack([q_root @ a_e, np.sqrt(lam_e) * np.eye(a_e.shape[1])])
    target = np.concatenate([q_root @ b, np.zeros(a_e.shape[1])])
    expression = lsq_linear(system, target, bounds=(0.0, 1.0), method='trf').x
    identity = a_id.T @ cho_solve(cho_factor(gram), b - a_e @ expression)
    return identity, expression


def fit_image(points: np.ndarray, model: LandmarkModel, settings: FitSettings = FitSettings(),
              initial: ImageFit | None = None) -> ImageFit:
    """Fit camera, identity and expression to one image's (68, 2) landmarks."""
    points = np.asarray(points, np.float64)
    weights = settings.landmark_weights()
    active = model.observable_expressions() if settings.fit_expression else np.zeros(0, int)
    identity = np.zeros(model.n_identity) if initial is None else initial.identity
    expression = np.zeros(model.n_expression) if initial is None else initial.expression.copy()
    for _ in range(settings.iterations):
        camera = fit_camera(points, model.landmarks(identity, expression), weights)
        identity, expression[active] = solve_shape(*shape_system(model, camera, points, weights, active), settings)
    camera = fit_camera(points, model.landmarks(identity, expression), weights)
    error = np.linalg.norm(camera.project(model.landmarks(identity, expression)) - points, axis=1).mean()
    return ImageFit(identity, expression, camera, float(error))
