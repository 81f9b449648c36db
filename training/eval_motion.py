"""Dense 3D facial motion on synthetic sequences where identity, expressions and poses are known.

Each sequence is a random person (ICT-FaceKit identity ~ N(0, 0.7^2)) whose expression (jaw, smile,
brows, blinks, ...) and head pose (roll/pitch/yaw within +-20 deg, sideways drift, scale 8-12 px/cm:
a face ~150 px wide) change smoothly over SECONDS s at 30 frames/s. Its 68 landmarks are projected
with the scaled-orthographic camera and disturbed by Gaussian noise of sigma px; then they go
through the run-time path: the per-track identity of calibration (TrackIdentity, which also gives
the frame's expression from the landmarks: the stand-in for DeepExp3D, which needs images), the head
pose, and the MotionTracker. The head pose is either the camera that calibration fits to all 68
landmarks with the person's shape (what expression_node uses once a track has a calibration), or the
one face_node fits to the template's rigid landmarks (without calibration). Printed per noise level:
end-point error (EPE) of the motion between consecutive frames, mm, median and p90 over the 500
points of all frames, for the total motion and its rigid and non-rigid parts, next to the size of
the true motion.

    python -m training.eval_motion [--sequences 12] [--noise 0 0.5 1 2]
"""
from __future__ import annotations

import argparse

import numpy as np

from fer3d_ros.core.expression.calibration import CalibrationSettings, TrackIdentity
from fer3d_ros.core.expression.morphable_model import load_landmark_model
from fer3d_ros.core.expression.motion import HeadPose, MotionTracker, load_motion_model
from fer3d_ros.core.frontend.face_template import load_face_template
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera, fit_camera, rotation_from_euler

FPS, SECONDS = 30.0, 4.0
WIDTH, HEIGHT = 640, 480  # of the image the faces move in
MOVING = ('jawOpen', 'mouthSmile_L', 'mouthSmile_R', 'browInnerUp_L', 'browInnerUp_R', 'eyeBlink_L', 'eyeBlink_R',
          'browDown_L', 'browDown_R', 'mouthFrown_L', 'mouthFrown_R', 'mouthPucker')


def sequence(rng: np.random.Generator, n_identity: int, names: tuple[str, ...]) -> tuple:
    """(identity, expressions (T, n_exp), cameras) of one synthetic person moving."""
    t = np.arange(int(FPS * SECONDS)) / FPS
    identity = rng.normal(0.0, 0.7, n_identity)
    expressions = np.zeros((len(t), len(names)))
    for name in MOVING:
        frequency, phase, amplitude = rng.uniform(0.2, 1.0), rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.8)
        expressions[:, names.index(name)] = amplitude * 0.5 * (1 - np.cos(2 * np.pi * frequency * t + phase))
    angles = [np.radians(20) * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6))
              for _ in range(3)]
    scale = rng.uniform(8.0, 12.0) * (1 + 0.05 * np.sin(2 * np.pi * 0.2 * t))
    shift = np.stack([WIDTH / 2 + 40 * np.sin(2 * np.pi * 0.15 * t),
                      HEIGHT / 2 + 20 * np.sin(2 * np.pi * 0.25 * t)], axis=1)
    cameras = [ScaledOrthographicCamera(float(scale[k]), rotation_from_euler(angles[0][k], angles[1][k], angles[2][k]),
                                        shift[k]) for k in range(len(t))]
    return identity, expressions, cameras


def run(noise: float, sequences: int, person_camera: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    landmarks_model, (motion_model, _) = load_landmark_model(), load_motion_model()
    template = load_face_template()
    rigid, rigid_points = template.rigid_landmarks, template.landmarks_3d[template.rigid_landmarks]
    names = landmarks_model.expression_names
    errors = {'total': [], 'rigid': [], 'nonrigid': [], 'true size': [], 'true nonrigid': []}
    for _ in range(sequences):
        identity, expressions, cameras = sequence(rng, landmarks_model.n_identity, names)
        truth, estimate = MotionTracker(motion_model), MotionTracker(motion_model)
        track = TrackIdentity(landmarks_model, CalibrationSettings())
        for k, (expression, camera) in enumerate(zip(expressions, cameras)):
            points = camera.project(landmarks_model.landmarks(identity, expression))
            points = points + rng.normal(0.0, noise, points.shape)
            fitted_expression = track.update(points)
            head = track.camera if person_camera else fit_camera(points[rigid], rigid_points)
            for tracker in (truth, estimate):
                tracker.new_frame(k / FPS)
            true = truth.update('f', identity, expression, HeadPose.seen_by(camera, WIDTH, HEIGHT))
            seen = estimate.update('f', track.identity, fitted_expression, HeadPose.seen_by(head, WIDTH, HEIGHT))
            if true is None or k < FPS:  # the identity needs about a second of frames to settle
                continue
            for part in ('total', 'rigid', 'nonrigid'):
                errors[part].append(np.linalg.norm(getattr(seen, part) - getattr(true, part), axis=1))
            errors['true size'].append(np.linalg.norm(true.total, axis=1))
            errors['true nonrigid'].append(np.linalg.norm(true.nonrigid, axis=1))
    return {part: np.concatenate(values) for part, values in errors.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sequences', type=int, default=12)
    parser.add_argument('--noise', type=float, nargs='+', default=[0.0, 0.5, 1.0, 2.0], help='landmark noise, px')
    args = parser.parse_args()
    print(f'{args.sequences} synthetic people x {SECONDS:g} s at {FPS:g} frames/s (the first second left out: '
          'identity settling); motion between consecutive frames, mm, median / p90 over 500 points x frames')
    print(f'{"pose":>16s} {"noise (px)":>10s} {"true motion":>14s} {"(non-rigid)":>14s} {"EPE total":>14s} '
          f'{"EPE rigid":>14s} {"EPE non-rigid":>14s}')
    for person_camera, label in ((True, "person's camera"), (False, 'template pose')):
        for noise in args.noise:
            result = run(noise, args.sequences, person_camera)
            cells = [f'{np.median(result[k]):6.2f} / {np.percentile(result[k], 90):5.2f}'
                     for k in ('true size', 'true nonrigid', 'total', 'rigid', 'nonrigid')]
            print(f'{label:>16s} {noise:10.1f} ' + ' '.join(f'{cell:>14s}' for cell in cells), flush=True)


if __name__ == '__main__':
    main()
