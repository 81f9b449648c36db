"""The in-the-wild table of a DeepExp3D model and its emotion classifiers, with `fer` and `facex`
on the same images in the same run.

1. FER+ Test (majority label, 7 classes; the images, never used to train or select, go through the
   run-time path: upscale-and-pad, RetinaFace, dlib, registration, DeepExp3D, classifier): accuracy
   and balanced accuracy, images without a face counted wrong; the baselines on our face boxes.
2. CK+, 7 classes: the raw classifier (10-fold subject-wise CV when it was trained with CK+, its
   plain accuracy when it never saw CK+) and the calibrated path (ECOC SVMs on neutral-relative
   coefficients, 10-fold subject-wise CV, as training/train_emotion.py --features calibrated).
3. Geometry: MSE to the video pseudo-ground truth on the held-out clips (and the other held-out
   groups), identity invariance on held-out CK+ subjects (training/eval_regressor.py), and whether
   CK+ happy apexes smile and surprise apexes open the jaw against their subjects' neutral frames.
4. Cost per face: DeepExp3D with ONNX Runtime (1 thread, batch 1), next to fer and facex.
Confusion matrices go to out/emotion/confusion_<set>.png.

    python -m training.eval_in_the_wild --model models/deepexp3d_mnv2_96.onnx --classifier models/emotion_head.npz
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import cv2
import numpy as np

from fer3d_ros.core.affect.emotion import EMOTIONS, EmotionClassifier, default_classifier
from fer3d_ros.core.expression.regressor import default_regressor
from training.baselines import available_baselines
from training.emotion_data import calibrated_features, load_features
from training.emotion_svm import SearchSettings, cross_validate
from training.eval_regressor import held_out_accuracy, identity_invariance
from training.paths import DATA
from training.select_emotion_classifier import Recipe, ckplus_cv, ferplus_coefficients
from training.train_emotion import NO_FACE, compare, our_predictions, summarise


def ckplus_raw(classifier: EmotionClassifier, regressor, manifest: Path, folds: int) -> np.ndarray:
    """CK+ predictions of the raw classifier: out-of-fold (refitted by the recipe in its model id)
    when it was fitted with CK+, else its own."""
    data = load_features('ckplus', regressor)
    recipe = Recipe.from_model_id(classifier.model.model_id)
    if recipe is None:
        return our_predictions(classifier, data, 'cnn')
    names = tuple(regressor.card.expression_names)
    extra = recipe.training_rows(*ferplus_coefficients(regressor, manifest, 'train'))
    predicted = np.full(len(data.images), NO_FACE)
    predicted[data.found] = ckplus_cv(lambda x, y: recipe.fit(x, y, names, 'cv'), data.cnn[data.found],
                                      data.labels[data.found], data.groups[data.found], *extra, folds,
                                      repeat=recipe.ck_repeat)
    return predicted


def ckplus_calibrated(regressor, folds: int) -> np.ndarray:
    data = load_features('ckplus', regressor)
    x = calibrated_features(data)
    usable = data.found & np.isfinite(x).all(axis=1)
    probabilities, _ = cross_validate(x[usable], data.labels[usable], data.groups[usable],
                                      tuple(regressor.card.expression_names), folds, SearchSettings())
    predicted = np.full(len(data.images), NO_FACE)
    predicted[usable] = probabilities.argmax(axis=1)
    return predicted


def expression_contrast(regressor) -> None:
    """Do CK+ happy apexes still smile and surprise apexes open the jaw, against the same subjects'
    neutral frames? (The coefficients must stay a 3D expression, not become emotion logits.)"""
    data = load_features('ckplus', regressor)
    names = list(regressor.card.expression_names)
    for emotion, shapes in (('happy', ('mouthSmile_L', 'mouthSmile_R')), ('surprise', ('jawOpen', 'browInnerUp_L'))):
        apex = data.found & (data.labels == EMOTIONS.index(emotion))
        neutral = data.found & (data.labels == EMOTIONS.index('neutral')) & np.isin(data.groups, data.groups[apex])
        mean = lambda rows, name: data.cnn[rows, names.index(name)].mean()
        print(f'  CK+ {emotion} apex vs the same subjects\' neutral (mean): ' +
              ', '.join(f'{name} {mean(apex, name):.2f} vs {mean(neutral, name):.2f}' for name in shapes))


def ms_per_face(predict, repeats: int = 200) -> tuple[float, float]:
    predict()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3), float(np.percentile(times, 95) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', help='DeepExp3D ONNX model (default: the shipped one)')
    parser.add_argument('--classifier', help='raw-coefficient emotion classifier (default: the shipped one)')
    parser.add_argument('--manifest', type=Path, default=DATA / 'dataset' / 'manifest.csv')
    parser.add_argument('--folds', type=int, default=10)
    args = parser.parse_args()
    regressor = default_regressor(args.model, backend='onnxruntime', threads=1)
    classifier = default_classifier(args.classifier)
    classifier.check_names(regressor.card.expression_names)
    baselines = available_baselines()
    ours = f'fer3d ({regressor.card.model_id} + {classifier.model.model_id})'
    print(f'== FER+ Test through the run-time path: {ours}')
    ferplus = load_features('ferplus-test', regressor)
    compare('ferplus-test', {ours: our_predictions(classifier, ferplus, 'cnn')}, ferplus, baselines)

    print('== CK+ (7 classes)')
    ckplus = load_features('ckplus', regressor)
    for name, predicted in (('raw', ckplus_raw(classifier, regressor, args.manifest, args.folds)),
                            ('calibrated (ECOC, CV)', ckplus_calibrated(regressor, args.folds))):
        result = summarise(f'{name}', ckplus.labels, predicted)
        print(f'  {name:22s} accuracy {result["accuracy_all"]:.4f} (no face or no calibration = error), '
              f'balanced {result["balanced"]:.4f}; recall ' +
              ' '.join(f'{label[:4]} {value:.2f}' for label, value in zip(EMOTIONS, result['recall'])))

    print('== Geometry')
    held_out_accuracy(args.manifest, 'test', None, regressor, sources=('clips', 'ckplus', 'faces'))
    identity_invariance(regressor)
    expression_contrast(regressor)

    print('== Cost per face (one face, median / p95 ms, 1 thread)')
    crop = clip_crop(args.manifest)
    median, p95 = ms_per_face(lambda: regressor.predict([crop]))
    coefficients = regressor.predict([crop])
    emotion, _ = ms_per_face(lambda: classifier.predict_proba(coefficients))
    print(f'  DeepExp3D {regressor.card.model_id}: {median:.2f} / {p95:.2f} ms, + emotion {emotion:.3f} ms')
    box = np.array([40.0, 40.0, 180.0, 180.0])
    for baseline in baselines:
        median, p95 = ms_per_face(lambda: baseline.predict(crop, box))
        print(f'  {baseline.name}: {median:.2f} / {p95:.2f} ms')


def clip_crop(manifest: Path) -> np.ndarray:
    """One registered 224 crop of a real face (the data set's first clip crop)."""
    with open(manifest, newline='') as file:
        row = next(row for row in csv.DictReader(file) if row['source'] == 'clips')
    return cv2.imread(str(manifest.parent / row['crop']))


if __name__ == '__main__':
    main()
