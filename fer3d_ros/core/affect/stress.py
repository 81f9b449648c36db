"""Windowed stress estimation from expression coefficients and head pose, per tracked face.

Each tracked face keeps a sliding window (default 10 s) of per-frame samples: expression
coefficients and head pose angles. Every hop (default 1 s) a full enough window is summarised
into features and scored by a `StressModel`: a logistic model on standardised features.

Two models share that form:
- **the prior** (`models/stress_prior.json`, written by `python -m training.stress_prior`): no
  public stress-labelled face video exists (the paper's SRD'15 is private), so it scores the five
  behavioural features that the literature links to stress, each pushing the same way it does
  there, with equal weights. See `PRIOR_FEATURES` for the sources and training/stress_prior.py
  for how its reference levels were measured.
- **a trained model** (`python -m training.train_stress`), fitted on a user's labelled recordings
  with subject-wise cross-validation; it can use every feature below.
"""
from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from fer3d_ros.core.files import ModelFileError, find_model, require_file
from fer3d_ros.core.track_states import TrackStates

PRIOR_FILE = 'stress_prior.json'
STATISTICS = ('mean', 'std', 'range', 'slope')
# Raw coefficients lie in [0, 1]; a little beyond is another regressor's noise, far beyond is garbage
# that would dominate a whole window's statistics.
SANE_RANGE = (-0.5, 1.5)

# The behavioural features of the prior; each raises stress in the cited work.
PRIOR_FEATURES = {
    # Blink rate rises under stress and anxiety: Giannakakis et al., "Stress and anxiety detection
    # using facial cues from videos", Biomed. Signal Process. Control 31 (2017) 89-101; Haak et al.,
    # "Detecting stress using eye blinks during game playing", IEEE CIG 2009.
    'blink_rate': 'blinks per minute (eyeBlink rising above its window median by blink_threshold)',
    # Faster, more variable head movement under stress: Giannakakis et al. 2017 (above) and
    # Giannakakis et al., "Head movements in context of speech during stress induction", FG 2018.
    'head_speed': 'mean angular speed of the head, degrees per second',
    'head_speed_std': 'standard deviation of that speed, degrees per second',
    # More mouth activity under stress: Giannakakis et al. 2017 (above).
    'mouth_activity': 'mean absolute rate of change of the jaw and mouth coefficients, per second',
    # Brow lowering (AU4, corrugator) tracks negative affect: Larsen, Norris & Cacioppo,
    # "Effects of positive and negative affect on electromyographic activity over zygomaticus
    # major and corrugator supercilii", Psychophysiology 40 (2003) 776-785.
    'brow_down': 'mean of browDown_L/R',
}

# The expression coefficients each behavioural feature is computed from; mouth activity over
# ICT-FaceKit's jaw and mouth blendshapes, as the prior's reference levels were measured.
BLINK, BROW = ('eyeBlink_L', 'eyeBlink_R'), ('browDown_L', 'browDown_R')
MOUTH = ('jawForward', 'jawLeft', 'jawOpen', 'jawRight', 'mouthClose', 'mouthDimple_L', 'mouthDimple_R',
         'mouthFrown_L', 'mouthFrown_R', 'mouthFunnel', 'mouthLeft', 'mouthLowerDown_L', 'mouthLowerDown_R',
         'mouthPress_L', 'mouthPress_R', 'mouthPucker', 'mouthRight', 'mouthRollLower', 'mouthRollUpper',
         'mouthShrugLower', 'mouthShrugUpper', 'mouthSmile_L', 'mouthSmile_R', 'mouthStretch_L', 'mouthStretch_R',
         'mouthUpperUp_L', 'mouthUpperUp_R')
FEATURE_COEFFICIENTS = {'blink_rate': BLINK, 'blink_duration': BLINK, 'brow_down': BROW, 'mouth_activity': MOUTH,
                        'head_speed': (), 'head_speed_std': ()}


@dataclass(frozen=True)
class StressModel:
    """p(stressed) = 1 / (1 + exp(-(coef . (features - mean) / scale + intercept)))."""
    model_id: str
    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    notes: str = ''

    @property
    def coefficient_names(self) -> tuple[str, ...]:
        """The expression coefficients its features are computed from (a coefficient statistic such as
        jawOpen_slope reads jawOpen), in a fixed order."""
        names: dict[str, None] = {}
        for feature in self.feature_names:
            coefficient, _, statistic = feature.rpartition('_')
            names.update(dict.fromkeys(FEATURE_COEFFICIENTS.get(
                feature, (coefficient,) if statistic in STATISTICS else ())))
        return tuple(names)

    def probability(self, features: dict[str, float]) -> float:
        missing = [name for name in self.feature_names if name not in features]
        if missing:
            raise ValueError(f'stress model {self.model_id} needs features {missing} that the input lacks '
                             '(were the expression names different when it was trained?)')
        x = np.array([features[name] for name in self.feature_names])
        x = np.where(np.isfinite(x), x, self.mean)  # an unmeasurable feature counts as typical
        return float(1.0 / (1.0 + np.exp(-(self.coef @ ((x - self.mean) / self.scale) + self.intercept))))

    def save(self, path: str | os.PathLike) -> None:
        with open(path, 'w') as file:
            json.dump({'model_id': self.model_id, 'notes': self.notes, 'intercept': self.intercept,
                       'features': [{'name': name, 'mean': m, 'scale': s, 'coef': c} for name, m, s, c
                                    in zip(self.feature_names, self.mean.tolist(), self.scale.tolist(),
                                           self.coef.tolist())]}, file, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> StressModel:
        try:
            with open(path) as file:
                data = json.load(file)
            rows = data['features']
            model = cls(str(data['model_id']), tuple(r['name'] for r in rows),
                        np.array([r['mean'] for r in rows], float), np.array([r['scale'] for r in rows], float),
                        np.array([r['coef'] for r in rows], float), float(data['intercept']), data.get('notes', ''))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ModelFileError(f'stress model {path} is unreadable ({error}); write one with python -m '
                                 'training.stress_prior or python -m training.train_stress') from error
        if not np.all(model.scale > 0):
            raise ModelFileError(f'stress model {path}: every feature scale must be positive')
        return model


def default_stress_model(model_path: str | os.PathLike | None = None) -> StressModel:
    path = require_file(model_path, 'stress model', 'Train one with python -m training.train_stress, or leave '
                        'the model parameter empty for the literature prior.') if model_path else find_model(PRIOR_FILE)
    return StressModel.load(path)


@dataclass(frozen=True)
class FeatureSettings:
    blink_threshold: float = 0.15   # eyeBlink above its window median by this much = eyes closing


def window_features(times: np.ndarray, coefficients: np.ndarray, angles: np.ndarray, names: tuple[str, ...],
                    settings: FeatureSettings = FeatureSettings()) -> dict[str, float]:
    """Features of one window: times (T,) s, coefficients (T, n), head angles (T, 3) radians (NaN if unknown)."""
    index = {name: k for k, name in enumerate(names)}
    features: dict[str, float] = {}
    duration = max(float(times[-1] - times[0]), 1e-6)
    centred = times - times.mean()
    spread = float(centred @ centred)
    statistics = {'mean': coefficients.mean(axis=0), 'std': coefficients.std(axis=0),
                  'range': np.ptp(coefficients, axis=0),   # least-squares slope of every column at once
                  'slope': centred @ (coefficients - coefficients.mean(axis=0)) / spread if spread > 0
                  else np.zeros(len(names))}
    for statistic, values in statistics.items():
        features.update({f'{name}_{statistic}': float(values[k]) for name, k in index.items()})
    blink = _mean_of(coefficients, index, ('eyeBlink_L', 'eyeBlink_R'))
    events = _events(blink - np.median(blink) > settings.blink_threshold) if blink is not None else []
    features['blink_rate'] = 60.0 * len(events) / duration if blink is not None else np.nan
    features['blink_duration'] = float(np.mean([times[end - 1] - times[start] for start, end in events])) \
        if events else 0.0
    valid = np.isfinite(angles).all(axis=1)
    turn = rates_of_change(times[valid], np.unwrap(angles[valid], axis=0)) if valid.any() else np.zeros((0, 3))
    speed = np.degrees(np.linalg.norm(turn, axis=1))
    features['head_speed'] = float(speed.mean()) if speed.size else np.nan
    features['head_speed_std'] = float(speed.std()) if speed.size else np.nan
    mouth = [k for name, k in index.items() if name.startswith(('jaw', 'mouth'))]
    mouth_rates = rates_of_change(times, coefficients[:, mouth])
    features['mouth_activity'] = float(np.abs(mouth_rates).mean()) if mouth_rates.size else np.nan
    brow = _mean_of(coefficients, index, ('browDown_L', 'browDown_R'))
    features['brow_down'] = float(brow.mean()) if brow is not None else np.nan
    return features


def rates_of_change(times: np.ndarray, series: np.ndarray, rate: float = 10.0, smooth: int = 3) -> np.ndarray:
    """Per-second rates of change (G-1, k) of `series` (T, k) resampled on a uniform `rate` grid and
    averaged over `smooth` samples first. Per-frame estimates jitter (head pose from 12 landmarks by
    2-3 degrees frame to frame: differenced per frame that reads as ~80 deg/s on a still head, as
    measured on the clips), and the jitter's rate would grow with the frame rate; this does not."""
    if len(times) < 2 or times[-1] - times[0] < (smooth + 1) / rate or not series.shape[1]:
        return np.zeros((0, series.shape[1]))
    grid = np.arange(times[0], times[-1], 1.0 / rate)
    kernel = np.ones(smooth) / smooth
    smoothed = np.stack([np.convolve(np.interp(grid, times, series[:, k]), kernel, mode='valid')
                         for k in range(series.shape[1])], axis=1)
    return np.diff(smoothed, axis=0) * rate


def sliding_windows(times: np.ndarray, window: float, hop: float, min_fill: float = 0.8):
    """Boolean masks of the full enough windows over a sorted time series (offline use)."""
    for end in np.arange(times[0] + min_fill * window, times[-1] + 1e-9, hop):
        inside = (times > end - window) & (times <= end)
        if inside.sum() >= 3 and times[inside][-1] - times[inside][0] >= min_fill * window - 1e-6:
            yield inside


def _mean_of(coefficients: np.ndarray, index: dict[str, int], names: tuple[str, ...]) -> np.ndarray | None:
    columns = [index[name] for name in names if name in index]
    return coefficients[:, columns].mean(axis=1) if columns else None


def _events(active: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index ranges where `active` is True."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _few(names: list[str], shown: int = 5) -> str:
    """Up to `shown` names, and how many more."""
    more = f' and {len(names) - shown} more' if len(names) > shown else ''
    return ', '.join(names[:shown]) + more


def _check_windowing(window: float, hop: float, min_fill: float, max_rate: float) -> None:
    if window <= 0 or hop <= 0 or not 0 < min_fill <= 1 or max_rate <= 0:
        raise ValueError(f'need window > 0, hop > 0, 0 < min_fill <= 1, max_rate > 0; got window {window}, '
                         f'hop {hop}, min_fill {min_fill}, max_rate {max_rate}')


class PoseHistory:
    """Head poses (roll, pitch, yaw) per face id of the last `frames` frames, found by stamp.

    A frame's FaceArray and ExpressionArray carry the image's stamp, but a re-stamping driver or a
    rounding converter can move one by a millisecond: the nearest stamp within `tolerance` seconds
    is taken (a fraction of a frame, so a neighbouring frame is never taken for it).
    """

    def __init__(self, tolerance: float = 0.02, frames: int = 64) -> None:
        self.tolerance = tolerance
        self._frames: deque[tuple[float, dict[str, tuple[float, float, float]]]] = deque(maxlen=frames)

    def add(self, time: float, poses: dict[str, tuple[float, float, float]]) -> None:
        self._frames.append((time, poses))

    def at(self, time: float) -> dict[str, tuple[float, float, float]]:
        """The poses of the frame stamped nearest `time` within the tolerance ({} if there is none)."""
        nearest = min(self._frames, key=lambda frame: abs(frame[0] - time), default=None)
        return nearest[1] if nearest and abs(nearest[0] - time) <= self.tolerance else {}


@dataclass
class StressEstimate:
    id: str
    probability: float
    window_seconds: float
    num_samples: int


@dataclass
class FrameUpdate:
    estimates: list[StressEstimate]
    reset: bool = False                                # time went backwards: every track restarted
    rejected: list[str] = field(default_factory=list)  # why samples were refused


@dataclass
class _Track:
    samples: deque = field(default_factory=deque)   # (time, coefficients, angles)
    next_report: float = -np.inf


class StressEstimator:
    """Sliding windows per track id, fed one frame at a time.

    A track reports once its samples span at least `min_fill` of the window, then every `hop`
    seconds. Tracks unseen for a whole window are forgotten; time going backwards (a bag replayed
    in a loop) clears every track. At most `max_rate` samples per second are kept per track, so
    memory is bounded whatever the frame rate.
    """

    def __init__(self, model: StressModel, names: tuple[str, ...] = (), window: float = 10.0, hop: float = 1.0,
                 min_fill: float = 0.8, max_rate: float = 60.0, settings: FeatureSettings = FeatureSettings()) -> None:
        _check_windowing(window, hop, min_fill, max_rate)
        self.model, self.names, self.columns = model, (), model.coefficient_names
        self._take = np.zeros(0, int)  # where each of self.columns is in the input's coefficients
        if names:
            self.set_names(names)
        self.window, self.hop, self.min_fill, self.max_rate, self.settings = window, hop, min_fill, max_rate, settings
        self.max_samples = int(np.ceil(window * max_rate))
        self.tracks = TrackStates(_Track, forget_after=window)

    def configure(self, window: float | None = None, hop: float | None = None, min_fill: float | None = None,
                  settings: FeatureSettings | None = None) -> None:
        """Change the windowing or the feature settings at run time. Live windows keep their samples:
        a shorter window drops the oldest at the face's next sample."""
        window = self.window if window is None else window
        hop = self.hop if hop is None else hop
        min_fill = self.min_fill if min_fill is None else min_fill
        _check_windowing(window, hop, min_fill, self.max_rate)
        self.window, self.hop, self.min_fill, self.settings = window, hop, min_fill, settings or self.settings
        self.max_samples = int(np.ceil(window * self.max_rate))
        self.tracks.forget_after = window

    def set_names(self, names: tuple[str, ...] | list[str]) -> bool:
        """Coefficient names of the input (True if they changed). Windows keep only the coefficients
        the model reads, by name: names in another order or with others beside them (a new regressor)
        continue every window. Raises ValueError, changing nothing, if a coefficient the model reads
        is missing."""
        names = tuple(names)
        if names == self.names:
            return False
        missing = [name for name in self.columns if name not in names]
        if missing:
            unknown = [name for name in names if name not in self.names and name not in self.columns]
            raise ValueError(f'expression names lack {_few(missing)}, which stress model {self.model.model_id} '
                             f'reads{f" (unknown names: {_few(unknown)})" if unknown else ""}: publish the '
                             'regressor\'s names, or train a stress model on these (python -m training.train_stress)')
        self.names = names
        self._take = np.array([names.index(name) for name in self.columns], int)
        return True

    def reset(self) -> None:
        self.tracks.clear()

    def update(self, time: float, faces: list[tuple]) -> FrameUpdate:
        """One frame: (id, coefficients (n,), head angles (roll, pitch, yaw) in radians or None[, person
        id]) per face; a face's window is its person's once it is recognised."""
        update = FrameUpdate([], reset=self.tracks.new_frame(time))
        for face_id, coefficients, angles, *person in faces:
            person_id = person[0] if person else ''
            problem = self._add(time, face_id, np.asarray(coefficients, np.float64), angles, person_id)
            if problem:
                update.rejected.append(problem)
                continue
            estimate = self._estimate(face_id, time, person_id)
            if estimate:
                update.estimates.append(estimate)
        return update

    def _add(self, time: float, face_id: str, coefficients: np.ndarray, angles: np.ndarray | None,
             person_id: str = '') -> str | None:
        if coefficients.shape != (len(self.names),):
            return f'{face_id}: expected {len(self.names)} coefficients, got {coefficients.size}'
        if not np.isfinite(coefficients).all():
            return f'{face_id}: coefficients contain NaN or infinity'
        outside = np.flatnonzero((coefficients < SANE_RANGE[0]) | (coefficients > SANE_RANGE[1]))
        if outside.size:
            return (f'{face_id}: coefficients outside [{SANE_RANGE[0]:g}, {SANE_RANGE[1]:g}] '
                    f'({self.names[outside[0]]} = {coefficients[outside[0]]:g}); expression coefficients lie in [0, 1]')
        track = self.tracks.seen_face(face_id, person_id)
        if track.samples and time <= track.samples[-1][0]:
            return None  # a repeated stamp adds nothing
        angles = np.full(3, np.nan) if angles is None else np.asarray(angles, np.float64)
        track.samples.append((time, coefficients[self._take], angles))
        while time - track.samples[0][0] > self.window or len(track.samples) > self.max_samples:
            track.samples.popleft()
        return None

    def _estimate(self, face_id: str, time: float, person_id: str = '') -> StressEstimate | None:
        track = self.tracks.get(person_id or face_id)
        span = time - track.samples[0][0]
        if span < self.min_fill * self.window or time < track.next_report or len(track.samples) < 3:
            return None
        track.next_report = time + self.hop
        times = np.array([sample[0] for sample in track.samples])
        features = window_features(times, np.array([sample[1] for sample in track.samples]),
                                   np.array([sample[2] for sample in track.samples]), self.columns, self.settings)
        return StressEstimate(face_id, self.model.probability(features), float(span), len(track.samples))
