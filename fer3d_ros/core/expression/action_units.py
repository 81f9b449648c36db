"""Facial action units (FACS) read from the 3D expression: the 55 ICT-FaceKit blendshape weights are
ARKit's, and each ARKit blendshape was designed after one action unit.

An AU's intensity is the mean of its blendshapes' weights (left and right sides; for AU6 the
stronger of cheekRaiser and cheekSquint), in [0, 1]; from calibrated (neutral-relative) weights the
same sum is clipped to [0, 1]. The mapping follows the ARKit <-> FACS correspondence that face rigs
use (Apple's ARFaceAnchor.BlendShapeLocation documentation names the facial movement of each
shape; the FACS manual, Ekman & Friesen 2002, defines the AUs).

Whether an AU is *present* is a separate, learned decision: one logistic regression per AU on all
the coefficients (an AU moves more than its own blendshapes, and the regressor spreads it over
several), with a probability threshold, both fitted on CK+ apex frames against their certified
FACS codes and neutral first frames (training/eval_action_units.py, which also shows that this
beats thresholding the intensity under subject-wise cross-validation). Only AUs measured there
have a presence model (models/action_units.json); it holds only for the regressor it was fitted
on. FACS intensity letters A (trace) to E (maximum) of a present AU are equal fifths of its
intensity.

What 68 landmarks and a 2D crop cannot see is not here: gaze (AU61-64: the eyeLook* weights are
held at 0 by the pseudo-ground truth), cheek puff (AU34), lip roll/suck (AU28).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from fer3d_ros.core.files import find_model

MODEL_FILE = 'action_units.json'  # presence models measured on CK+ for the shipped regressor
LEVELS = 'ABCDE'


@dataclass(frozen=True)
class ActionUnit:
    number: int
    name: str
    groups: tuple[tuple[str, ...], ...]  # blendshape groups; intensity = max over groups of the group mean


ACTION_UNITS = (
    ActionUnit(1, 'inner brow raiser', (('browInnerUp_L', 'browInnerUp_R'),)),
    ActionUnit(2, 'outer brow raiser', (('browOuterUp_L', 'browOuterUp_R'),)),
    ActionUnit(4, 'brow lowerer', (('browDown_L', 'browDown_R'),)),
    ActionUnit(5, 'upper lid raiser', (('eyeWide_L', 'eyeWide_R'),)),
    ActionUnit(6, 'cheek raiser', (('cheekRaiser_L', 'cheekRaiser_R'), ('cheekSquint_L', 'cheekSquint_R'))),
    ActionUnit(7, 'lid tightener', (('eyeSquint_L', 'eyeSquint_R'),)),
    ActionUnit(9, 'nose wrinkler', (('noseSneer_L', 'noseSneer_R'),)),
    ActionUnit(10, 'upper lip raiser', (('mouthUpperUp_L', 'mouthUpperUp_R'),)),
    ActionUnit(12, 'lip corner puller', (('mouthSmile_L', 'mouthSmile_R'),)),
    ActionUnit(14, 'dimpler', (('mouthDimple_L', 'mouthDimple_R'),)),
    ActionUnit(15, 'lip corner depressor', (('mouthFrown_L', 'mouthFrown_R'),)),
    ActionUnit(16, 'lower lip depressor', (('mouthLowerDown_L', 'mouthLowerDown_R'),)),
    ActionUnit(17, 'chin raiser', (('mouthShrugLower',),)),
    ActionUnit(18, 'lip pucker', (('mouthPucker',),)),
    ActionUnit(20, 'lip stretcher', (('mouthStretch_L', 'mouthStretch_R'),)),
    ActionUnit(24, 'lip pressor', (('mouthPress_L', 'mouthPress_R'),)),
    ActionUnit(25, 'lips part', (('jawOpen',), ('mouthLowerDown_L', 'mouthLowerDown_R'))),
    ActionUnit(26, 'jaw drop', (('jawOpen',),)),
    ActionUnit(27, 'mouth stretch', (('jawOpen',),)),
    ActionUnit(45, 'blink', (('eyeBlink_L', 'eyeBlink_R'),)),
)


@dataclass(frozen=True)
class PresenceModel:
    """Per-AU logistic regressions on the coefficients and their probability thresholds."""
    model_id: str            # the regressor whose coefficients they were fitted on
    numbers: tuple[int, ...]  # (K,) AU numbers
    weights: np.ndarray      # (K, n)
    bias: np.ndarray         # (K,)
    thresholds: np.ndarray   # (K,) probability at and above which the AU is present

    def probabilities(self, coefficients: np.ndarray) -> np.ndarray:
        """(N, K) probability that each AU is present."""
        return 1.0 / (1.0 + np.exp(-(np.atleast_2d(coefficients) @ self.weights.T + self.bias)))

    def to_card(self) -> dict:
        return {'model_id': self.model_id, 'action_units': {
            str(number): {'weights': [round(float(w), 6) for w in weights], 'bias': round(float(bias), 6),
                          'threshold': round(float(threshold), 6)}
            for number, weights, bias, threshold in zip(self.numbers, self.weights, self.bias, self.thresholds)}}


def load_presence_model(path: str | os.PathLike | None = None) -> PresenceModel:
    """The presence models of models/action_units.json (or `path`); the card may hold more (figures)."""
    with open(path or find_model(MODEL_FILE)) as file:
        card = json.load(file)
    units = card['action_units']
    return PresenceModel(card['model_id'], tuple(int(number) for number in units),
                         np.array([unit['weights'] for unit in units.values()], np.float64),
                         np.array([unit['bias'] for unit in units.values()], np.float64),
                         np.array([unit['threshold'] for unit in units.values()], np.float64))


def shipped_presence(model_id: str) -> PresenceModel | None:
    """The shipped presence models if they were fitted on this regressor (else None: intensities only)."""
    try:
        presence = load_presence_model()
    except (OSError, ValueError, KeyError):
        return None
    return presence if presence.model_id == model_id else None


@dataclass(frozen=True)
class Reading:
    intensities: np.ndarray    # (N, K) in [0, 1]
    probabilities: np.ndarray  # (N, K) presence probability; NaN for an AU without a presence model
    present: np.ndarray        # (N, K) bool
    levels: list[list[str]]    # (N, K) FACS letter of a present AU, else ''


class ActionUnitReader:
    """AU intensities for batches of coefficients, and presence where a presence model was measured."""

    def __init__(self, names: list[str] | tuple[str, ...], presence: PresenceModel | None = None) -> None:
        index = {name: k for k, name in enumerate(names)}
        missing = sorted({name for au in ACTION_UNITS for group in au.groups for name in group} - set(index))
        if missing:
            raise ValueError(f'the expression coefficients lack {", ".join(missing)}: action units need '
                             'ICT-FaceKit / ARKit blendshape names')
        if presence is not None and presence.weights.shape[1] != len(names):
            raise ValueError(f'the presence models take {presence.weights.shape[1]} coefficients, the regressor '
                             f'gives {len(names)}')
        self.units, self.presence = ACTION_UNITS, presence
        self._groups = [[np.array([index[name] for name in group]) for group in au.groups] for au in ACTION_UNITS]
        numbers = presence.numbers if presence else ()
        # column of each unit in the presence model, -1 where it has none
        self._presence_column = np.array([numbers.index(au.number) if au.number in numbers else -1
                                          for au in ACTION_UNITS])

    def intensities(self, coefficients: np.ndarray) -> np.ndarray:
        """(N, len(ACTION_UNITS)) in [0, 1] from raw or calibrated (N, n) coefficients."""
        x = np.atleast_2d(np.asarray(coefficients, np.float64))
        values = np.stack([np.max([x[:, group].mean(axis=1) for group in groups], axis=0)
                           for groups in self._groups], axis=1)
        return np.clip(values, 0.0, 1.0)

    def read(self, coefficients: np.ndarray) -> Reading:
        """Intensities, presence and FACS letters from raw (N, n) coefficients."""
        x = np.atleast_2d(np.asarray(coefficients, np.float64))
        intensities = self.intensities(x)
        probabilities = np.full(intensities.shape, np.nan)
        present = np.zeros(intensities.shape, bool)
        measured = self._presence_column >= 0
        if measured.any():
            columns = self._presence_column[measured]
            probabilities[:, measured] = self.presence.probabilities(x)[:, columns]
            present[:, measured] = probabilities[:, measured] >= self.presence.thresholds[columns]
        letters = np.minimum((intensities * len(LEVELS)).astype(int), len(LEVELS) - 1)
        levels = [[LEVELS[k] if yes else '' for k, yes in zip(row, mask)] for row, mask in zip(letters, present)]
        return Reading(intensities, probabilities, present, levels)
