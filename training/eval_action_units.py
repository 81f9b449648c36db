"""Action units from the 3D expression, against CK+'s certified FACS codes (posed faces only).

Images: the apex frame of each of CK+'s 327 FACS-coded sequences (../shared/data/ckplus_facs: AU
occurrence at the apex) and the 593 neutral first frames (no AU), through the run-time path
(training/emotion_data.py: upscale-and-pad, RetinaFace, dlib, registration, DeepExp3D). For every AU
with at least 20 positives, 10-fold subject-wise cross-validation (no subject in two folds):
- `intensity`: the AU's intensity from its blendshapes (fer3d_ros.core.expression.action_units), thresholded
  where F1 is highest on the training folds;
- `learned`: one logistic regression per AU on all the coefficients (balanced classes), its
  regularisation C and probability threshold chosen where F1 is highest on out-of-fold
  probabilities of the training folds (5 inner subject-wise folds: in-sample probabilities are
  overconfident);
each on raw coefficients and on calibrated ones (each image the last frame of a simulated track of
its subject, as training/eval_calibration.py does; images without a calibration score 0). Printed:
AUC and F1 per AU and their means; the PNG shows them. The run-time presence models (`learned` on
raw coefficients, refitted on all images, threshold from 10-fold out-of-fold probabilities) of the
AUs that fer3d_ros publishes are written to models/action_units.json with the figures, and the
same fitted on calibrated coefficients (its `calibrated_action_units` section: presence relative to
the person once their neutral is known). Also printed: the false presence rate of every AU on the
neutral frames, raw and per person (each calibrated from its subject's other neutral frames, as a
person met before), out-of-fold.

    python -m training.eval_action_units [--model M.onnx] [--out models/action_units.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict

from fer3d_ros.core.expression.action_units import (
    CALIBRATED_SECTION,
    MODEL_FILE,
    ActionUnitReader,
    PresenceModel,
)
from fer3d_ros.core.expression.regressor import default_regressor
from training.emotion_data import LabelledImage, cached_features, calibrated_features, first_subjects
from training.paths import DATA, MODELS, OUT, SHARED

MIN_POSITIVES = 20


def ckplus_facs_images() -> tuple[list[LabelledImage], np.ndarray, list[int]]:
    """Apex images with their AU codes, then the neutral first frames (no AU): (images, codes, AU numbers)."""
    with open(SHARED / 'ckplus_facs' / 'ckplus_facs.csv', newline='') as file:
        rows = list(csv.DictReader(file))
    numbers = [int(key[2:]) for key in rows[0] if key.startswith('AU')]
    codes = {row['sequence']: [int(row[f'AU{n}']) for n in numbers] for row in rows}
    images, labels = [], []
    for path in sorted((SHARED / 'ckplus_128').glob('*/*.png')):
        sequence = '_'.join(path.name.split('_')[:2])
        if path.parent.name == 'neutral':
            images.append(LabelledImage(path, 'neutral', sequence.split('_')[0]))
            labels.append([0] * len(numbers))
        elif sequence in codes:
            images.append(LabelledImage(path, 'apex', sequence.split('_')[0]))
            labels.append(codes[sequence])
    return images, np.array(labels, bool), numbers


def best_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """The threshold among the scores that maximises F1."""
    candidates = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, 201)))
    f1 = [f1_score(positive, scores >= t, zero_division=0) for t in candidates]
    return float(candidates[int(np.argmax(f1))])


def cross_validated(scores_of, positive: np.ndarray, groups: np.ndarray,
                    folds: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold scores and presence decisions; `scores_of(train, test)` -> (scores of the training
    images to choose the threshold on, test scores)."""
    scores, decided = np.zeros(len(positive)), np.zeros(len(positive), bool)
    for train, test in GroupKFold(folds).split(positive, positive, groups):
        train_scores, test_scores = scores_of(train, test)
        scores[test] = test_scores
        decided[test] = test_scores >= best_threshold(train_scores, positive[train])
    return scores, decided


REGULARISATION = (1.0, 3.0, 10.0, 30.0)  # logistic C candidates, chosen by inner cross-validation


def fit_presence(x: np.ndarray, positive: np.ndarray, groups: np.ndarray,
                 folds: int) -> tuple[LogisticRegression, float]:
    """One AU's logistic regression and probability threshold, C and threshold where F1 is highest on
    the out-of-fold probabilities of `folds` subject-wise folds; the model refitted on all of x."""
    best = (-1.0, None, None)
    for c in REGULARISATION:
        model = LogisticRegression(C=c, class_weight='balanced', max_iter=5000)
        probabilities = cross_val_predict(model, x, positive, groups=groups, cv=GroupKFold(folds),
                                          method='predict_proba')[:, 1]
        threshold = best_threshold(probabilities, positive)
        score = f1_score(positive, probabilities >= threshold)
        if score > best[0]:
            best = (score, model, threshold)
    _, model, threshold = best
    return model.fit(x, positive), threshold


def evaluate(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, reader: ActionUnitReader, numbers: list[int],
             method: str) -> dict[int, dict[str, float]]:
    intensities = reader.intensities(x)
    mapped = {au.number: k for k, au in enumerate(reader.units)}
    results = {}
    for k, number in enumerate(numbers):
        positive = labels[:, k]
        if positive.sum() < MIN_POSITIVES or (method == 'intensity' and number not in mapped):
            continue
        if method == 'intensity':
            scores_of = lambda train, test, c=mapped[number]: (intensities[train, c], intensities[test, c])
            scores, decided = cross_validated(scores_of, positive, groups)
        else:
            scores, decided = np.zeros(len(positive)), np.zeros(len(positive), bool)
            for train, test in GroupKFold(10).split(x, positive, groups):
                model, threshold = fit_presence(x[train], positive[train], groups[train], 5)
                scores[test] = model.predict_proba(x[test])[:, 1]
                decided[test] = scores[test] >= threshold
        results[number] = {'positives': int(positive.sum()), 'auc': float(roc_auc_score(positive, scores)),
                           'f1': float(f1_score(positive, decided)), 'decided': decided}
    return results


def per_person(raw: np.ndarray, calibrated: np.ndarray, labels: np.ndarray, groups: np.ndarray,
               numbers: list[int], chosen: list[int]) -> dict[int, np.ndarray]:
    """Out-of-fold presence as the nodes decide it for people met before: from the calibrated
    presence models where a face has a calibration (NaN rows: none), else from the raw ones."""
    known = np.isfinite(calibrated).all(axis=1)
    decided = {numbers[k]: np.zeros(len(raw), bool) for k in chosen}
    for train, test in GroupKFold(10).split(raw, labels, groups):
        for k in chosen:
            positive = labels[:, k]
            raw_model, raw_threshold = fit_presence(raw[train], positive[train], groups[train], 5)
            rows = train[known[train]]
            model, threshold = fit_presence(calibrated[rows], positive[rows], groups[rows], 5)
            mine = test[known[test]]
            decided[numbers[k]][test] = raw_model.predict_proba(raw[test])[:, 1] >= raw_threshold
            decided[numbers[k]][mine] = model.predict_proba(calibrated[mine])[:, 1] >= threshold
    return decided


def print_false_presence(raw: dict[int, dict], person: dict[int, np.ndarray], labels: np.ndarray,
                         all_numbers: list[int], neutral: np.ndarray, known: np.ndarray) -> None:
    """False presence on the neutral frames (raw, and per person: calibrated from the subject's other
    neutral frames), and F1 over all frames of the per-person decision."""
    print(f'false presence on {neutral.sum()} neutral frames of people met before ({(neutral & known).sum()} with '
          'a calibration from their other neutral frames, the rest read raw), out-of-fold:')
    numbers = list(person)
    print(f'  {"":28s} ' + ' '.join(f'AU{n:<4d}' for n in numbers))
    raw_rates = [raw[n]['decided'][neutral].mean() for n in numbers]
    person_rates = [person[n][neutral].mean() for n in numbers]
    print(f'  {"raw":28s} ' + ' '.join(f'{r:6.3f}' for r in raw_rates) + f'   max {max(raw_rates):.3f}')
    print(f'  {"per person":28s} ' + ' '.join(f'{r:6.3f}' for r in person_rates) + f'   max {max(person_rates):.3f}')
    columns = {n: k for k, n in enumerate(all_numbers)}
    f1 = [f1_score(labels[:, columns[n]], person[n]) for n in numbers]
    print(f'  {"per person F1 (all frames)":28s} ' + ' '.join(f'{v:6.2f}' for v in f1) + f'   mean {np.mean(f1):.3f}')


def published_columns(labels: np.ndarray, reader: ActionUnitReader, numbers: list[int]) -> list[int]:
    """Columns of the published AUs with enough positives: those that get presence models."""
    published = {au.number for au in reader.units}
    return [k for k, number in enumerate(numbers) if number in published and labels[:, k].sum() >= MIN_POSITIVES]


def presence_model(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, numbers: list[int], chosen: list[int],
                   model_id: str) -> PresenceModel:
    """The run-time presence models of the `chosen` AU columns, fitted on all rows of x."""
    fitted = [fit_presence(x, labels[:, k], groups, 10) for k in chosen]
    return PresenceModel(model_id, tuple(numbers[k] for k in chosen), np.array([m.coef_[0] for m, _ in fitted]),
                         np.array([m.intercept_[0] for m, _ in fitted]), np.array([t for _, t in fitted]))


def print_table(name: str, results: dict[int, dict[str, float]]) -> None:
    print(f'  {name:28s} ' + ' '.join(f'AU{n:<4d}' for n in results))
    print(f'  {"  AUC":28s} ' + ' '.join(f'{r["auc"]:6.2f}' for r in results.values()) +
          f'   mean {np.mean([r["auc"] for r in results.values()]):.3f}')
    print(f'  {"  F1":28s} ' + ' '.join(f'{r["f1"]:6.2f}' for r in results.values()) +
          f'   mean {np.mean([r["f1"] for r in results.values()]):.3f}')


def plot(all_results: dict[str, dict[int, dict[str, float]]], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    numbers = sorted({n for results in all_results.values() for n in results})
    width = 0.8 / len(all_results)
    for offset, (name, results) in enumerate(all_results.items()):
        for axis, metric in zip(axes, ('auc', 'f1')):
            values = [results.get(n, {}).get(metric, np.nan) for n in numbers]
            axis.bar(np.arange(len(numbers)) + offset * width, values, width, label=name)
            axis.set_ylabel(metric.upper())
            axis.set_ylim(0, 1)
    axes[1].set_xticks(np.arange(len(numbers)) + 0.4 - width / 2, [f'AU{n}' for n in numbers])
    axes[0].legend(fontsize=8)
    axes[0].set_title('CK+ apex frames vs FACS codes (posed), 10-fold subject-wise')
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', help='DeepExp3D ONNX model (default: the shipped one)')
    parser.add_argument('--out', type=Path, default=MODELS / MODEL_FILE)
    parser.add_argument('--ckplus-subjects', type=int, help='only the first N CK+ subjects (a quick run)')
    parser.add_argument('--cache', type=Path, default=DATA, help='folder for the features computed once per model')
    args = parser.parse_args()
    regressor = default_regressor(args.model, backend='onnxruntime')
    images, labels, numbers = ckplus_facs_images()
    kept = {image.path for image in first_subjects(images, args.ckplus_subjects)}
    labels = labels[[image.path in kept for image in images]]
    images = [image for image in images if image.path in kept]
    suffix = f'-{args.ckplus_subjects}-subjects' if args.ckplus_subjects else ''
    features = cached_features(images, regressor, args.cache / 'emotion_features' /
                               f'ckplus_facs-{regressor.card.version}{suffix}.npz', 'CK+ apex and neutral frames')
    neutral = np.array([image.label == 'neutral' for image in images])
    known = calibrated_features(features, neutral=neutral)  # NaN rows: no calibration
    calibrated = np.nan_to_num(known, nan=0.0)
    known = np.isfinite(known).all(axis=1)
    groups = np.array([image.group for image in images])
    reader = ActionUnitReader(regressor.card.expression_names)
    print(f'{regressor.card.model_id}: {(~neutral).sum()} apex frames, {neutral.sum()} neutral frames, '
          f'{(~features.found).sum()} without a face (scored 0); AUs with >= {MIN_POSITIVES} positives')
    all_results = {}
    raw = np.where(features.found[:, None], features.cnn, 0.0)
    for kind, x in (('raw', raw), ('calibrated', calibrated)):
        for method in ('intensity', 'learned'):
            all_results[f'{method}, {kind}'] = evaluate(x, labels, groups, reader, numbers, method)
            print_table(f'{method}, {kind}', all_results[f'{method}, {kind}'])
    published = {au.number: au.name for au in reader.units}
    shipped = all_results['learned, raw']
    print(f'published AUs ({", ".join(str(n) for n in shipped if n in published)}), learned on raw coefficients: '
          f'mean F1 {np.mean([r["f1"] for n, r in shipped.items() if n in published]):.3f}, mean AUC '
          f'{np.mean([r["auc"] for n, r in shipped.items() if n in published]):.3f}')
    chosen = published_columns(labels, reader, numbers)
    with_calibration = np.where(known[:, None], calibrated, np.nan)
    print_false_presence(shipped, per_person(raw, with_calibration, labels, groups, numbers, chosen), labels,
                         numbers, neutral, known)
    plot(all_results, OUT / 'action_units' / 'ckplus_action_units.png')
    print(f'figure: {OUT / "action_units" / "ckplus_action_units.png"}')
    presence = presence_model(raw, labels, groups, numbers, chosen, regressor.card.model_id)
    card = presence.to_card()
    for number in presence.numbers:
        card['action_units'][str(number)].update(
            name=published[number], positives=shipped[number]['positives'],
            **{f'{key.replace(", ", "_")}_{metric}': round(values[number][metric], 4)
               for key, values in all_results.items() for metric in ('auc', 'f1') if number in values})
    card['evaluated_on'] = ('CK+ apex frames vs certified FACS codes + neutral first frames, 10-fold subject-wise '
                            '(posed faces only): python -m training.eval_action_units')
    card[CALIBRATED_SECTION] = presence_model(calibrated[known], labels[known], groups[known], numbers, chosen,
                                              regressor.card.model_id).to_card()
    card[CALIBRATED_SECTION]['fitted_on'] = ('the same frames with a calibration (each calibrated from its '
                                             "subject's other neutral frames); read once a face's calibration "
                                             'is confident')
    text = json.dumps(card, indent=1)  # with each AU's weights on one line: readable and diffable
    args.out.write_text(re.sub(r'"weights": \[\s*([^\]]*?)\s*\]',
                               lambda m: '"weights": [' + ' '.join(m.group(1).split()) + ']', text) + '\n')
    print(f'presence models of {len(presence.numbers)} AUs written to {args.out}')


if __name__ == '__main__':
    main()
