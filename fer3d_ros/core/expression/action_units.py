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
on. A second set, fitted the same way on calibrated coefficients (each subject's own neutral
frames as the rest), reads presence relative to a person once their neutral is known: resting
brows higher than the model's mean face are not a raised brow. FACS intensity letters A (trace) to
E (maximum) of a present AU are equal fifths of the intensity of the reading used (raw or
calibrated).

What 68 landmarks and a 2D crop cannot see is not here: gaze (AU61-64: the eyeLook* weights are
held at 0 by the pseudo-ground truth), cheek puff (AU34), lip roll/suck (AU28).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

import numpy as np

from fer3d_ros.core.files import find_model
from fer3d_ros.core.track_states import TrackStates, averaging_weight

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


CALIBRATED_SECTION = 'calibrated_action_units'  # the card's presence models on calibrated coefficients


def load_presence_model(path: str | os.PathLike | None = None, calibrated: bool = False) -> PresenceModel:
    """The presence models of models/action_units.json (or `path`) on raw coefficients, or on
    calibrated ones (its `calibrated_action_units` section); the card may hold more (figures)."""
    with open(path or find_model(MODEL_FILE)) as file:
        card = json.load(file)
    units = card[CALIBRATED_SECTION]['action_units'] if calibrated else card['action_units']
    return PresenceModel(card['model_id'], tuple(int(number) for number in units),
                         np.array([unit['weights'] for unit in units.values()], np.float64),
                         np.array([unit['bias'] for unit in units.values()], np.float64),
                         np.array([unit['threshold'] for unit in units.values()], np.float64))


def shipped_presence(model_id: str, calibrated: bool = False) -> PresenceModel | None:
    """The shipped presence models (raw or calibrated) if they were fitted on this regressor (else
    None: intensities only, or raw presence only)."""
    try:
        presence = load_presence_model(calibrated=calibrated)
    except (OSError, ValueError, KeyError):
        return None
    return presence if presence.model_id == model_id else None


@dataclass(frozen=True)
class Reading:
    intensities: np.ndarray    # (N, K) in [0, 1] from the raw coefficients
    calibrated_intensities: np.ndarray  # (N, K) in [0, 1] from the calibrated ones; NaN rows without them
    relative: np.ndarray       # (N,) bool: presence and levels read relative to the person's neutral
    probabilities: np.ndarray  # (N, K) presence probability; NaN for an AU without a presence model
    thresholds: np.ndarray     # (N, K) probability from which each AU is present (the model's that read it)
    present: np.ndarray        # (N, K) bool
    levels: list[list[str]]    # (N, K) FACS letter of a present AU, else ''

    def read_intensities(self) -> np.ndarray:
        """(N, K) the intensities that presence and levels were read from (calibrated where relative)."""
        return np.where(self.relative[:, None], self.calibrated_intensities, self.intensities)


def facs_levels(intensities: np.ndarray, present: np.ndarray) -> list[list[str]]:
    """FACS letters A..E of the present AUs (equal fifths of the intensity), '' for the others."""
    letters = np.minimum((np.nan_to_num(intensities) * len(LEVELS)).astype(int), len(LEVELS) - 1)
    return [[LEVELS[k] if yes else '' for k, yes in zip(row, mask)] for row, mask in zip(letters, present)]


class ActionUnitReader:
    """AU intensities for batches of coefficients, and presence where a presence model was measured:
    from raw coefficients, or relative to the person's neutral (calibrated ones) where asked."""

    def __init__(self, names: list[str] | tuple[str, ...], presence: PresenceModel | None = None,
                 calibrated_presence: PresenceModel | None = None) -> None:
        index = {name: k for k, name in enumerate(names)}
        missing = sorted({name for au in ACTION_UNITS for group in au.groups for name in group} - set(index))
        if missing:
            raise ValueError(f'the expression coefficients lack {", ".join(missing)}: action units need '
                             'ICT-FaceKit / ARKit blendshape names')
        for model in (presence, calibrated_presence):
            if model is not None and model.weights.shape[1] != len(names):
                raise ValueError(f'the presence models take {model.weights.shape[1]} coefficients, the regressor '
                                 f'gives {len(names)}')
        if calibrated_presence is not None and (presence is None or calibrated_presence.numbers != presence.numbers):
            raise ValueError('the calibrated presence models must cover the same action units as the raw ones')
        self.units, self.presence, self.calibrated_presence = ACTION_UNITS, presence, calibrated_presence
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

    def read(self, coefficients: np.ndarray, calibrated: np.ndarray | None = None,
             relative: np.ndarray | None = None) -> Reading:
        """Intensities, presence and FACS letters from raw (N, n) coefficients; with `calibrated` (N, n)
        (NaN rows where a face has none), their intensities too, and the presence of the `relative`
        (N,) rows read from them (only where a calibrated row and calibrated presence models exist)."""
        x = np.atleast_2d(np.asarray(coefficients, np.float64))
        calibrated = np.full(x.shape, np.nan) if calibrated is None else np.atleast_2d(np.asarray(calibrated,
                                                                                                  np.float64))
        finite = np.isfinite(calibrated).all(axis=1)
        usable = finite & (self.calibrated_presence is not None)
        relative = usable if relative is None else np.asarray(relative, bool) & usable
        intensities = self.intensities(x)
        calibrated_intensities = np.full_like(intensities, np.nan)
        if finite.any():
            calibrated_intensities[finite] = self.intensities(calibrated[finite])
        probabilities = np.full(intensities.shape, np.nan)
        measured = self._presence_column >= 0
        columns = self._presence_column[measured]
        thresholds = np.zeros(intensities.shape)
        for rows, model, values in ((~relative, self.presence, x), (relative, self.calibrated_presence, calibrated)):
            if rows.any() and measured.any():
                block = np.ix_(rows, measured)
                probabilities[block] = model.probabilities(values[rows])[:, columns]
                thresholds[block] = model.thresholds[columns]
        present = np.nan_to_num(probabilities, nan=-1.0) >= thresholds  # an AU without a model: NaN, absent
        read = np.where(relative[:, None], calibrated_intensities, intensities)
        return Reading(intensities, calibrated_intensities, relative, probabilities, thresholds, present,
                       facs_levels(read, present))


@dataclass
class _Smoothed:
    time: float | None = None
    intensities: np.ndarray | None = None    # (K,) averaged
    calibrated: np.ndarray | None = None     # (K,) averaged; None while the face has no calibration
    probabilities: np.ndarray | None = None  # (K,) averaged presence probabilities (NaN: no model)
    present: np.ndarray | None = None        # (K,) bool, held


class ActionUnitFilter:
    """Each face's action units over time (kept per person once recognised): intensities and presence
    probabilities averaged exponentially by stamp time over `time_constant` (OpenFace smooths AU
    intensities over 3 frames), and presence with hysteresis: an AU turns on at its threshold and
    stays on until its averaged probability falls `hysteresis` below it. A face's first frame is
    read as it is."""

    def __init__(self, time_constant: float = 0.1, hysteresis: float = 0.1, forget_after: float = 2.0) -> None:
        self.time_constant, self.hysteresis = time_constant, hysteresis
        self.tracks = TrackStates(_Smoothed, forget_after)

    def __len__(self) -> int:
        return len(self.tracks)

    def update(self, time: float, ids: list[str], person_ids: list[str], reading: Reading) -> Reading:
        """`reading` of one frame's faces (in the order of `ids`) through each face's past."""
        self.tracks.new_frame(time)
        intensities, calibrated = reading.intensities.copy(), reading.calibrated_intensities.copy()
        probabilities, present = reading.probabilities.copy(), reading.present.copy()
        for row, (face_id, person_id) in enumerate(zip(ids, person_ids)):
            state = self.tracks.seen_face(face_id, person_id)
            weight = 1.0 if state.time is None else averaging_weight(time - state.time, self.time_constant)
            state.time = time if state.time is None else max(time, state.time)
            state.intensities = intensities[row] = blend(state.intensities, intensities[row], weight)
            if np.isfinite(calibrated[row]).all():
                state.calibrated = calibrated[row] = blend(state.calibrated, calibrated[row], weight)
            else:  # not calibrated (yet, or any more): averaging starts afresh once it is
                state.calibrated = None
            state.probabilities = probabilities[row] = blend(state.probabilities, probabilities[row], weight)
            likely = np.nan_to_num(probabilities[row], nan=-1.0)  # NaN where an AU has no presence model
            present[row] = likely >= reading.thresholds[row]
            if state.present is not None:  # held on while within the hysteresis below the threshold
                present[row] |= state.present & (likely >= reading.thresholds[row] - self.hysteresis)
            state.present = present[row]
        smoothed = Reading(intensities, calibrated, reading.relative, probabilities, reading.thresholds, present, [])
        return replace(smoothed, levels=facs_levels(smoothed.read_intensities(), present))


def blend(previous: np.ndarray | None, value: np.ndarray, weight: float) -> np.ndarray:
    return value.copy() if previous is None else previous + weight * (value - previous)
