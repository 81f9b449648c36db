"""Fitting the 3DMM to 68 2D landmarks of one image (the paper's per-image baseline).

Alternates (1) a scaled-orthographic camera by extended POS for the current shape and (2) the
shape weights for that camera: identity i with a Gaussian prior, expression e in [0, 1] with a
Tikhonov prior, by box-constrained least squares (scipy's NNLS, lsq_linear where e > 1 binds).
Residuals are measured in model centimetres (pixels / camera scale), so the prior weights do not
depend on image resolution. Identity is eliminated in closed form, leaving a small bounded
problem in e alone (same minimiser as the joint problem, several times faster).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.optimize import lsq_linear, nnls

from fer3d_ros.core.expression.morphable_model import JAW, LandmarkModel
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera, fit_camera


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


@dataclass(frozen=True, eq=False)
class IdentityPrior:
    """A Gaussian belief about the identity weights: N(mean, covariance)."""
    mean: np.ndarray                 # (n_id,)
    covariance: np.ndarray           # (n_id, n_id)

    @classmethod
    def isotropic(cls, n_identity: int, weight: float) -> IdentityPrior:
        """The model's prior: i ~ N(0, I / weight), i.e. the penalty weight |i|^2."""
        return cls(np.zeros(n_identity), np.eye(n_identity) / weight)


def solve_shape(a_id: np.ndarray, a_e: np.ndarray, b: np.ndarray, settings: FitSettings,
                prior: IdentityPrior | None = None) -> tuple[np.ndarray, np.ndarray]:
    """min |A_id i + A_e e - b|^2 + (i - m)^T S^-1 (i - m) + l_e |e|^2 subject to 0 <= e <= 1.

    The identity prior N(m, S) defaults to N(0, I / l_id); a track passes what its earlier frames
    taught it. For a fixed e the best i is m + S A_id^T G^-1 r with G = I + A_id S A_id^T and
    r = b - A_id m - A_e e; substituting it leaves the quadratic r^T G^-1 r in e.
    """
    prior = prior or IdentityPrior.isotropic(a_id.shape[1], settings.identity_prior)
    a_cov = a_id @ prior.covariance
    gram = (cholesky(a_cov @ a_id.T + np.eye(len(b)), lower=True), True)  # G = L L^T
    target = b - a_id @ prior.mean
    if a_e.shape[1] == 0:
        return prior.mean + a_cov.T @ cho_solve(gram, target), np.zeros(0)
    whiten = lambda x: solve_triangular(gram[0], x, lower=True)  # noqa: E731  |L^-1 x|^2 = x^T G^-1 x
    expression = least_squares_in_unit_box(
        np.vstack([whiten(a_e), np.sqrt(settings.expression_prior) * np.eye(a_e.shape[1])]),
        np.concatenate([whiten(target), np.zeros(a_e.shape[1])]))
    identity = prior.mean + a_cov.T @ cho_solve(gram, target - a_e @ expression)
    return identity, expression


def least_squares_in_unit_box(system: np.ndarray, target: np.ndarray) -> np.ndarray:
    """argmin |system x - target|^2 subject to 0 <= x <= 1.

    Lawson-Hanson NNLS first (about 35x faster than lsq_linear here): the upper bound rarely binds
    on landmark fits, and where NNLS's answer respects it, it is also the box-constrained minimiser.
    """
    solution = nnls(system, target)[0]
    if solution.max() <= 1.0:
        return solution
    return lsq_linear(system, target, bounds=(0.0, 1.0), method='trf').x


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
