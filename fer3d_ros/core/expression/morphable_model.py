"""ICT-FaceKit 3D Morphable Model: x(i, e) = mean + U_id i + U_exp e, and its 68-landmark part.

Identity weights i are ~N(0, 1) (100 PCA modes); expression weights e are 55 named ARKit-style
blendshapes in [0, 1]. Everything here is in camera axes (x right, y down, z away from the
camera, see face_template.MODEL_TO_CAMERA) and centimetres, so a fitted camera's rotation is
the head pose in the convention of fer3d_ros/Face.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from fer3d_ros.core.files import find_model
from fer3d_ros.core.frontend.face_template import MODEL_TO_CAMERA

LANDMARK_MODEL_FILE = 'ict_landmark_model.npz'
JAW = np.arange(17)
# Blendshapes that 68 landmarks cannot observe, or that mislead a fit (DESIGN 5): gaze, cheek
# puff and lip roll barely move a landmark; mouthClose alone pushes the lips through each other.
UNOBSERVABLE_PREFIXES = ('eyeLook', 'cheekPuff', 'mouthRoll', 'mouthClose')


@dataclass(frozen=True, eq=False)
class LandmarkModel:
    """The 68-landmark sub-model: what fitting needs, a few hundred kB."""

    mean: np.ndarray               # (68, 3)
    identity: np.ndarray           # (68, 3, n_id)
    expression: np.ndarray         # (68, 3, n_exp)
    expression_names: tuple[str, ...]

    @property
    def n_identity(self) -> int:
        return self.identity.shape[2]

    @property
    def n_expression(self) -> int:
        return self.expression.shape[2]

    def landmarks(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """The (68, 3) landmarks of the face with these weights (None = zeros)."""
        shape = self.mean.copy()
        if identity is not None:
            shape += self.identity @ identity
        if expression is not None:
            shape += self.expression @ expression
        return shape

    def observable_expressions(self) -> np.ndarray:
        """Indices of the blendshapes that a landmark fit estimates (the others stay 0)."""
        return np.array([k for k, name in enumerate(self.expression_names)
                         if not name.startswith(UNOBSERVABLE_PREFIXES)])


@dataclass(frozen=True, eq=False)
class MorphableModel:
    """The full face-area mesh, for rendering and for building the landmark model."""

    mean: np.ndarray               # (V, 3)
    identity: np.ndarray           # (n_id, V, 3)
    expression: np.ndarray         # (n_exp, V, 3)
    expression_names: tuple[str, ...]
    triangles: np.ndarray          # (T, 3)
    landmark_vertices: np.ndarray  # (68,)

    @classmethod
    def load(cls, path: str | Path) -> MorphableModel:
        """Load ICT-FaceKit as converted in ../shared/data/ict_face_model.npz."""
        data = np.load(path)
        flip = MODEL_TO_CAMERA.astype(np.float32)
        return cls(mean=data['mean'] @ flip, identity=data['identity_basis'] @ flip,
                   expression=data['expression_basis'] @ flip,
                   expression_names=tuple(str(n) for n in data['expression_names']),
                   triangles=data['triangles'], landmark_vertices=data['landmarks68'])

    def vertices(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """The (V, 3) mesh with these weights."""
        shape = self.mean.astype(np.float64)
        if identity is not None:
            shape = shape + np.tensordot(identity, self.identity, axes=1)
        if expression is not None:
            shape = shape + np.tensordot(expression, self.expression, axes=1)
        return shape

    def landmark_model(self) -> LandmarkModel:
        return self.sub_model(self.landmark_vertices)

    def sub_model(self, index: np.ndarray) -> LandmarkModel:
        """The model at these vertices only (the landmarks, or motion_model's spread of the face)."""
        return LandmarkModel(mean=self.mean[index].astype(np.float64),
                             identity=self.identity[:, index].transpose(1, 2, 0).astype(np.float64),
                             expression=self.expression[:, index].transpose(1, 2, 0).astype(np.float64),
                             expression_names=self.expression_names)


def save_landmark_model(model: LandmarkModel, path: str | Path, correction: np.ndarray | None = None,
                        extra: dict[str, np.ndarray] | None = None) -> None:
    """Write a compact sub-model (camera axes, cm); `correction` (V, 3) is added to the mean, `extra`
    arrays are stored beside it (the motion model's vertex indices)."""
    mean = model.mean if correction is None else model.mean + correction
    np.savez_compressed(path, mean=mean.astype(np.float32), identity=model.identity.astype(np.float32),
                        expression=model.expression.astype(np.float32),
                        expression_names=np.array(model.expression_names),
                        source=np.array('ICT-FaceKit (MIT, USC ICT): vertices of the face-area model, '
                                        'camera axes (x right, y down, z away)'), **(extra or {}))


@cache
def load_landmark_model(path: str | None = None) -> LandmarkModel:
    """The shipped landmark model (models/ict_landmark_model.npz), or `path`."""
    data = np.load(path or find_model(LANDMARK_MODEL_FILE))
    return LandmarkModel(mean=data['mean'].astype(np.float64), identity=data['identity'].astype(np.float64),
                         expression=data['expression'].astype(np.float64),
                         expression_names=tuple(str(n) for n in data['expression_names']))
