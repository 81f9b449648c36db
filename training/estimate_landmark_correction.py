"""Estimate the landmark-convention correction and write models/ict_landmark_model.npz with it.

dlib's 68 points do not sit exactly where ICT-FaceKit's 68 landmark vertices are (DESIGN 5:
offsets up to 0.7 cm at the jaw, inner lips and inner brows). Without a correction, fits turn
that systematic offset into identity and expression (neutral faces get smiles and puffed
cheeks). The correction is the median 3D residual per landmark of identity-only fits to
neutral, near-frontal faces, iterated a few times. The faces come from the 'neutral' images of
../shared/data/facial_expressions (LFW and IMFDB people: none of them in CK+ or the clips that
the evaluations use).
Usage: python -m training.estimate_landmark_correction [--images N] [--rounds R]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fer3d_ros.core.expression.fitting import FitSettings, fit_image
from fer3d_ros.core.expression.morphable_model import LandmarkModel, MorphableModel, save_landmark_model
from fer3d_ros.core.frontend.detection import default_detector
from fer3d_ros.core.frontend.landmarks import DlibLandmarker
from training.media import detect_faces
from training.paths import ICT_MODEL, MODELS, SHARED

FACES = SHARED / 'facial_expressions'
MAX_ANGLE = 0.25  # radians of yaw and pitch: near-frontal only


def neutral_landmarks(count: int) -> list[np.ndarray]:
    """Landmarks of the first `count` neutral-labelled images with one detected face."""
    detector, landmarker = default_detector(), DlibLandmarker()
    with open(FACES / 'labels.csv') as file:
        names = [row['image'] for row in csv.DictReader(file) if row['emotion'] == 'neutral']
    found = []
    for name in tqdm(names, desc='landmarks of neutral faces'):
        faces = detect_faces(cv2.imread(str(FACES / 'images' / name)), detector, landmarker)
        if len(faces) == 1:
            found.append(faces[0][1])
        if len(found) == count:
            break
    return found


def residuals(landmarks: list[np.ndarray], model: LandmarkModel) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the 3D residual (68, 3) of an identity-only fit (model cm), and the fit error (px)."""
    settings = FitSettings(fit_expression=False)
    result, errors = [], []
    for points in landmarks:
        fit = fit_image(points, model, settings)
        _, pitch, yaw = fit.camera.euler()
        if abs(pitch) > MAX_ANGLE or abs(yaw) > MAX_ANGLE:
            continue
        residual = (points - fit.camera.project(model.landmarks(fit.identity))) / fit.camera.scale
        result.append(residual @ fit.camera.rotation[:2])  # back into model axes (in the image plane)
        errors.append(fit.reprojection_px)
    return np.array(result), np.array(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=600)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--out', type=Path, default=MODELS / 'ict_landmark_model.npz')
    args = parser.parse_args()
    base = MorphableModel.load(ICT_MODEL).landmark_model()
    landmarks = neutral_landmarks(args.images)
    correction = np.zeros((68, 3))
    for round_index in range(args.rounds + 1):
        model = LandmarkModel(base.mean + correction, base.identity, base.expression, base.expression_names)
        offsets, errors = residuals(landmarks, model)
        print(f'round {round_index}: {len(offsets)} near-frontal neutral faces, identity-only fit error '
              f'mean {errors.mean():.2f} px, largest landmark offset '
              f'{np.linalg.norm(np.median(offsets, axis=0), axis=1).max():.2f} cm')
        if round_index < args.rounds:
            correction += np.median(offsets, axis=0)
    worst = np.argsort(-np.linalg.norm(correction, axis=1))[:6]
    print('largest corrections (landmark: cm): '
          + ', '.join(f'{k}: {np.linalg.norm(correction[k]):.2f}' for k in worst))
    save_landmark_model(base, args.out, correction)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
