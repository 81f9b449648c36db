"""Metric head pose against ground truth: synthetic faces of random ICT-FaceKit identities and
expressions, seen by a real camera's intrinsics, solved three ways.

Each synthetic person (identity drawn from the model's prior, a few random blendshapes at 0.2-0.8)
is put at 0.4-3 m with |yaw| up to 60 deg (pitch +-15, roll +-10), anywhere its face stays inside a
640x480 image from a RealSense D435-like colour camera (fx = fy = 615 px); its 68 landmarks are
projected with perspective and given Gaussian noise (0, 1, 2 px). Solved with:
- `mean`: fer3d_ros.core.frontend.metric_pose on the mean face's rigid landmarks (before calibration);
- `calibrated`: the same on the person's identity as calibration estimates it (TrackIdentity over 30
  frames of the person turning, at 1 px noise), rigid landmarks;
- `hri_face_detect`: its fixed "average adult" model (nose, eyes 131 mm apart, stomion; its two ear
  points have no 68-landmark counterpart and are left out), EPnP from a 1 m guess, as
  hri_face_detect/face_pose_estimation.py does.
Printed: median position error (% of the distance, at the sellion) and rotation error (deg) by
distance and |yaw| bin, at 1 px noise; the same over all cases at 0 and 2 px; ms per solve.
Usage: python -m training.eval_head_pose [--people 40] [--seed 0]
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from fer3d_ros.core.expression.calibration import CalibrationSettings, TrackIdentity
from fer3d_ros.core.expression.morphable_model import load_landmark_model
from fer3d_ros.core.frontend.face_template import load_face_template
from fer3d_ros.core.frontend.metric_pose import FACE_AXES, SELLION, Intrinsics, solve_head_pose
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera, rotation_from_euler

WIDTH, HEIGHT = 640, 480
INTRINSICS = Intrinsics(np.array([[615.0, 0.0, 319.5], [0.0, 615.0, 239.5], [0.0, 0.0, 1.0]]), np.zeros(5))
DISTANCES = (0.4, 0.8, 1.5, 3.0)  # metres
YAW_BINS = (0.0, 15.0, 30.0, 45.0, 60.0)
NOISES = (0.0, 1.0, 2.0)
# hri_face_detect's model (mm; x forward, y the face's left, z up) and the 68-landmark points for it.
HRI_MODEL = np.array([(21.0, 0.0, -48.0), (-20.0, -65.5, -5.0), (-20.0, 65.5, -5.0), (10.0, 0.0, -75.0)])


def hri_points(landmarks: np.ndarray) -> np.ndarray:
    """Nose tip, the face's right eye (image left), its left eye, the stomion."""
    return np.stack([landmarks[30], landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0),
                     landmarks[[62, 66]].mean(axis=0)])


def hri_face_detect_pose(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(face rotation in the camera frame, position in metres) as hri_face_detect solves them."""
    _, rvec, tvec = cv2.solvePnP(HRI_MODEL, hri_points(landmarks), INTRINSICS.matrix, None,
                                 tvec=np.array([0.0, 0.0, 1000.0]), useExtrinsicGuess=True, flags=cv2.SOLVEPNP_EPNP)
    return cv2.Rodrigues(rvec)[0], tvec.ravel() / 1000.0


def random_expression(model, rng: np.random.Generator) -> np.ndarray:
    expression = np.zeros(model.n_expression)
    expression[rng.choice(model.observable_expressions(), 3, replace=False)] = rng.uniform(0.2, 0.8, 3)
    return expression


def calibrated_identity(model, identity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The identity calibration arrives at from 30 frames of this person turning (1 px noise)."""
    track = TrackIdentity(model, CalibrationSettings())
    for k in range(30):
        camera = ScaledOrthographicCamera(10.0, rotation_from_euler(0.1 * np.sin(k), 0.2 * np.sin(k / 3),
                                                                    0.5 * np.sin(k / 5)), np.array([320.0, 240.0]))
        points = camera.project(model.landmarks(identity, random_expression(model, rng) * (k % 3 == 0)))
        track.update(points + rng.normal(0.0, 1.0, points.shape))
    return track.identity


def place(rng: np.random.Generator, distance: float, yaw_bin: tuple[float, float], points_cm: np.ndarray):
    """A pose (rotation, translation in m) that puts the face at `distance` inside the image, or None."""
    yaw = np.radians(rng.uniform(*yaw_bin)) * rng.choice((-1, 1))
    rotation = rotation_from_euler(np.radians(rng.uniform(-10, 10)), np.radians(rng.uniform(-15, 15)), yaw)
    for _ in range(20):
        pixel = rng.uniform((0.2 * WIDTH, 0.2 * HEIGHT), (0.8 * WIDTH, 0.8 * HEIGHT))
        ray = np.linalg.inv(INTRINSICS.matrix) @ np.r_[pixel, 1.0]
        sellion = ray / np.linalg.norm(ray) * distance
        translation = sellion - rotation @ points_cm[SELLION] * 0.01
        projected = project(points_cm, rotation, translation)
        if (projected >= 0).all() and (projected[:, 0] < WIDTH).all() and (projected[:, 1] < HEIGHT).all():
            return rotation, translation
    return None


def project(points_cm: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    camera = points_cm * 0.01 @ rotation.T + translation
    pixels = camera @ INTRINSICS.matrix.T
    return pixels[:, :2] / pixels[:, 2:]


def rotation_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    cos = (np.trace(estimate.T @ truth) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def evaluate(people: int, seed: int) -> tuple[list[dict], float]:
    rng = np.random.default_rng(seed)
    model, template = load_landmark_model(), load_face_template()
    rigid, rows, seconds, solves = template.rigid_landmarks, [], 0.0, 0
    for _ in range(people):
        identity = rng.standard_normal(model.n_identity)
        known = calibrated_identity(model, identity, rng)
        for distance in DISTANCES:
            for low, high in zip(YAW_BINS[:-1], YAW_BINS[1:]):
                truth_points = model.landmarks(identity, random_expression(model, rng))
                placed = place(rng, distance, (low, high), truth_points)
                if placed is None:
                    continue
                rotation, translation = placed
                true_sellion = rotation @ truth_points[SELLION] * 0.01 + translation
                true_face = rotation @ FACE_AXES
                clean = project(truth_points, rotation, translation)
                for noise in NOISES:
                    landmarks = clean + rng.normal(0.0, noise, clean.shape)
                    row = {'distance': distance, 'yaw': (low, high), 'noise': noise}
                    for name, model_points in (('mean', model.landmarks()), ('calibrated', model.landmarks(known))):
                        start = time.perf_counter()
                        pose = solve_head_pose(landmarks, model_points, INTRINSICS, rigid)
                        seconds, solves = seconds + time.perf_counter() - start, solves + 1
                        row[name] = (100 * np.linalg.norm(pose.sellion - true_sellion) / distance,
                                     rotation_error(pose.face_rotation(), true_face))
                    hri_rotation, hri_position = hri_face_detect_pose(landmarks)
                    row['hri_face_detect'] = (100 * np.linalg.norm(hri_position - true_sellion) / distance,
                                              rotation_error(hri_rotation, true_face))
                    rows.append(row)
    return rows, seconds / max(solves, 1) * 1e3


METHODS = ('calibrated', 'mean', 'hri_face_detect')


def report(rows: list[dict], milliseconds: float) -> None:
    def cell(chosen: list[dict], method: str) -> str:
        position, rotation = np.median([row[method] for row in chosen], axis=0)
        return f'{position:6.1f} % {rotation:5.1f}°'
    print('median position error (% of distance) and rotation error, 1 px landmark noise:')
    print(f'{"distance":>8s} {"|yaw|":>7s} ' + ' '.join(f'{method:>17s}' for method in METHODS))
    for distance in DISTANCES:
        for low, high in zip(YAW_BINS[:-1], YAW_BINS[1:]):
            chosen = [row for row in rows if row['noise'] == 1.0 and row['distance'] == distance
                      and row['yaw'] == (low, high)]
            if chosen:
                cells = ' '.join(f'{cell(chosen, method):>17s}' for method in METHODS)
                print(f'{distance:7.1f}m {low:3.0f}-{high:2.0f}° {cells}')
    for noise in NOISES:
        chosen = [row for row in rows if row['noise'] == noise]
        print(f'all, {noise:g} px noise ({len(chosen)} cases) ' + ' '.join(f'{cell(chosen, m):>17s}' for m in METHODS))
    print(f'cost: {milliseconds:.2f} ms per solve (SQPnP + LM on the rigid landmarks)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--people', type=int, default=40)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    report(*evaluate(args.people, args.seed))


if __name__ == '__main__':
    main()
