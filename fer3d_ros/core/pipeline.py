"""The graph's work on one frame in one process, without ROS: face_node's, expression_node's,
emotion_node's and stress_node's stages in data-flow order, with the nodes' defaults unless told
otherwise, and the time each stage took. What `make bench` and the offline tools run, so that
they measure what a robot runs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fer3d_ros.core.affect.stage import (
    EmotionFrame,
    EmotionSettings,
    EmotionStage,
    FaceExpression,
    StressFrame,
    StressSettings,
    StressStage,
)
from fer3d_ros.core.expression.stage import ExpressionFrame, ExpressionSettings, ExpressionStage, FaceInput
from fer3d_ros.core.frontend.front_end import FaceFrontEnd, FaceObservation, FrontEndSettings
from fer3d_ros.core.frontend.stage import FaceStage
from fer3d_ros.core.settings import group

STAGES = ('front end', 'expression', 'emotion', 'stress')


@dataclass(frozen=True)
class PipelineSettings:
    """Every stage's settings, each group as its node names them."""
    face: FrontEndSettings = group(FrontEndSettings)
    expression: ExpressionSettings = group(ExpressionSettings)
    emotion: EmotionSettings = group(EmotionSettings)
    stress: StressSettings = group(StressSettings)


@dataclass
class PipelineFrame:
    faces: list[FaceObservation]
    expressions: ExpressionFrame
    emotions: EmotionFrame
    stress: StressFrame
    seconds: dict[str, float] = field(default_factory=dict)  # per stage (STAGES and the front end's)


def face_input(face: FaceObservation) -> FaceInput:
    """A front end's face as expression_node reads it from a FaceArray."""
    box = face.box
    return FaceInput(face.id, face.confirmed, float((box[2] - box[0]) * (box[3] - box[1])), face.crop,
                     face.landmarks, face.pose.euler(), face.pose.scale,
                     (float(face.pose.translation[0]), float(face.pose.translation[1])),
                     '' if face.crop is not None else 'no aligned crop (set face_node publish_crops to true)',
                     face.person_id)


class FacePipeline:
    def __init__(self, settings: PipelineSettings | None = None, models_of: FacePipeline | None = None) -> None:
        """`models_of`: a pipeline (with the same model settings) whose loaded detector, landmarker,
        template and regressor this one uses, instead of loading its own (~0.5 s); its state (tracks,
        people, calibration, windows) is this one's own. Keep `models_of` open while this one runs."""
        self.settings = settings = settings or PipelineSettings()
        front_end = None if models_of is None else FaceFrontEnd(
            settings.face, detector=models_of.front_end.detector, landmarker=models_of.front_end.landmarker,
            template=models_of.front_end.template)
        self.face = FaceStage(settings.face, front_end=front_end)
        self.front_end = self.face.front_end
        self.expression = ExpressionStage(settings.expression,
                                          regressor=models_of.expression.regressor if models_of else None)
        self.emotion = EmotionStage(settings.emotion)
        self.stress = StressStage(settings.stress)
        self.stress.set_names(self.expression.names)

    def process(self, image: np.ndarray, stamp: float) -> PipelineFrame:
        """One BGR frame stamped `stamp` seconds: what the four nodes would publish for it."""
        start = time.perf_counter()
        front = self.face.process(image, stamp)
        seconds = {**front.seconds, 'front end': time.perf_counter() - start}
        start = time.perf_counter()
        expressions = self.expression.process(stamp, [face_input(face) for face in front.faces])
        seconds['expression'], start = time.perf_counter() - start, time.perf_counter()
        emotions = self.emotion.process(stamp, self.expression.names, [
            FaceExpression(face.id, values, calibrated, float(confidence), face.person_id)
            for face, values, calibrated, confidence
            in zip(expressions.faces, expressions.coefficients, expressions.calibrated, expressions.confidence)])
        seconds['emotion'], start = time.perf_counter() - start, time.perf_counter()
        self.stress.add_poses(stamp, {face.id: face.pose.euler() for face in front.faces})
        stress = self.stress.process(stamp, [(face.id, values, face.person_id) for face, values
                                             in zip(expressions.faces, expressions.coefficients)])
        for person_id in self.face.people.take_forgotten() if self.face.people else []:
            for stage in (self.expression, self.emotion, self.stress):
                stage.forget_person(person_id)
        seconds['stress'] = time.perf_counter() - start
        return PipelineFrame(front.faces, expressions, emotions, stress, seconds)

    def close(self) -> None:
        self.face.close()
