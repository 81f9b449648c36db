"""expression_node's work on one frame's faces: which faces are read, the regressor on their crops
as one batch, per-track calibration, and, on demand, action units and 3D face motion.

`ExpressionStage.process(stamp, faces)` takes the faces of one frame as plain arrays and returns
their raw and calibrated coefficients, plus a line for each face that could not be read fully
(the others of its frame are not affected).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fer3d_ros.core.affect.emotion import EmotionClassifier, default_classifier
from fer3d_ros.core.expression.action_units import ActionUnitFilter, ActionUnitReader, Reading, shipped_presence
from fer3d_ros.core.expression.calibration import CalibrationSettings, Calibrator
from fer3d_ros.core.expression.motion import FaceMotion as Motion
from fer3d_ros.core.expression.motion import HeadPose, MotionTracker, load_motion_model
from fer3d_ros.core.expression.regressor import ExpressionRegressor, default_regressor
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera, rotation_from_euler
from fer3d_ros.core.inference.backends import BACKEND_KINDS
from fer3d_ros.core.settings import check, group, setting

# Calibration is kept for at most this many tracks per max_faces (the least recently seen dropped):
# a crowd whose faces flicker around the limit, or a flood of new ids, cannot grow memory unbounded.
CALIBRATED_TRACKS_PER_FACE = 2


@dataclass(frozen=True)
class ActionUnitSettings:
    min_confidence: float = setting(
        0.5, "Calibration confidence from which a face's action units are present or not relative to its "
        "person's neutral (FaceActionUnits.calibrated), as emotion_node's calibration.min_confidence does for the "
        'emotion; before it, from the raw coefficients.', minimum=0.0, maximum=1.0, dynamic=True)
    time_constant: float = setting(0.1, "Seconds over which each face's AU intensities are averaged (exponentially, by "
                                   'stamp time; about 3 frames at 30 fps); 0 = this frame only.', minimum=0.0,
                                   maximum=10.0, dynamic=True)
    hysteresis: float = setting(0.1, 'A present AU stays present until its probability falls this far below its '
                                'threshold; 0 = the threshold alone.', minimum=0.0, maximum=1.0, dynamic=True)


@dataclass(frozen=True)
class ExpressionSettings:
    """expression_node's settings, as its parameters name them."""
    model: str = setting('', 'DeepExp3D ONNX model (with its .json card beside it); empty = the shipped '
                         'models/deepexp3d_mnv2_96.onnx.')
    backend: str = setting('auto', 'auto (TensorRT when available, else ONNX Runtime), tensorrt or onnxruntime.',
                           choices=BACKEND_KINDS)
    engine: str = setting('', 'Prebuilt TensorRT engine; empty = the cache path keyed by GPU, TensorRT version and '
                          'precision.')
    threads: int = setting(1, 'ONNX Runtime threads.', minimum=1, maximum=64)
    allow_engine_build: bool = setting(False, 'Build a missing TensorRT engine at start (minutes) instead of failing.')
    max_batch: int = setting(16, 'Most faces per inference call.', minimum=1, maximum=256)
    only_confirmed: bool = setting(False, 'Skip faces whose track is not confirmed yet (Face.confirmed).',
                                   dynamic=True)
    max_faces: int = setting(32, 'Most faces of a FaceArray that are processed; beyond it the largest boxes are '
                             'kept. Each face costs inference and calibration time (~15 ms on a CPU) and '
                             'calibration memory, so one crowded or malformed frame cannot stall the node.',
                             minimum=1, maximum=1000, dynamic=True)
    action_units: ActionUnitSettings = group(ActionUnitSettings)
    calibration: CalibrationSettings = group(CalibrationSettings)


@dataclass(frozen=True)
class FaceInput:
    """One face of a frame, as face_node describes it."""
    id: str
    confirmed: bool
    area: float                  # box area in pixels (the largest faces are kept beyond max_faces)
    crop: np.ndarray | None      # the aligned bgr8 crop; None: it could not be read (said in `problem`)
    landmarks: np.ndarray        # (68, 2) pixels (or flat)
    angles: tuple[float, float, float]  # roll, pitch, yaw (rad)
    scale: float = 0.0           # face_node's head pose: pixels per cm and image translation
    translation: tuple[float, float] = (0.0, 0.0)
    problem: str = ''            # why the crop is missing
    person_id: str = ''          # who the face is, '' until recognised: the calibration is then the person's


@dataclass
class ExpressionFrame:
    """The faces of one frame that were read, in their order."""
    stamp: float                                        # seconds
    faces: list[FaceInput]
    coefficients: np.ndarray                            # (N, n) in [0, 1]
    calibrated: list[np.ndarray | None]                 # per face: in [-1, 1], None until calibrated
    confidence: np.ndarray                              # (N,) calibration confidence
    problems: list[str] = field(default_factory=list)   # one line per face not read fully
    dropped: int = 0                                    # faces beyond max_faces
    restarted: bool = False                             # time jumped back: every track's state restarted


class ExpressionStage:
    """The regressor, the calibrator and the readers of action units and motion, on one frame at a time."""

    def __init__(self, settings: ExpressionSettings | None = None,
                 regressor: ExpressionRegressor | None = None) -> None:
        self.settings = settings = check(settings or ExpressionSettings())
        self.regressor = regressor or default_regressor(
            settings.model or None, backend=settings.backend, engine_path=settings.engine or None,
            threads=settings.threads, allow_engine_build=settings.allow_engine_build, max_batch=settings.max_batch)
        names = self.regressor.card.expression_names
        self.calibrator = Calibrator(len(names), settings.calibration,
                                     max_tracks=CALIBRATED_TRACKS_PER_FACE * settings.max_faces) \
            if settings.calibration.enabled else None
        model_id = self.regressor.card.model_id
        self.action_units = ActionUnitReader(names, shipped_presence(model_id), shipped_presence(model_id, True))
        self.action_unit_filter = ActionUnitFilter(settings.action_units.time_constant,
                                                   settings.action_units.hysteresis, settings.calibration.forget_after)
        self._neutral_classifier: EmotionClassifier | None = None  # made when the neutral gate is first on
        self._load_neutral_gate(settings)
        self.motion = MotionTracker()
        self.motion_vertices = load_motion_model()[1].astype(np.uint32)  # the same for every face

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.regressor.card.expression_names)

    def apply(self, settings: ExpressionSettings) -> None:
        """Take new values of the dynamic settings."""
        settings = check(settings)
        self._load_neutral_gate(settings)
        if self.calibrator is not None:
            calibration = settings.calibration
            self.calibrator.configure(max_activity_mm=calibration.max_activity_mm,
                                      max_angle_deg=calibration.max_angle_deg,
                                      frames_for_confidence=calibration.frames_for_confidence,
                                      forget_after=calibration.forget_after,
                                      min_neutral_probability=calibration.min_neutral_probability,
                                      min_neutral_seconds=calibration.min_neutral_seconds)
            self.calibrator.tracks.max_states = CALIBRATED_TRACKS_PER_FACE * settings.max_faces
        au_filter = self.action_unit_filter
        au_filter.time_constant = settings.action_units.time_constant
        au_filter.hysteresis = settings.action_units.hysteresis
        au_filter.tracks.forget_after = settings.calibration.forget_after
        self.settings = settings

    def select(self, faces: list[FaceInput]) -> tuple[list[FaceInput], int]:
        """The faces to read (confirmed ones only if asked; the max_faces largest, in their order) and
        how many were dropped for max_faces."""
        faces = [face for face in faces if face.confirmed or not self.settings.only_confirmed]
        limit = self.settings.max_faces
        if len(faces) <= limit:
            return faces, 0
        areas = np.nan_to_num([face.area for face in faces], nan=0.0)
        kept = np.sort(np.argsort(-areas, kind='stable')[:limit])
        return [faces[k] for k in kept], len(faces) - limit

    def process(self, stamp: float, faces: list[FaceInput]) -> ExpressionFrame:
        """One frame's faces (stamp in seconds): coefficients, and calibration where a track has one."""
        faces, dropped = self.select(faces)
        problems = [f'face {face.id}: {face.problem}; skipped' for face in faces if face.crop is None]
        faces = [face for face in faces if face.crop is not None]
        frame = self.calibrate(stamp, faces, self.regressor.predict([face.crop for face in faces]))
        frame.problems[:0] = problems
        frame.dropped = dropped
        return frame

    def calibrate(self, stamp: float, faces: list[FaceInput], coefficients: np.ndarray) -> ExpressionFrame:
        """The frame of faces whose coefficients are read (by `process`, or offline from a recording):
        each face's track or person calibrated."""
        calibrated: list[np.ndarray | None] = [None] * len(faces)
        confidence = np.zeros(len(faces), np.float32)
        problems: list[str] = []
        restarted = False
        if self.calibrator is not None:
            restarted = self.calibrator.new_frame(stamp)
            neutral = self.neutral_probabilities(coefficients)
            for index, face in enumerate(faces):
                try:
                    result = self.calibrator.update(face.id, face.landmarks, coefficients[index], face.angles,
                                                    face.person_id, neutral[index])
                except ValueError as error:  # this face stays uncalibrated; the others go on
                    problems.append(f'face {face.id}: {error}; published uncalibrated')
                    continue
                calibrated[index], confidence[index] = result.coefficients, result.confidence
        return ExpressionFrame(stamp, faces, coefficients, calibrated, confidence, problems, restarted=restarted)

    def _load_neutral_gate(self, settings: ExpressionSettings) -> None:
        """The shipped raw emotion classifier, once calibration.min_neutral_probability is first on;
        ValueError (the setting refused) where it does not read this regressor's coefficients."""
        if settings.calibration.min_neutral_probability <= 0.0 or self._neutral_classifier is not None:
            return
        classifier = default_classifier(features='raw')
        try:
            classifier.check_names(self.names)
        except ValueError as error:
            raise ValueError(f'calibration.min_neutral_probability reads the shipped emotion classifier, which does '
                             f"not take this regressor's coefficients ({error}): set it to 0") from None
        self._neutral_classifier = classifier

    def neutral_probabilities(self, coefficients: np.ndarray) -> list[float | None]:
        """Per face, the shipped raw emotion classifier's probability of neutral, which gates the
        calibration's neutral evidence (None for every face while the gate is off)."""
        if self.settings.calibration.min_neutral_probability <= 0.0 or not len(coefficients):
            return [None] * len(coefficients)
        classifier = self._neutral_classifier
        return list(classifier.predict_proba(coefficients)[:, classifier.classes.index('neutral')])

    def read_action_units(self, frame: ExpressionFrame) -> Reading:
        """The action units of every face: intensities from its raw and calibrated coefficients, presence
        relative to its person's neutral once the calibration is confident (else from the raw ones),
        through each face's past (core.expression.action_units.ActionUnitFilter)."""
        calibrated = np.full(frame.coefficients.shape, np.nan)
        for row, values in enumerate(frame.calibrated):
            if values is not None:
                calibrated[row] = values
        relative = frame.confidence >= self.settings.action_units.min_confidence
        reading = self.action_units.read(frame.coefficients, calibrated, relative)
        return self.action_unit_filter.update(frame.stamp, [face.id for face in frame.faces],
                                              [face.person_id for face in frame.faces], reading)

    def face_motion(self, stamp: float, frame: ExpressionFrame, width: int,
                    height: int) -> tuple[list[tuple[FaceInput, Motion, HeadPose]], bool]:
        """Each face's 3D motion since its previous frame (faces on their first frame left out), and
        whether time jumped back (every track's motion restarted)."""
        restarted = self.motion.new_frame(stamp)
        moved = []
        for face, coefficients in zip(frame.faces, frame.coefficients):
            person = self.calibrator.person(face.person_id or face.id) if self.calibrator is not None else None
            if person is None:  # no calibration: the mean identity and face_node's head pose
                identity = None
                camera = ScaledOrthographicCamera(face.scale, rotation_from_euler(*face.angles),
                                                  np.array(face.translation, np.float64))
            else:
                identity, camera = person
            pose = HeadPose.seen_by(camera, width, height)
            motion = self.motion.update(face.id, identity, coefficients, pose)
            if motion is not None:
                moved.append((face, motion, pose))
        return moved, restarted

    def forget_person(self, person_id: str) -> None:
        """Drop a forgotten person's calibration and action unit state."""
        self.action_unit_filter.tracks.forget(person_id)
        if self.calibrator is not None:
            self.calibrator.tracks.forget(person_id)

    def reset_calibration(self) -> int:
        """Drop every track's calibration; returns how many tracks had one (-1: calibration is off)."""
        if self.calibrator is None:
            return -1
        dropped = len(self.calibrator)
        self.calibrator.reset()
        return dropped
