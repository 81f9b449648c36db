"""Build models/face_template.npz: the ICT-FaceKit mean face at its 68 landmarks.

The template is what registration and head pose need at run time (a few kB instead of the
9.5 MB model): the 68 landmark positions of the generic neutral mesh, in centimetres, and the
landmarks that stay put under every expression blendshape (used for head pose, so that a smile
does not tilt the head). Usage: python -m training.build_face_template [--model PATH] [--out PATH]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from training.paths import ICT_MODEL, MODELS

# 2D detectors slide the jaw contour along the silhouette when the head turns; ICT's jaw
# landmarks are fixed vertices, so they never serve as rigid points.
JAW = np.arange(17)
RIGID_MOTION_CM = 0.3  # largest displacement under any single blendshape at full weight


def rigid_landmarks(expression_basis: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Landmarks (outside the jaw) that no blendshape moves by more than RIGID_MOTION_CM."""
    motion = np.linalg.norm(expression_basis[:, landmarks], axis=2).max(axis=0)
    rigid = np.flatnonzero(motion < RIGID_MOTION_CM)
    return np.setdiff1d(rigid, JAW).astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', type=Path, default=ICT_MODEL)
    parser.add_argument('--out', type=Path, default=MODELS / 'face_template.npz')
    args = parser.parse_args()

    model = np.load(args.model)
    landmarks = model['landmarks68']
    rigid = rigid_landmarks(model['expression_basis'], landmarks)
    np.savez_compressed(
        args.out,
        landmarks_3d=model['mean'][landmarks].astype(np.float32),
        rigid_landmarks=rigid,
        source=np.array('ICT-FaceKit generic neutral mesh (MIT, USC ICT), landmarks68 vertices'),
    )
    print(f'wrote {args.out}: 68 landmarks, rigid subset {rigid.tolist()}')


if __name__ == '__main__':
    main()
