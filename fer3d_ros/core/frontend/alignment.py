"""Registration: a similarity transform of the detected landmarks onto the frontal template."""
from __future__ import annotations

import cv2
import numpy as np


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping source to target.

    Closed form of Umeyama (1991): returns the 2x3 matrix A with target ~ A[:, :2] @ p + A[:, 2].
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    variance = (source_centred ** 2).sum()
    if variance < 1e-12:
        raise ValueError('landmarks are degenerate (all points coincide); cannot register the face')
    covariance = target_centred.T @ source_centred
    u, singular, vt = np.linalg.svd(covariance)
    reflect = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ reflect @ vt
    scale = (singular * np.diag(reflect)).sum() / variance
    linear = scale * rotation
    return np.hstack([linear, (target_mean - linear @ source_mean)[:, None]])


def apply_transform(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points with a 2x3 affine transform."""
    return points @ transform[:, :2].T + transform[:, 2]


def align_face(image: np.ndarray, landmarks: np.ndarray, template_points: np.ndarray,
               size: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` so that `landmarks` (68, 2) land on `template_points`; return (crop, A).

    A is the 2x3 image-to-crop transform. Pixels outside the image are filled by replicating
    the border, so a face at the frame's edge gives no hard black edge to the regressor.
    """
    transform = similarity_transform(landmarks, template_points)
    crop = cv2.warpAffine(image, transform, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, transform
