"""Build models/ict_motion_model.npz: ICT-FaceKit at an evenly spread subset of its face vertices.

Dense 3D facial motion (fer3d_ros/core/expression/motion.py) needs the model's shape at many points of the
face, not only at the 68 landmarks; the full face area (9,409 vertices, 9.5 MB) is far more than a
robot needs to see how a face moves. Farthest-point sampling on the mean face keeps VERTICES of them
about evenly spread (every ~11 mm), with their identity and expression modes, in camera axes (x right,
y down, z away) and centimetres like the landmark model. Usage: python -m training.build_motion_model
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fer3d_ros.core.expression.morphable_model import MorphableModel, save_landmark_model
from training.paths import ICT_MODEL, MODELS

VERTICES = 500


def farthest_points(points: np.ndarray, count: int, start: int = 0) -> np.ndarray:
    """Indices of `count` points, each the farthest from those already chosen."""
    chosen = [start]
    distance = np.linalg.norm(points - points[start], axis=1)
    for _ in range(count - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.sort(np.array(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', type=Path, default=ICT_MODEL)
    parser.add_argument('--vertices', type=int, default=VERTICES)
    parser.add_argument('--out', type=Path, default=MODELS / 'ict_motion_model.npz')
    args = parser.parse_args()
    model = MorphableModel.load(args.model)
    vertices = farthest_points(model.mean.astype(np.float64), args.vertices,
                               start=int(model.landmark_vertices[30]))  # from the nose tip
    save_landmark_model(model.sub_model(vertices), args.out, extra={'vertices': vertices.astype(np.int32)})
    spacing = np.sort(np.linalg.norm(model.mean[vertices][:, None] - model.mean[vertices][None], axis=2), axis=1)[:, 1]
    print(f'{args.out}: {len(vertices)} of {len(model.mean)} vertices, median spacing '
          f'{10 * np.median(spacing):.1f} mm, {args.out.stat().st_size / 1e6:.1f} MB')


if __name__ == '__main__':
    main()
