"""Facial action units (FACS) read from the 3D expression: the 55 ICT-FaceKit blendshape weights are
ARKit's, and each ARKit blendshape was designed after one action unit.

An AU's intensity is the mean of its blendshapes' weights (left and right sides; for AU6 the
stronger of cheekRaiser and cheekSquint), in [0, 1]; from calibrated (neutral-relative) weights the
same sum is clipped to [0, 1]. The mapping follows the ARKit <-> FACS correspondence that face rigs
use (Apple's ARFaceAnchor.BlendShapeLocation documentation names the facial movement of each
shape; the FACS manual, Ekman & Friesen 2002, defines the AUs). An AU is *present* when its
intensity reaches its threshold, chosen on CK+ apex frames against their certified FACS codes
(training/eval_action_units.py); AUs without a measured threshold are published with intensity
only. FACS intensity letters A (trace) to E (maximum) are equal fifths of the intensity above the
threshold.

What 68 landmarks and a 2D crop cannot see is not here: gaze (AU61-64: the eyeLook* weights are
held at 0 by the pseudo-ground truth), cheek puff (AU34), lip roll/suck (AU28).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from fer3d_ros.core.models import find_model

MODEL_FILE = 'action_units.json'  # presence thresholds measured on CK+ for the shipped regressor
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


class ActionUnitReader:
    """AU intensities (and presence where a threshold was measured) for batches of coefficients."""

    def __init__(self, names: list[str] | tuple[str, ...], thresholds: dict[int, float] | None = None) -> None:
        index = {name: k for k, name in enumerate(names)}
        missing = sorted({name for au in ACTION_UNITS for group in au.groups for name in group} - set(index))
        if missing:
            raise ValueError(f'the expression coefficients lack {", ".join(missing)}: action units need '
                             'ICT-FaceKit / ARKit blendshape names')
        self.units = ACTION_UNITS
        self._groups = [[np.array([index[name] for name in group]) for group in au.groups] for au in ACTION_UNITS]
        self.thresholds = dict(thresholds or {})

    def intensities(self, coefficients: np.ndarray) -> np.ndarray:
        """(N, len(ACTION_UNITS)) in [0, 1] from raw or calibrated (N, n) coefficients."""
        x = np.atleast_2d(np.asarray(coefficients, np.float64))
        values = np.stack([np.max([x[:, group].mean(axis=1) for group in groups], axis=0)
                           for groups in self._groups], axis=1)
        return np.clip(values, 0.0, 1.0)

    def presence(self, intensities: np.ndarray) -> np.ndarray:
        """(N, K) bool: at or above the AU's measured threshold (False where none was measured)."""
        limits = np.array([self.thresholds.get(au.number, np.inf) for au in self.units])
        return intensities >= limits

    def levels(self, intensities: np.ndarray) -> list[list[str]]:
        """FACS letters A-E per AU ('' where absent or unmeasured): fifths of the range above the threshold."""
        limits = np.array([self.thresholds.get(au.number, np.inf) for au in self.units])
        measured = np.isfinite(limits)
        fraction = np.where(measured, intensities - np.where(measured, limits, 0.0), 0.0) / \
            np.maximum(1.0 - np.where(measured, limits, 0.0), 1e-6)
        letters = np.clip((fraction * len(LEVELS)).astype(int), 0, len(LEVELS) - 1)
        return [[LEVELS[k] if present else '' for k, present in zip(row, mask)]
                for row, mask in zip(letters, self.presence(intensities))]


def load_action_unit_card(path: str | os.PathLike | None = None) -> tuple[str, dict[int, float]]:
    """(regressor model id, AU number -> presence threshold) from the shipped action_units.json (or
    `path`): thresholds hold only for the regressor they were measured on."""
    with open(path or find_model(MODEL_FILE)) as file:
        card = json.load(file)
    return card['model_id'], {int(number): float(value['threshold']) for number, value in card['action_units'].items()}
