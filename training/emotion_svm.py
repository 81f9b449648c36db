"""Training the ECOC/SVM emotion classifier (fer3d_ros.core.affect.emotion) with scikit-learn.

- ECOC with one-vs-all coding = `OneVsRestClassifier(SVC(kernel='rbf'))` on the signed square root
  of the coefficients (`fer3d_ros.core.affect.emotion.feature_map`).
- Hyper-parameters (C, gamma, class weighting) by Bayesian optimisation (optuna's TPE sampler),
  scored by group-wise (subject-wise) cross-validation on the training data only: in
  `cross_validate` every outer test fold is unseen by the search that tuned its model.
- Calibration: one Platt sigmoid per class fitted on out-of-fold decision values (group-wise),
  then the SVMs are refitted on all the training data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, cross_val_predict, cross_val_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import SVC

from fer3d_ros.core.affect.emotion import EMOTIONS, EmotionClassifier, EmotionModel, feature_map


@dataclass(frozen=True)
class SearchSettings:
    trials: int = 40          # Bayesian optimisation trials per search
    inner_folds: int = 5      # group-wise folds scoring each trial (and fitting the sigmoids)
    seed: int = 0


def svm_pipeline(C: float, gamma: float, class_weight: str | None) -> Pipeline:
    return make_pipeline(FunctionTransformer(feature_map),
                         OneVsRestClassifier(SVC(C=C, gamma=gamma, class_weight=class_weight)))


def tune(x: np.ndarray, y: np.ndarray, groups: np.ndarray, settings: SearchSettings) -> dict:
    """Hyper-parameters that maximise group-wise cross-validated accuracy on (x, y)."""
    folds = GroupKFold(n_splits=min(settings.inner_folds, len(np.unique(groups))))

    def accuracy(trial: optuna.Trial) -> float:
        params = {'C': trial.suggest_float('C', 0.05, 500.0, log=True),
                  'gamma': trial.suggest_float('gamma', 0.01, 30.0, log=True),
                  'class_weight': trial.suggest_categorical('class_weight', [None, 'balanced'])}
        return cross_val_score(svm_pipeline(**params), x, y, groups=groups, cv=folds).mean()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction='maximize', sampler=optuna.samplers.TPESampler(seed=settings.seed))
    study.optimize(accuracy, n_trials=settings.trials)
    return study.best_params


def fit_model(x: np.ndarray, y: np.ndarray, groups: np.ndarray, feature_names: tuple[str, ...],
              model_id: str, settings: SearchSettings = SearchSettings(), features: str = 'raw',
              params: dict | None = None) -> EmotionModel:
    """Tune (unless `params` are given), calibrate and fit on all of (x, y); y indexes EMOTIONS."""
    missing = sorted(set(range(len(EMOTIONS))) - set(np.unique(y)))
    if missing:
        raise ValueError(f'no training examples of {", ".join(EMOTIONS[i] for i in missing)}')
    params = params or tune(x, y, groups, settings)
    pipeline = svm_pipeline(**params)
    folds = GroupKFold(n_splits=min(settings.inner_folds, len(np.unique(groups))))
    decisions = cross_val_predict(pipeline, x, y, groups=groups, cv=folds, method='decision_function')
    sigmoid = np.array([platt(decisions[:, k], y == k) for k in range(len(EMOTIONS))])
    pipeline.fit(x, y)
    return export(pipeline, sigmoid, feature_names, model_id, features)


def platt(decision: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(a, b) of p = 1 / (1 + exp(a f + b)), by (nearly unregularised) logistic regression."""
    regression = LogisticRegression(C=1e6).fit(decision[:, None], positive)
    return -float(regression.coef_[0, 0]), -float(regression.intercept_[0])


def export(pipeline: Pipeline, sigmoid: np.ndarray, feature_names: tuple[str, ...], model_id: str,
           features: str) -> EmotionModel:
    """The fitted pipeline as plain arrays: the union of the classes' support vectors."""
    machines = pipeline.named_steps['onevsrestclassifier'].estimators_
    gammas = {svm.gamma for svm in machines}
    if not all(isinstance(svm, SVC) for svm in machines) or len(gammas) != 1:
        raise ValueError('every class needs its own fitted SVM with one shared gamma')
    union = np.unique(np.concatenate([svm.support_ for svm in machines]))
    dual = np.zeros((len(machines), len(union)))
    for k, svm in enumerate(machines):
        dual[k, np.searchsorted(union, svm.support_)] = svm.dual_coef_[0]
    support_vectors = np.zeros((len(union), len(feature_names)))
    for svm in machines:  # every machine saw the same (feature-mapped) training set
        support_vectors[np.searchsorted(union, svm.support_)] = svm.support_vectors_
    return EmotionModel(model_id, EMOTIONS, tuple(feature_names), features, float(gammas.pop()), support_vectors, dual,
                        np.array([svm.intercept_[0] for svm in machines]), np.asarray(sigmoid, np.float64))


def cross_validate(x: np.ndarray, y: np.ndarray, groups: np.ndarray, feature_names: tuple[str, ...],
                   folds: int = 10, settings: SearchSettings = SearchSettings(),
                   progress=None) -> tuple[np.ndarray, list[dict]]:
    """Out-of-fold probabilities (N, 7) from group-wise folds, each with its own search; and the
    hyper-parameters each fold chose."""
    probabilities = np.zeros((len(y), len(EMOTIONS)))
    chosen = []
    splits = list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=settings.seed).split(x, y, groups))
    for train, test in (progress(splits) if progress else splits):
        params = tune(x[train], y[train], groups[train], settings)
        model = fit_model(x[train], y[train], groups[train], feature_names, 'cv', settings, params=params)
        probabilities[test] = EmotionClassifier(model).predict_proba(x[test])
        chosen.append(params)
    return probabilities, chosen
