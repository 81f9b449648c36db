"""The emotion a face shows over time: per-person state that turns each frame's classifier
probabilities into a label that holds still while someone talks.

1. Speech is not surprise. Talking opens and closes the jaw several times a second; surprise and
   fear hold it open. The classifier reads the mouth-opening coefficients (ARTICULATORS) as their
   lower envelope: the least value over the last `speech_window` seconds. Syllables close the mouth
   at least once in that time, so a talking face reads as a closed mouth, while a mouth held open
   reads as open (at most `speech_window` later). Brows, lids and the rest are read as they are.
2. The probabilities are averaged exponentially by stamp time (`time_constant`): the weight of a
   frame dt seconds after the last is 1 - exp(-dt / time_constant), whatever the frame rate.
3. The label holds (hysteresis): it changes only when another class's averaged probability exceeds
   the current label's by `switch_margin`. Two classes close to each other keep the label they had.
   A face that comes back after `forget_after` seconds, and the frame from which a face is read
   calibrated, start both afresh (the last visit says nothing about now; a better reading is not noise).
A face's first frame passes through unchanged, so a still image is labelled as the classifier
labels it. Chosen against an HMM forward filter on real clips (training/eval_temporal.py).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from fer3d_ros.core.track_states import TrackStates, averaging_weight

# The coefficients that open, close and stretch the mouth on every syllable.
ARTICULATORS = ('jawOpen', 'mouthClose', 'mouthLowerDown_L', 'mouthLowerDown_R', 'mouthStretch_L', 'mouthStretch_R')


@dataclass
class EmotionState:
    """One face's (or person's) recent past."""
    time: float | None = None
    probabilities: np.ndarray | None = None  # averaged
    label: int = -1                          # held label, -1 before the first frame
    calibrated: bool = False                 # the last frame was classified from calibrated coefficients
    mouth: dict[str, deque] = field(default_factory=dict)  # 'raw' / 'calibrated' -> deque of (time, articulators)


class EmotionFilter:
    """Per-face temporal state of emotion_node: the mouth's lower envelope, the averaged probabilities
    and the held label; kept per person once the face is recognised (core.track_states.TrackStates)."""

    def __init__(self, names: tuple[str, ...] | list[str], time_constant: float = 0.4, switch_margin: float = 0.4,
                 speech_window: float = 0.5, forget_after: float = 2.0) -> None:
        self.articulators = np.array([k for k, name in enumerate(names) if name in ARTICULATORS], int)
        self.tracks = TrackStates(EmotionState, forget_after)
        self.configure(time_constant, switch_margin, speech_window)

    def configure(self, time_constant: float, switch_margin: float, speech_window: float) -> None:
        for name, value in (('time_constant', time_constant), ('switch_margin', switch_margin),
                            ('speech_window', speech_window)):
            if not value >= 0:
                raise ValueError(f'{name} must be >= 0, got {value}')
        self.time_constant, self.switch_margin, self.speech_window = time_constant, switch_margin, speech_window

    def __len__(self) -> int:
        return len(self.tracks)

    def new_frame(self, time: float) -> bool:
        """Start a frame; True if time jumped back (every face's state dropped)."""
        return self.tracks.new_frame(time)

    def state(self, face_id: str, person_id: str = '') -> EmotionState:
        return self.tracks.seen_face(face_id, person_id)

    def mouth_envelope(self, state: EmotionState, time: float, kind: str, coefficients: np.ndarray) -> np.ndarray:
        """The coefficients with their articulators replaced by their least value over the last
        speech_window seconds (this frame included); `kind` keeps raw and calibrated apart."""
        values = np.asarray(coefficients, np.float64)
        if self.speech_window <= 0 or not len(self.articulators):
            return values
        history = state.mouth.setdefault(kind, deque())
        history.append((time, values[self.articulators]))
        while history and history[0][0] <= time - self.speech_window:
            history.popleft()
        lowered = values.copy()
        lowered[self.articulators] = np.min([mouth for _, mouth in history], axis=0)  # this frame's included
        return lowered

    def update(self, state: EmotionState, time: float, probabilities: np.ndarray,
               calibrated: bool = False) -> tuple[np.ndarray, int]:
        """This frame's probabilities averaged with the face's past, and its held label (an index).
        A face starts afresh on its first frame, when it comes back after forget_after seconds (a
        person's last visit says nothing about now) and on the frame that first reads it calibrated
        (the average and the margin hold a reading against its own noise, not against a better one)."""
        averaged = np.asarray(probabilities, np.float64).copy()
        afresh = state.time is None or time - state.time > self.tracks.forget_after or \
            (calibrated and not state.calibrated)
        if not afresh:
            averaged = state.probabilities + averaging_weight(time - state.time, self.time_constant) * (
                averaged - state.probabilities)
        state.time = time if state.time is None else max(time, state.time)
        state.probabilities = averaged
        top = int(averaged.argmax())
        if afresh or averaged[top] - averaged[state.label] >= self.switch_margin:
            state.label = top
        state.calibrated = calibrated
        return averaged, state.label

    def reset(self) -> None:
        self.tracks.clear()
