"""Emotion from 3DMM expression coefficients: a calibrated one-vs-all SVM ensemble (ECOC), or the
small MLP head that DeepExp3D was trained with (training/train_multitask.py).

The classifier follows the paper: error-correcting output codes with one-vs-all coding, i.e. one
RBF-kernel SVM per class, each answering "this class or not". Its input is the signed square root
of the coefficients: blendshape weights are small for most of a face most of the time, and the
root spreads the small values (it raised CK+ 10-fold accuracy from 93.7 to 94.4 %, subject-wise).
The weights share one unit, so no further standardisation is applied. Every SVM's decision value goes
through its own Platt sigmoid (fitted on out-of-fold decision values, so the probabilities are
calibrated) and the 7 per-class probabilities are normalised to sum to 1 — one-vs-all decoding.

The trained model is stored as plain arrays in an .npz (support vectors, dual coefficients,
intercepts, sigmoid parameters, feature names): it loads without scikit-learn or pickle, so it
cannot break across scikit-learn versions or run code on load. training/train_emotion.py writes it.
The MLP head (observable weights -> 64 ReLU -> 7, softmax) is stored the same way, as its layers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from fer3d_ros.core.files import ModelFileError, find_model, require_file

# The classes, in the order of every probability vector (the label constants of Emotion.msg).
EMOTIONS = ('neutral', 'happy', 'sad', 'surprise', 'fear', 'disgust', 'anger')
MODEL_FILE = 'emotion_classifier.npz'
CALIBRATED_MODEL_FILE = 'emotion_classifier_calibrated.npz'  # trained on neutral-relative coefficients


@dataclass(frozen=True)
class EmotionModel:
    """One RBF SVM per class on the signed square root of the features, with a Platt sigmoid per class."""
    model_id: str
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]   # expression coefficient names, in input order
    features: str                    # 'raw' coefficients or 'calibrated' (neutral-relative)
    gamma: float                     # RBF kernel exp(-gamma * |x - sv|^2), x = feature_map(coefficients)
    support_vectors: np.ndarray      # (S, F) union of all classes' support vectors
    dual_coef: np.ndarray            # (C, S) per class; zero where a vector is not that class's
    intercept: np.ndarray            # (C,)
    sigmoid: np.ndarray              # (C, 2): p = 1 / (1 + exp(a * f + b))

    def save(self, path: str | os.PathLike) -> None:
        np.savez_compressed(path, model_id=self.model_id, classes=list(self.classes),
                            feature_names=list(self.feature_names), features=self.features,
                            gamma=self.gamma,
                            support_vectors=self.support_vectors, dual_coef=self.dual_coef,
                            intercept=self.intercept, sigmoid=self.sigmoid)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmotionModel:
        try:
            with np.load(path, allow_pickle=False) as arrays:
                model = cls(str(arrays['model_id']), tuple(map(str, arrays['classes'])),
                            tuple(map(str, arrays['feature_names'])),
                            str(arrays['features']), float(arrays['gamma']),
                            arrays['support_vectors'], arrays['dual_coef'], arrays['intercept'], arrays['sigmoid'])
        except (OSError, ValueError, KeyError) as error:
            raise ModelFileError(f'emotion model {path} is unreadable ({error}); train one with '
                                 'python -m training.train_emotion') from error
        model.check()
        return model

    def describe(self) -> str:
        return f'{self.model_id} ({len(self.classes)} classes, {len(self.support_vectors)} support vectors)'

    @cached_property
    def _support_norms(self) -> np.ndarray:
        return (self.support_vectors.astype(np.float64) ** 2).sum(axis=1)

    def decision(self, coefficients: np.ndarray) -> np.ndarray:
        """(N, C) SVM decision values."""
        x = feature_map(coefficients)
        squared = (x ** 2).sum(axis=1)[:, None] + self._support_norms[None, :] - 2.0 * x @ self.support_vectors.T
        kernel = np.exp(-self.gamma * np.maximum(squared, 0.0))
        return kernel @ self.dual_coef.T + self.intercept

    def probabilities(self, coefficients: np.ndarray) -> np.ndarray:
        """(N, C): each class's Platt probability, normalised to sum to 1 (one-vs-all decoding)."""
        a, b = self.sigmoid.T
        per_class = 1.0 / (1.0 + np.exp(np.clip(self.decision(coefficients) * a + b, -500, 500)))
        total = per_class.sum(axis=1, keepdims=True)
        uniform = np.full_like(per_class, 1.0 / per_class.shape[1])
        return np.where(total > 0, per_class / np.where(total > 0, total, 1.0), uniform)

    def check(self) -> None:
        n_classes, n_features = len(self.classes), len(self.feature_names)
        shapes = {'support_vectors': (self.support_vectors.shape[1:], (n_features,)),
                  'dual_coef': (self.dual_coef.shape, (n_classes, len(self.support_vectors))),
                  'intercept': (self.intercept.shape, (n_classes,)), 'sigmoid': (self.sigmoid.shape, (n_classes, 2))}
        wrong = [f'{name} {got} != {want}' for name, (got, want) in shapes.items() if got != want]
        if wrong or self.features not in ('raw', 'calibrated'):
            raise ModelFileError(f'emotion model {self.model_id} is inconsistent: {"; ".join(wrong) or self.features}')


@dataclass(frozen=True)
class HeadModel:
    """DeepExp3D's emotion head: softmax(relu(x[observable] @ w1 + b1) @ w2 + b2), x = coefficients + offset.

    On raw coefficients the offset is 0. The same head serves calibrated (neutral-relative)
    coefficients with `offset` = the population's neutral face: a calibrated face is then the
    population's neutral plus what this person's face does, so a head trained in the wild reads it
    without the person's own resting offset.
    """
    model_id: str
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    features: str
    observable: np.ndarray  # (K,) indices of the coefficients the head reads
    w1: np.ndarray          # (K, H)
    b1: np.ndarray          # (H,)
    w2: np.ndarray          # (H, C)
    b2: np.ndarray          # (C,)
    offset: np.ndarray | None = None  # (n,) added to the coefficients first; None: zeros

    def save(self, path: str | os.PathLike) -> None:
        offset = np.zeros(len(self.feature_names)) if self.offset is None else self.offset
        np.savez(path, model_id=self.model_id, classes=list(self.classes), feature_names=list(self.feature_names),
                 features=self.features, observable=self.observable, w1=self.w1, b1=self.b1, w2=self.w2, b2=self.b2,
                 offset=offset)

    def for_calibrated(self, population_neutral: np.ndarray, model_id: str) -> HeadModel:
        """This head for calibrated coefficients, re-centred on the population's neutral face."""
        return replace(self, model_id=model_id, features='calibrated',
                       offset=np.asarray(population_neutral, np.float64))

    def describe(self) -> str:
        layers = f'{len(self.observable)}-{len(self.b1)}-{len(self.b2)}'
        return f'{self.model_id} ({len(self.classes)} classes, MLP {layers})'

    def probabilities(self, coefficients: np.ndarray) -> np.ndarray:
        x = np.asarray(coefficients, np.float64) + (0.0 if self.offset is None else self.offset)
        hidden = np.maximum(x[:, self.observable] @ self.w1 + self.b1, 0.0)
        logits = hidden @ self.w2 + self.b2
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def check(self) -> None:
        k, h, c = len(self.observable), len(self.b1), len(self.classes)
        shapes = {'w1': (self.w1.shape, (k, h)), 'w2': (self.w2.shape, (h, c)), 'b2': (self.b2.shape, (c,))}
        wrong = [f'{name} {got} != {want}' for name, (got, want) in shapes.items() if got != want]
        if k and not 0 <= self.observable.min() <= self.observable.max() < len(self.feature_names):
            wrong.append('observable indices outside the feature names')
        if self.offset is not None and self.offset.shape != (len(self.feature_names),):
            wrong.append(f'offset {self.offset.shape} != ({len(self.feature_names)},)')
        if wrong or self.features not in ('raw', 'calibrated'):
            raise ModelFileError(f'emotion model {self.model_id} is inconsistent: {"; ".join(wrong) or self.features}')


def load_emotion_model(path: str | os.PathLike) -> EmotionModel | HeadModel:
    """An .npz written by training/train_emotion.py (SVMs) or training/train_multitask.py (head)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if 'w1' not in arrays:
                return EmotionModel.load(path)
            model = HeadModel(str(arrays['model_id']), tuple(map(str, arrays['classes'])),
                              tuple(map(str, arrays['feature_names'])), str(arrays['features']),
                              arrays['observable'].astype(int), *(arrays[k].astype(np.float64)
                                                                  for k in ('w1', 'b1', 'w2', 'b2')),
                              arrays['offset'].astype(np.float64) if 'offset' in arrays else None)
    except (OSError, ValueError, KeyError) as error:
        raise ModelFileError(f'emotion model {path} is unreadable ({error}); train one with '
                             'python -m training.train_emotion') from error
    model.check()
    return model


def feature_map(coefficients: np.ndarray) -> np.ndarray:
    """Signed square root: spreads the many small weights, keeps the sign of calibrated features."""
    coefficients = np.asarray(coefficients, np.float64)
    return np.sign(coefficients) * np.sqrt(np.abs(coefficients))


class EmotionClassifier:
    """Probabilities of the 7 emotions for batches of expression coefficient vectors."""

    def __init__(self, model: EmotionModel | HeadModel) -> None:
        self.model = model

    @property
    def classes(self) -> tuple[str, ...]:
        return self.model.classes

    def check_names(self, names: tuple[str, ...] | list[str]) -> None:
        """Refuse coefficients from a regressor whose outputs differ from the training features."""
        if tuple(names) != self.model.feature_names:
            raise ValueError(f'the emotion model {self.model.model_id} was trained on {len(self.model.feature_names)} '
                             f'coefficients named {self.model.feature_names[:3]}..., the input has {len(names)} named '
                             f'{tuple(names)[:3]}...: retrain it on this regressor (python -m training.train_emotion)')

    def predict_proba(self, coefficients: np.ndarray) -> np.ndarray:
        """(N, C) probabilities in the order of `classes`; rows sum to 1."""
        coefficients = np.atleast_2d(coefficients)
        if coefficients.shape[1] != len(self.model.feature_names):
            raise ValueError(f'expected {len(self.model.feature_names)} coefficients per face, '
                             f'got {coefficients.shape[1]}')
        if not np.isfinite(coefficients).all():
            raise ValueError('expression coefficients contain NaN or infinity')
        return self.model.probabilities(coefficients)


def default_classifier(model_path: str | os.PathLike | None = None, features: str = 'raw') -> EmotionClassifier:
    """The shipped classifier for 'raw' or 'calibrated' features (or `model_path`, checked to be one)."""
    path = require_file(model_path, 'emotion classifier', 'Train one with python -m training.train_emotion, '
                        'or leave the model parameter empty for the shipped one.') \
        if model_path else find_model(CALIBRATED_MODEL_FILE if features == 'calibrated' else MODEL_FILE)
    model = load_emotion_model(path)
    if model.features != features:
        raise ModelFileError(f'emotion model {path} was trained on {model.features} coefficients, this input needs '
                             f'one trained on {features} ones (python -m training.train_emotion --features '
                             f'{"calibrated" if features == "calibrated" else "cnn"})')
    return EmotionClassifier(model)
