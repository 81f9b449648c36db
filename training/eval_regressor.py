"""DeepExp3D against per-image 3DMM fitting, on held-out groups (videos, subjects, people).

1. Held-out accuracy: on the crops of the chosen split (default test: groups never trained
   on), the MSE to the pseudo-ground truth (video / image-set fits) of (a) the CNN and (b) a
   per-image 3DMM fit of the landmarks detected in the same crop. Goal: CNN <= half of (b). On
   the clips, also the CNN's error once each video's constant offset is removed: what is left
   follows the face's motion; the offset is a person's resting face read as expression (or a
   bias of the video fit), which emotion_node's per-track calibration removes at run time.
2. Identity invariance on held-out CK+ subjects: how much the coefficients of different
   people's neutral faces spread (identity leaking into expression), next to how much their
   apex frames spread (real expression differences). Lower neutral/apex is better.
Usage: python -m training.eval_regressor [--model PATH] [--manifest PATH] [--split test] [--limit N]
"""
from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fer3d_ros.core.expression.fitting import fit_image
from fer3d_ros.core.expression.morphable_model import load_landmark_model
from fer3d_ros.core.expression.regressor import default_regressor
from fer3d_ros.core.frontend.alignment import align_face
from fer3d_ros.core.frontend.detection import default_detector
from fer3d_ros.core.frontend.face_template import load_face_template
from fer3d_ros.core.frontend.landmarks import DlibLandmarker
from training.build_dataset import split_of
from training.media import detect_faces
from training.paths import DATA, SHARED


def held_out_accuracy(manifest: Path, split: str, limit: int | None, regressor,
                      sources: tuple[str, ...] = ('clips', 'ckplus', 'faces')) -> None:
    """MSE of the CNN and of a per-image fit to the video / image-set pseudo-ground truth (FER+'s
    single-image fits are no reference for a per-image fit, so FER+ is left out by default)."""
    with open(manifest) as file:
        rows = [row for row in csv.DictReader(file) if row['split'] == split and row['source'] in sources][:limit]
    names = regressor.card.expression_names
    model, detector, landmarker = load_landmark_model(), default_detector(), DlibLandmarker()
    errors = defaultdict(lambda: defaultdict(list))  # source -> method -> squared errors
    signed = defaultdict(list)  # group -> the CNN's signed errors
    for row in tqdm(rows, desc=f'{split} crops'):
        crop = cv2.imread(str(manifest.parent / row['crop']))
        truth = np.array([float(row[name]) for name in names])
        error = regressor.predict([crop])[0] - truth
        signed[(row['source'], row['group'])].append(error)
        errors[row['source']]['cnn'].append(error ** 2)
        faces = detect_faces(crop, detector, landmarker)
        if faces:  # the fit needs landmarks; the CNN never does
            errors[row['source']]['fit'].append((fit_image(faces[0][1], model).expression - truth) ** 2)
            errors[row['source']]['cnn_where_fit'].append(errors[row['source']]['cnn'][-1])
    print(f'held-out ({split}) expression MSE against the video/image-set pseudo-ground truth:')
    for source, by_method in sorted(errors.items()):
        cnn, fit, paired = (np.mean(by_method[k]) for k in ('cnn', 'fit', 'cnn_where_fit'))
        print(f'  {source:7s} {len(by_method["cnn"]):5d} crops: CNN {cnn:.4f}; per-image fit {fit:.4f} '
              f'(CNN on the same {len(by_method["fit"])} crops {paired:.4f}, ratio {paired / fit:.2f}; goal <= 0.5)')
    clips = [np.asarray(group) for (source, _), group in signed.items() if source == 'clips']
    if clips:  # how much of the error is one constant offset per video: a person's resting face read as expression
        varying = np.mean(np.concatenate([(group - group.mean(axis=0)) ** 2 for group in clips]))
        print(f'  clips, each video\'s constant offset removed: CNN {varying:.4f} (the rest of the clip MSE is '
              'that offset)')


def identity_invariance(regressor) -> None:
    model, detector, landmarker = load_landmark_model(), default_detector(), DlibLandmarker()
    by_kind = defaultdict(lambda: defaultdict(list))  # method -> 'neutral'/'apex' -> [(subject, e)]
    for path in tqdm(sorted((SHARED / 'ckplus_128').glob('*/*.png')), desc='CK+'):
        subject = path.name.split('_')[0]
        if split_of(subject) == 'train':
            continue
        faces = detect_faces(cv2.imread(str(path)), detector, landmarker)
        if not faces:
            continue
        kind = 'neutral' if path.parent.name == 'neutral' else 'apex'
        aligned = default_crop(cv2.imread(str(path)), faces[0][1])
        by_kind['cnn'][kind].append((subject, regressor.predict([aligned])[0]))
        by_kind['fit'][kind].append((subject, fit_image(faces[0][1], model).expression))
    for method, kinds in by_kind.items():
        spread = {}
        for kind, items in kinds.items():
            per_subject = defaultdict(list)
            for subject, e in items:
                per_subject[subject].append(e)
            means = np.array([np.mean(v, axis=0) for v in per_subject.values()])
            spread[kind] = float(np.sqrt(means.var(axis=0).mean()))
        print(f'identity invariance ({method}): spread across held-out CK+ subjects, neutral {spread["neutral"]:.4f}, '
              f'apex {spread["apex"]:.4f} (neutral/apex {spread["neutral"] / spread["apex"]:.2f}, lower is better)')


def default_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The crop face_node would publish for these landmarks."""
    return align_face(image, landmarks, load_face_template().frontal_points(224), 224)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=None)
    parser.add_argument('--manifest', type=Path, default=DATA / 'dataset' / 'manifest.csv')
    parser.add_argument('--split', default='test')
    parser.add_argument('--limit', type=int, default=None)
    args = parser.parse_args()
    regressor = default_regressor(args.model, backend='onnxruntime')
    held_out_accuracy(args.manifest, args.split, args.limit, regressor)
    identity_invariance(regressor)


if __name__ == '__main__':
    main()
