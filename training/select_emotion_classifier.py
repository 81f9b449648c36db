"""Choose emotion_node's raw-coefficient classifier for a DeepExp3D model, on FER+ Valid and CK+.

Candidates, all on the model's 55 coefficients of the run-time crops:
- `joint`: the MLP head trained with the network (training/train_multitask.py, emotion_head.npz);
  it never saw a CK+ label, so its CK+ figure is a held-out one.
- `mlp`: the same MLP shape (42 observable weights -> 64 -> 7) refitted on frozen coefficients of
  FER+ Train (majority labels) + CK+; `mlp-ck10` the same with each CK+ image counted ten times
  (CK+'s 900 images against FER+'s 27,000), `mlp-balanced` as many times as make CK+ weigh as much
  as FER+ Train; `mlp-ck10-x5`, `mlp-balanced-x5` five such MLPs (seeds 0-4) whose logits are
  averaged, which is one MLP five times as wide, so emotion_node runs it as it runs the others.
- `ecoc`: the paper's ECOC one-vs-all RBF SVMs on a stratified FER+ Train subsample + CK+ (an RBF
  SVM on all 28k images is hours on this CPU), hyper-parameters searched on that training set.
Each refitted candidate's recipe is written into its model id (`Recipe`), so that
training/eval_in_the_wild.py can cross-validate the shipped classifier exactly as it was fitted.
CK+ figures are 10-fold subject-wise cross-validation (FER+ Train always in the training folds);
FER+ Valid is the selection set. FER+ coefficients come from the dataset's registered crops
(data/dataset, packed as training used them), CK+ through the run-time path. The winner (best FER+
Valid accuracy among those within 1 point of the best CK+ accuracy) is saved as --out.
For calibrated faces (emotion_node's second classifier), on CK+ images calibrated as the last
frame of a simulated track of their subject: the chosen head re-centred on the population's
neutral face (median coefficients of FER+ Train's neutral faces), against ECOC SVMs trained on
calibrated CK+ (what training/train_emotion.py --features calibrated does); the better goes to
--calibrated-out.

    python -m training.select_emotion_classifier --model out/multitask/mobilenetv2_96/deepexp3d_mnv2_96.onnx
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neural_network import MLPClassifier

from fer3d_ros.core.affect.emotion import EMOTIONS, EmotionClassifier, HeadModel, load_emotion_model
from fer3d_ros.core.expression.morphable_model import load_landmark_model
from fer3d_ros.core.expression.regressor import ExpressionRegressor, default_regressor
from training.emotion_data import calibrated_features, load_features
from training.emotion_svm import SearchSettings, cross_validate, fit_model
from training.paths import DATA, MODELS
from training.train_multitask import load_rows, packed_crops

ECOC_SUBSAMPLE = 4000
CANDIDATES = ('joint', 'mlp', 'mlp-ck10', 'mlp-balanced', 'mlp-ck10-x5', 'mlp-balanced-x5', 'ecoc')


def ferplus_coefficients(regressor: ExpressionRegressor, manifest: Path, split: str,
                         cache_dir: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients, majority labels) of a FER+ split's registered crops with a clear majority; kept in
    data/emotion_features/ for the next run with the same model file (its card's sha256)."""
    rows = load_rows(manifest, list(regressor.card.expression_names), {}, 0.0)
    keep = np.flatnonzero((rows.source == 'ferplus') & (rows.split == split) & (rows.majority >= 0))
    cache = cache_dir / 'emotion_features' / f'ferplus-{split}-crops-{regressor.card.version}.npz'
    if cache.is_file():
        stored = np.load(cache)
        if np.array_equal(stored['rows'], keep):
            return stored['coefficients'], rows.majority[keep]
    pack = packed_crops(manifest, rows.crops)
    coefficients = np.concatenate([regressor.predict(list(pack[keep[k:k + 256]])) for k in range(0, len(keep), 256)])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, rows=keep, coefficients=coefficients)
    return coefficients, rows.majority[keep]


def fit_mlp(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], model_id: str, seeds: int = 1) -> HeadModel:
    """The head's shape (observable weights -> 64 ReLU -> 7) fitted on frozen coefficients; with
    `seeds` > 1, that many fits (seeds 0, 1, ...) whose logits are averaged: one MLP 64 x seeds wide."""
    observable = load_landmark_model().observable_expressions()
    fits = [MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, max_iter=300, early_stopping=True,
                          random_state=seed).fit(x[:, observable], y) for seed in range(seeds)]
    if any(list(mlp.classes_) != list(range(len(EMOTIONS))) for mlp in fits):
        raise ValueError('every emotion needs training examples')
    w1, b1 = (np.concatenate([mlp.coefs_[0] for mlp in fits], axis=1),
              np.concatenate([mlp.intercepts_[0] for mlp in fits]))
    w2, b2 = (np.concatenate([mlp.coefs_[1] for mlp in fits]) / seeds,
              np.mean([mlp.intercepts_[1] for mlp in fits], axis=0))
    return HeadModel(model_id, EMOTIONS, tuple(names), 'raw', np.asarray(observable), w1, b1, w2, b2)


def fit_ecoc(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], model_id: str, seed: int = 0):
    """ECOC SVMs on all of CK+ given and a stratified subsample of the rest (groups: one per image)."""
    return fit_model(x, y, np.arange(len(y)).astype(str), names, model_id, SearchSettings(trials=12, seed=seed))


@dataclass(frozen=True)
class Recipe:
    """How a raw-coefficient classifier is fitted on FER+ Train + CK+, written into its model id
    (`mlp-ferplus-ckplusx10-<regressor>`, `mlpx5-...`, `ecoc-svm-ferplus-ckplus-...`)."""
    kind: str           # 'mlp' or 'ecoc-svm'
    ck_repeat: int = 1  # times each CK+ image counts against FER+ Train
    seeds: int = 1      # MLPs whose logits are averaged

    ID = re.compile(r'^(?P<kind>mlp|ecoc-svm)(?:x(?P<seeds>\d+))?-ferplus-ckplus(?:x(?P<repeat>\d+))?-')

    def model_id(self, regressor_id: str) -> str:
        seeds = f'x{self.seeds}' if self.seeds > 1 else ''
        repeat = f'x{self.ck_repeat}' if self.ck_repeat > 1 else ''
        return f'{self.kind}{seeds}-ferplus-ckplus{repeat}-{regressor_id}'

    @classmethod
    def from_model_id(cls, model_id: str) -> Recipe | None:
        """The recipe of a classifier this module fitted; None for any other (e.g. a joint head)."""
        match = cls.ID.match(model_id)
        return match and cls(match['kind'], int(match['repeat'] or 1), int(match['seeds'] or 1))

    def training_rows(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The FER+ Train rows it is fitted on: all, or a stratified subsample for the SVMs."""
        keep = subsample(y, ECOC_SUBSAMPLE) if self.kind == 'ecoc-svm' else np.arange(len(y))
        return x[keep], y[keep]

    def fit(self, x: np.ndarray, y: np.ndarray, names: tuple[str, ...], model_id: str):
        if self.kind == 'ecoc-svm':
            return fit_ecoc(x, y, names, model_id)
        return fit_mlp(x, y, names, model_id, self.seeds)


def subsample(y: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Indices of a class-stratified subsample of `count` (all of a class if it is small)."""
    rng = np.random.default_rng(seed)
    share = count / len(y)
    return np.sort(np.concatenate([rng.choice(members, max(1, min(len(members), int(round(share * len(members))))),
                                              replace=False) for k in range(len(EMOTIONS))
                                   if len(members := np.flatnonzero(y == k))]))


def ckplus_cv(fit, ck_x: np.ndarray, ck_y: np.ndarray, ck_groups: np.ndarray, extra_x: np.ndarray,
              extra_y: np.ndarray, folds: int = 10, test_x: np.ndarray | None = None, repeat: int = 1) -> np.ndarray:
    """Out-of-fold CK+ predictions, every fold trained on the other subjects (each image `repeat` times,
    to weigh CK+'s 900 images against FER+'s 27,000) + the extra images; `test_x` (default `ck_x`) are
    the features the held-out subjects are predicted from."""
    test_x = ck_x if test_x is None else test_x
    predicted = np.zeros(len(ck_y), int)
    for train, test in StratifiedGroupKFold(folds, shuffle=True, random_state=0).split(ck_x, ck_y, ck_groups):
        model = fit(*joined(extra_x, extra_y, ck_x[train], ck_y[train], repeat))
        predicted[test] = EmotionClassifier(model).predict_proba(test_x[test]).argmax(axis=1)
    return predicted


def joined(extra_x: np.ndarray, extra_y: np.ndarray, ck_x: np.ndarray, ck_y: np.ndarray,
           repeat: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([extra_x, np.repeat(ck_x, repeat, axis=0)]),
            np.concatenate([extra_y, np.repeat(ck_y, repeat)]))


def balanced(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([np.mean(predicted[y == k] == k) for k in np.unique(y)]))


def choose_raw(candidates: dict, ferplus_train: tuple, valid: tuple, ck: tuple, no_face: int, folds: int,
               names: tuple[str, ...], stem: str) -> tuple:
    """Each candidate (a fixed model, or a `Recipe` cross-validated on CK+ and then fitted on all of
    it) on FER+ Valid and CK+; the best FER+ Valid among those within 1 point of the best CK+.
    Returns (name, model, recipe or None)."""
    (valid_x, valid_y), (ck_x, ck_y, ck_groups) = valid, ck
    results = {}
    for name, candidate in candidates.items():
        if isinstance(candidate, Recipe):
            extra = candidate.training_rows(*ferplus_train)
            ck_predicted = ckplus_cv(lambda x, y: candidate.fit(x, y, names, 'cv'), ck_x, ck_y, ck_groups, *extra,
                                     folds=folds, repeat=candidate.ck_repeat)
            model = candidate.fit(*joined(*extra, ck_x, ck_y, candidate.ck_repeat), names, candidate.model_id(stem))
        else:
            model, ck_predicted = candidate, EmotionClassifier(candidate).predict_proba(ck_x).argmax(axis=1)
        valid_predicted = EmotionClassifier(model).predict_proba(valid_x).argmax(axis=1)
        ck_all = float(np.concatenate([ck_predicted == ck_y, np.zeros(no_face, bool)]).mean())
        results[name] = (model, float((valid_predicted == valid_y).mean()), ck_all)
        print(f'  {name:12s} FER+ Valid {results[name][1]:.4f} (balanced {balanced(valid_y, valid_predicted):.4f}) | '
              f'CK+ {f"{folds}-fold CV" if isinstance(candidate, Recipe) else "held out"} {ck_all:.4f} (balanced '
              f'{balanced(ck_y, ck_predicted):.4f}) | {model.describe()}', flush=True)
    best_ck = max(result[2] for result in results.values())
    chosen = max((name for name in results if results[name][2] >= best_ck - 0.01), key=lambda n: results[n][1])
    recipe = candidates[chosen] if isinstance(candidates[chosen], Recipe) else None
    return chosen, results[chosen][0], recipe


def choose_calibrated(raw, recipe: Recipe | None, ferplus_train: tuple, ckplus, population_neutral: np.ndarray,
                      names: tuple[str, ...], stem: str, folds: int):
    """The calibrated path on CK+ (each image the last frame of a simulated track of its subject):
    the raw head re-centred on the population's neutral face, against ECOC SVMs trained on calibrated
    CK+ (cross-validated the same way). Images without a calibration count wrong. Returns the better."""
    calibrated = calibrated_features(ckplus)
    usable = ckplus.found & np.isfinite(calibrated).all(axis=1)
    x_raw, x_cal, y, groups = ckplus.cnn[usable], calibrated[usable], ckplus.labels[usable], ckplus.groups[usable]
    accuracy = lambda predicted: float((predicted == y).sum() / len(ckplus.labels))
    options = {}
    if isinstance(raw, HeadModel):
        recentred = raw.for_calibrated(population_neutral, f'{raw.model_id}-recentred')
        predicted = EmotionClassifier(recentred).predict_proba(x_cal).argmax(axis=1) if recipe is None else \
            ckplus_cv(lambda a, b: recipe.fit(a, b, names, 'cv').for_calibrated(population_neutral, 'cv'),
                      x_raw, y, groups, *recipe.training_rows(*ferplus_train), folds=folds, test_x=x_cal,
                      repeat=recipe.ck_repeat)
        options['recentred head'] = (recentred, accuracy(predicted))
    probabilities, _ = cross_validate(x_cal, y, groups, names, folds, SearchSettings())
    ecoc = fit_model(x_cal, y, groups, names, f'ecoc-svm-ckplus-calibrated-{stem}', features='calibrated')
    options['ECOC on calibrated CK+'] = (ecoc, accuracy(probabilities.argmax(axis=1)))
    print(f'calibrated path, CK+ ({usable.sum()} of {len(ckplus.labels)} images with a calibration; the rest count '
          'wrong):')
    for name, (model, score) in options.items():
        print(f'  {name:24s} {score:.4f} | {model.describe()}')
    return max(options.values(), key=lambda option: option[1])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', required=True, help='DeepExp3D ONNX model (its .json card beside it)')
    parser.add_argument('--head', help='its joint emotion head (default: emotion_head.npz beside the model)')
    parser.add_argument('--manifest', type=Path, default=DATA / 'dataset' / 'manifest.csv')
    parser.add_argument('--folds', type=int, default=10)
    parser.add_argument('--out', type=Path, default=MODELS / 'emotion_classifier.npz',
                        help='where the chosen raw-coefficient classifier goes (.npz)')
    parser.add_argument('--calibrated-out', type=Path, default=MODELS / 'emotion_classifier_calibrated.npz',
                        help='where the chosen calibrated-coefficient classifier goes (.npz)')
    parser.add_argument('--candidates', nargs='+', choices=CANDIDATES, default=list(CANDIDATES),
                        help='raw-coefficient candidates to compare (ecoc takes ~1 h here)')
    parser.add_argument('--ckplus-subjects', type=int, help='only the first N CK+ subjects (a quick run)')
    parser.add_argument('--cache', type=Path, default=DATA, help='folder for the features computed once per model')
    args = parser.parse_args()
    regressor = default_regressor(args.model, backend='onnxruntime')
    names, stem = tuple(regressor.card.expression_names), regressor.card.model_id
    train_x, train_y = ferplus_coefficients(regressor, args.manifest, 'train', args.cache)
    valid_x, valid_y = ferplus_coefficients(regressor, args.manifest, 'val', args.cache)
    ckplus = load_features('ckplus', regressor, args.cache / 'emotion_features', args.ckplus_subjects)
    found = ckplus.found
    ck = ckplus.cnn[found], ckplus.labels[found], ckplus.groups[found]
    print(f'{stem}: FER+ Train {len(train_y)}, FER+ Valid {len(valid_y)}, CK+ {len(ck[1])} images with a face '
          f'({(~found).sum()} without, counted wrong below)')
    balanced = round(len(train_y) / len(ck[1]))  # CK+ weighing as much as FER+ Train
    recipes = {'mlp': Recipe('mlp'), 'mlp-ck10': Recipe('mlp', ck_repeat=10),
               'mlp-balanced': Recipe('mlp', ck_repeat=balanced), 'mlp-ck10-x5': Recipe('mlp', ck_repeat=10, seeds=5),
               'mlp-balanced-x5': Recipe('mlp', ck_repeat=balanced, seeds=5), 'ecoc': Recipe('ecoc-svm')}
    joint = lambda: load_emotion_model(args.head or Path(args.model).parent / 'emotion_head.npz')
    candidates = {name: joint() if name == 'joint' else recipes[name] for name in args.candidates}
    chosen, model, recipe = choose_raw(candidates, (train_x, train_y), (valid_x, valid_y), ck, int((~found).sum()),
                                       args.folds, names, stem)
    model.save(args.out)
    print(f'raw: chose {chosen} (best FER+ Valid within 1 point of the best CK+); saved {args.out}')
    population_neutral = np.median(train_x[train_y == EMOTIONS.index('neutral')], axis=0)
    calibrated = choose_calibrated(model, recipe, (train_x, train_y), ckplus, population_neutral, names, stem,
                                   args.folds)
    calibrated.save(args.calibrated_out)
    print(f'calibrated: saved {calibrated.model_id} as {args.calibrated_out}')


if __name__ == '__main__':
    main()
