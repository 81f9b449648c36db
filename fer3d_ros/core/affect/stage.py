"""emotion_node's and stress_node's work on one frame's expressions.

`EmotionStage.process` classifies each face from its calibrated coefficients once its calibration
is confident (else from its raw ones), and through each face's temporal model (core.affect.temporal:
the mouth read through speech, probabilities averaged, the label held);
`StressStage.process` adds each face's sample to its window and estimates once per hop. Both take
plain arrays and say, one line per face, what they could not use.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fer3d_ros.core.affect.emotion import CALIBRATED_MODEL_FILE, default_classifier
from fer3d_ros.core.affect.stress import (
    FeatureSettings,
    PoseHistory,
    StressEstimate,
    StressEstimator,
    default_stress_model,
)
from fer3d_ros.core.affect.temporal import EmotionFilter
from fer3d_ros.core.settings import check, group, setting


@dataclass(frozen=True)
class EmotionCalibrationSettings:
    enabled: bool = setting(True, 'Classify calibrated faces with the calibrated classifier.')
    min_confidence: float = setting(0.5, 'Calibration confidence from which a face is classified from its '
                                    'calibrated coefficients (0.5: about 21 neutral frames).', minimum=0.0,
                                    maximum=1.0, dynamic=True)
    weight: float = setting(0.5, "Weight of the calibrated classifier's probabilities, averaged with the raw "
                            "classifier's, for a calibrated face (1 = calibrated only): a baseline that took a held "
                            'expression for the rest is outvoted where the raw view is clear; chosen on CK+ '
                            '(training.eval_people).', minimum=0.0, maximum=1.0, dynamic=True)


@dataclass(frozen=True)
class SmoothingSettings:
    """The temporal model of each face (core.affect.temporal); chosen on validation clips
    (training.eval_temporal)."""
    time_constant: float = setting(0.4, "Seconds over which each face's probabilities are averaged (exponentially, "
                                   'by stamp time); 0 = this frame only.', minimum=0.0, maximum=60.0, dynamic=True)
    switch_margin: float = setting(0.4, "By how much another class's averaged probability must exceed the current "
                                   "label's for the label to change (hysteresis); 0 = the most probable class.",
                                   minimum=0.0, maximum=1.0, dynamic=True)
    speech_window: float = setting(0.5, 'Seconds over which the mouth-opening coefficients (jawOpen, mouthClose, '
                                   'mouthLowerDown, mouthStretch) are read as their least value, so that the '
                                   'syllables of speech are not surprise or fear; 0 = read each frame as it is.',
                                   minimum=0.0, maximum=5.0, dynamic=True)
    forget_after: float = setting(2.0, 'Seconds after which a face that left the view is forgotten (a recognised '
                                  "person's state stays until face_node forgets them).", minimum=0.01,
                                  maximum=3600.0, dynamic=True)


@dataclass(frozen=True)
class EmotionSettings:
    """emotion_node's settings, as its parameters name them."""
    model: str = setting('', 'Emotion classifier on raw coefficients (.npz from training/train_emotion.py); empty = '
                         'the shipped models/emotion_classifier.npz.')
    calibrated_model: str = setting('', 'Emotion classifier on calibrated coefficients (train_emotion --features '
                                    f'calibrated); empty = the shipped models/{CALIBRATED_MODEL_FILE}.')
    calibration: EmotionCalibrationSettings = group(EmotionCalibrationSettings)
    smoothing: SmoothingSettings = group(SmoothingSettings)


@dataclass(frozen=True)
class FaceExpression:
    """One face's coefficients as expression_node publishes them."""
    id: str
    coefficients: np.ndarray
    calibrated: np.ndarray | None = None  # None (or empty) until the face's track is calibrated
    calibration_confidence: float = 0.0
    person_id: str = ''                   # who the face is ('' until recognised): state is then the person's


@dataclass
class EmotionFrame:
    ids: list[str]
    person_ids: list[str]
    probabilities: np.ndarray                          # (N, C) averaged over time, in the order of `classes`
    labels: np.ndarray                                 # (N,) held label (index into `classes`)
    frame_probabilities: np.ndarray                    # (N, C) this frame alone, no temporal model
    calibrated: np.ndarray                             # (N,) bool: classified from calibrated coefficients
    problems: list[str] = field(default_factory=list)  # one line per face skipped
    restarted: bool = False                            # time jumped back: every face's temporal state restarted


class EmotionStage:
    def __init__(self, settings: EmotionSettings | None = None) -> None:
        self.settings = settings = check(settings or EmotionSettings())
        self.classifier = default_classifier(settings.model or None, features='raw')
        self.calibrated_classifier = default_classifier(settings.calibrated_model or None, features='calibrated') \
            if settings.calibration.enabled else None
        smoothing = settings.smoothing
        self.filter = EmotionFilter(self.classifier.model.feature_names, smoothing.time_constant,
                                    smoothing.switch_margin, smoothing.speech_window, smoothing.forget_after)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.classifier.classes

    def apply(self, settings: EmotionSettings) -> None:
        self.settings = settings = check(settings)
        smoothing = settings.smoothing
        self.filter.configure(smoothing.time_constant, smoothing.switch_margin, smoothing.speech_window)
        self.filter.tracks.forget_after = smoothing.forget_after

    def forget_person(self, person_id: str) -> None:
        self.filter.tracks.forget(person_id)

    def check_names(self, names: tuple[str, ...] | list[str]) -> None:
        """ValueError if the coefficients are not the ones the classifiers were trained on."""
        self.classifier.check_names(names)
        if self.calibrated_classifier:
            self.calibrated_classifier.check_names(names)

    def uses_calibrated(self, face: FaceExpression, count: int) -> bool:
        """Whether a face is classified from its calibrated coefficients (a malformed calibration: raw)."""
        calibrated = face.calibrated if face.calibrated is not None else ()
        return (self.calibrated_classifier is not None and face.calibration_confidence >= self.settings.calibration
                .min_confidence and len(calibrated) == count and bool(np.isfinite(calibrated).all()))

    def classify(self, raw: np.ndarray, calibrated: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(N, C): the raw classifier on every face, averaged with the calibrated one on `rows` (their
        calibrated coefficients, in order) by calibration.weight."""
        probabilities = self.classifier.predict_proba(raw) if len(raw) else np.zeros((0, len(self.classes)))
        if len(rows):
            weight = self.settings.calibration.weight
            probabilities[rows] = ((1.0 - weight) * probabilities[rows]
                                   + weight * self.calibrated_classifier.predict_proba(calibrated))
        return probabilities

    def process(self, stamp: float, names: tuple[str, ...] | list[str], faces: list[FaceExpression]) -> EmotionFrame:
        self.check_names(names)
        checked = [(face, coefficient_problem(face, len(names))) for face in faces]
        usable = [face for face, problem in checked if not problem]
        calibrated = np.array([self.uses_calibrated(face, len(names)) for face in usable], bool)
        rows = np.flatnonzero(calibrated)
        restarted = self.filter.new_frame(stamp)
        states = [self.filter.state(face.id, face.person_id) for face in usable]
        raw = np.array([face.coefficients for face in usable], np.float64).reshape(len(usable), len(names))
        relative = np.array([usable[k].calibrated for k in rows], np.float64).reshape(len(rows), len(names))
        frame_probabilities = self.classify(raw, relative, rows)
        # the temporal model reads the mouth through its envelope, kept apart for raw and calibrated
        read_raw = np.array([self.filter.mouth_envelope(state, stamp, 'raw', values)
                             for state, values in zip(states, raw)]).reshape(raw.shape)
        read_relative = np.array([self.filter.mouth_envelope(states[k], stamp, 'calibrated', values)
                                  for k, values in zip(rows, relative)]).reshape(relative.shape)
        probabilities = frame_probabilities if np.array_equal(read_raw, raw) and np.array_equal(
            read_relative, relative) else self.classify(read_raw, read_relative, rows)
        averaged, labels = np.zeros_like(probabilities), np.zeros(len(usable), int)
        for row, state in enumerate(states):
            averaged[row], labels[row] = self.filter.update(state, stamp, probabilities[row], bool(calibrated[row]))
        return EmotionFrame([face.id for face in usable], [face.person_id for face in usable], averaged, labels,
                            frame_probabilities, calibrated, [problem for _, problem in checked if problem],
                            restarted)


def coefficient_problem(face: FaceExpression, count: int) -> str:
    """What makes one face's coefficients unusable ('' if nothing): that face is skipped, not the others."""
    values = np.asarray(face.coefficients)
    problem = (f'{len(values)} coefficients for {count} names' if len(values) != count
               else 'NaN or infinite coefficients' if not np.isfinite(values).all() else '')
    return f'{face.id!r}: {problem}' if problem else ''


@dataclass(frozen=True)
class StressSettings:
    """stress_node's settings, as its parameters name them."""
    model: str = setting('', 'Stress model (.json from training/train_stress.py); empty = the literature prior '
                         'models/stress_prior.json.')
    window: float = setting(10.0, 'Window length in seconds.', minimum=1.0, maximum=600.0, dynamic=True)
    hop: float = setting(1.0, 'Seconds between two estimates of a face.', minimum=0.01, maximum=600.0, dynamic=True)
    min_fill: float = setting(0.8, 'Fraction of the window a face must have been seen over before its first '
                              'estimate.', minimum=0.05, maximum=1.0, dynamic=True)
    blink_threshold: float = setting(0.15, 'eyeBlink rise above its window median that counts as a blink.',
                                     minimum=0.01, maximum=1.0, dynamic=True)
    pose_tolerance: float = setting(0.02, "Seconds by which the stamp of a FaceArray may differ from its "
                                    "ExpressionArray's and still give its faces' head pose (the nearest stamp is "
                                    'taken).', minimum=0.0, maximum=1.0, dynamic=True)


@dataclass
class StressFrame:
    estimates: list[StressEstimate]
    without_pose: list[str]                            # faces scored without head movement
    problems: list[str] = field(default_factory=list)  # samples refused
    restarted: bool = False


class StressStage:
    def __init__(self, settings: StressSettings | None = None) -> None:
        self.settings = settings = check(settings or StressSettings())
        self.model = default_stress_model(settings.model or None)
        self.estimator = StressEstimator(self.model, window=settings.window, hop=settings.hop,
                                         min_fill=settings.min_fill,
                                         settings=FeatureSettings(blink_threshold=settings.blink_threshold))
        self.poses = PoseHistory(settings.pose_tolerance)

    def apply(self, settings: StressSettings) -> None:
        settings = check(settings)
        self.estimator.configure(window=settings.window, hop=settings.hop, min_fill=settings.min_fill,
                                 settings=replace(self.estimator.settings, blink_threshold=settings.blink_threshold))
        self.poses.tolerance = settings.pose_tolerance
        self.settings = settings

    def add_poses(self, stamp: float, poses: dict[str, tuple[float, float, float]]) -> None:
        """One frame's head poses (roll, pitch, yaw) by face id, from face_node."""
        self.poses.add(stamp, poses)

    def set_names(self, names: tuple[str, ...] | list[str]) -> bool:
        return self.estimator.set_names(names)

    def process(self, stamp: float, faces: list[tuple]) -> StressFrame:
        """One frame's (id, coefficients[, person id]): the estimates due at this frame."""
        poses = self.poses.at(stamp)
        update = self.estimator.update(stamp, [(face_id, np.asarray(values), poses.get(face_id), *person)
                                               for face_id, values, *person in faces])
        return StressFrame(update.estimates, [face[0] for face in faces if face[0] not in poses],
                           update.rejected, update.reset)

    def forget_person(self, person_id: str) -> None:
        self.estimator.tracks.forget(person_id)
