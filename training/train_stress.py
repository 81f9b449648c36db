"""Train a windowed stress classifier on your own labelled recordings, subject-wise.

Input: a CSV with one row per frame and face: `subject`, optional `recording` (default: the
subject), `time` (seconds), `label` (1/0 or stressed/not_stressed), one column per expression
coefficient (the names in ExpressionArray.names), and optional `roll`, `pitch`, `yaw` (radians;
missing = no head-motion features). Each recording is cut into windows (--window, --hop) whose
features are those of the run-time `stress_node` (fer3d_ros/core/affect/stress.py); a window takes its
frames' majority label. The classifier is a logistic regression on standardised features (C by a
group-wise grid search inside each training fold), evaluated with GroupKFold by subject: no
subject is in both the training and the test side of a fold. The literature prior is scored on
the same windows for comparison. The final model (all subjects) is written as JSON for stress_node.
Usage: python -m training.train_stress FRAMES.csv [--out stress_model.json] [--window 10] [--hop 1]
       [--features all|prior] [--folds 5]
"""
from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fer3d_ros.core.affect.stress import (
    PRIOR_FEATURES,
    StressModel,
    default_stress_model,
    sliding_windows,
    window_features,
)

RESERVED = ('subject', 'recording', 'time', 'label', 'roll', 'pitch', 'yaw', 'id')
POSITIVE = {'1', 'stressed', 'true', 'yes'}
NEGATIVE = {'0', 'not_stressed', 'false', 'no'}


def read_recordings(path: Path) -> tuple[tuple[str, ...], dict[tuple[str, str], dict[str, np.ndarray]]]:
    """Expression names and, per (subject, recording), time-sorted arrays."""
    with open(path, newline='') as file:
        reader = csv.DictReader(file)
        columns = reader.fieldnames or []
        missing = [c for c in ('subject', 'time', 'label') if c not in columns]
        names = tuple(c for c in columns if c not in RESERVED)
        if missing or not names:
            raise ValueError(f'{path}: needs columns subject, time, label and expression coefficients; '
                             f'missing {missing or "coefficient columns"}')
        rows = defaultdict(list)
        for line, row in enumerate(reader, start=2):
            label = row['label'].strip().lower()
            if label not in POSITIVE | NEGATIVE:
                raise ValueError(f'{path}:{line}: label {row["label"]!r} is not 1/0 or stressed/not_stressed')
            angles = [float(row[a]) if row.get(a) not in (None, '') else np.nan for a in ('roll', 'pitch', 'yaw')]
            rows[(row['subject'], row.get('recording') or row['subject'])].append(
                (float(row['time']), label in POSITIVE, [float(row[n]) for n in names], angles))
    recordings = {}
    for key, items in rows.items():
        items.sort(key=lambda item: item[0])
        recordings[key] = {'time': np.array([i[0] for i in items]), 'label': np.array([i[1] for i in items]),
                           'coefficients': np.array([i[2] for i in items]), 'angles': np.array([i[3] for i in items])}
    return names, recordings


def windows(names, recordings, window: float, hop: float, min_fill: float = 0.8):
    """(feature dicts, labels, subjects) of every full window."""
    features, labels, subjects = [], [], []
    for (subject, _), data in recordings.items():
        times = data['time']
        for inside in sliding_windows(times, window, hop, min_fill):
            features.append(window_features(times[inside], data['coefficients'][inside], data['angles'][inside], names))
            labels.append(data['label'][inside].mean() >= 0.5)
            subjects.append(subject)
    return features, np.array(labels), np.array(subjects)


def classifier(groups: np.ndarray, folds: int) -> GridSearchCV:
    pipeline = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=2000))
    return GridSearchCV(pipeline, {'logisticregression__C': np.logspace(-3, 2, 11)},
                        cv=GroupKFold(n_splits=min(folds, len(np.unique(groups)))), scoring='roc_auc')


def to_model(search: GridSearchCV, feature_names: list[str], model_id: str, notes: str) -> StressModel:
    _, scaler, regression = search.best_estimator_.steps
    return StressModel(model_id, tuple(feature_names), scaler[1].mean_.copy(), scaler[1].scale_.copy(),
                       regression[1].coef_[0].copy(), float(regression[1].intercept_[0]), notes)


def evaluate(x, y, groups, folds: int) -> dict[str, float]:
    """Subject-wise outer folds; the grid search sees only each fold's training subjects."""
    probabilities = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=min(folds, len(np.unique(groups)))).split(x, y, groups):
        search = classifier(groups[train], folds).fit(x[train], y[train], groups=groups[train])
        probabilities[test] = search.predict_proba(x[test])[:, 1]
    return {'accuracy': float(np.mean((probabilities >= 0.5) == y)),
            'balanced_accuracy': float(balanced_accuracy_score(y, probabilities >= 0.5)),
            'auc': float(roc_auc_score(y, probabilities)) if len(np.unique(y)) == 2 else np.nan}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('frames', type=Path, help='per-frame CSV (see the module help)')
    parser.add_argument('--out', type=Path, default=Path('stress_model.json'))
    parser.add_argument('--window', type=float, default=10.0)
    parser.add_argument('--hop', type=float, default=1.0)
    parser.add_argument('--features', choices=('all', 'prior'), default='all')
    parser.add_argument('--folds', type=int, default=5)
    args = parser.parse_args(argv)
    names, recordings = read_recordings(args.frames)
    feature_dicts, y, groups = windows(names, recordings, args.window, args.hop)
    if len(np.unique(y)) < 2 or len(np.unique(groups)) < 2:
        raise SystemExit(f'{args.frames}: need both labels and at least two subjects in full windows '
                         f'(got {len(y)} windows, {len(np.unique(groups))} subjects, labels {sorted(set(y.tolist()))})')
    feature_names = list(PRIOR_FEATURES) if args.features == 'prior' else sorted(feature_dicts[0])
    x = np.array([[f[name] for name in feature_names] for f in feature_dicts])
    print(f'{len(y)} windows ({y.mean():.0%} stressed) from {len(recordings)} recordings of '
          f'{len(np.unique(groups))} subjects; {len(feature_names)} features')
    scores = evaluate(x, y, groups, args.folds)
    prior = default_stress_model()
    prior_p = np.array([prior.probability(f) for f in feature_dicts])
    scores['prior_auc'] = float(roc_auc_score(y, prior_p))
    print(f'subject-wise {min(args.folds, len(np.unique(groups)))}-fold CV: accuracy {scores["accuracy"]:.3f}, '
          f'balanced {scores["balanced_accuracy"]:.3f}, ROC AUC {scores["auc"]:.3f} '
          f'(literature prior on the same windows: ROC AUC {scores["prior_auc"]:.3f})')
    search = classifier(groups, args.folds).fit(x, y, groups=groups)
    model = to_model(search, feature_names, f'stress-logreg-{args.frames.stem}',
                     f'trained on {args.frames.name}: {len(y)} windows, {len(np.unique(groups))} subjects, '
                     f'window {args.window:g} s; CV AUC {scores["auc"]:.3f}')
    model.save(args.out)
    print(f'saved {args.out} (C = {search.best_params_["logisticregression__C"]:.3g}); use it with '
          f'stress_node model:={args.out}')
    return scores


if __name__ == '__main__':
    main()
