"""Conversions between the stages' plain results and fer3d_ros's messages, one function per message."""
from __future__ import annotations

import numpy as np

from fer3d_ros.core.affect.stage import EmotionFrame, FaceExpression
from fer3d_ros.core.affect.stress import StressEstimate
from fer3d_ros.core.expression.action_units import ActionUnit as Unit
from fer3d_ros.core.expression.action_units import Reading
from fer3d_ros.core.expression.motion import MM_PER_CM
from fer3d_ros.core.expression.stage import ExpressionFrame, FaceInput
from fer3d_ros.core.frontend.front_end import FaceObservation
from fer3d_ros.core.image_conversion import ImageConversionError, message_to_bgr8, numpy_to_image
from fer3d_ros.msg import (
    ActionUnit,
    ActionUnitArray,
    Emotion,
    EmotionArray,
    Expression,
    ExpressionArray,
    Face,
    FaceActionUnits,
    FaceMotion,
    FaceMotionArray,
    Stress,
    StressArray,
)


def face_message(face: FaceObservation, header) -> Face:
    roll, pitch, yaw = face.pose.euler()
    x0, y0, x1, y1 = (float(v) for v in face.box)
    msg = Face(id=face.id, person_id=face.person_id, person_confidence=face.person_confidence,
               confirmed=face.confirmed, confidence=face.score, x=x0, y=y0, width=x1 - x0, height=y1 - y0,
               landmarks=face.landmarks.astype(np.float32).ravel(), roll=roll, pitch=pitch, yaw=yaw,
               scale=face.pose.scale, tx=float(face.pose.translation[0]), ty=float(face.pose.translation[1]),
               alignment=face.alignment.astype(np.float32).ravel())
    if face.crop is not None:
        msg.crop = numpy_to_image(face.crop, 'bgr8', header)
    return msg


def face_input(face: Face) -> FaceInput:
    """A Face as expression_node's stage reads it; a crop that cannot be read is said, not fatal."""
    crop, problem = None, ''
    try:
        if face.crop.width == 0 or face.crop.height == 0:
            raise ImageConversionError('no aligned crop (set face_node publish_crops to true)')
        crop = message_to_bgr8(face.crop)
    except ImageConversionError as error:
        problem = str(error)
    return FaceInput(face.id, face.confirmed, face.width * face.height, crop, np.asarray(face.landmarks),
                     (face.roll, face.pitch, face.yaw), face.scale, (face.tx, face.ty), problem, face.person_id)


def expression_array(header, model_id: str, names, frame: ExpressionFrame) -> ExpressionArray:
    return ExpressionArray(header=header, model_id=model_id, names=list(names), expressions=[
        Expression(id=face.id, person_id=face.person_id, confirmed=face.confirmed, coefficients=values,
                   calibrated=calibrated if calibrated is not None else [],
                   calibration_confidence=float(confidence) if calibrated is not None else 0.0)
        for face, values, calibrated, confidence in zip(frame.faces, frame.coefficients, frame.calibrated,
                                                        frame.confidence)])


def face_expressions(msg: ExpressionArray) -> list[FaceExpression]:
    return [FaceExpression(e.id, np.asarray(e.coefficients), np.asarray(e.calibrated), e.calibration_confidence,
                           e.person_id) for e in msg.expressions]


def action_unit_array(header, model_id: str, units: tuple[Unit, ...], frame: ExpressionFrame,
                      reading: Reading) -> ActionUnitArray:
    return ActionUnitArray(header=header, model_id=model_id, faces=[
        FaceActionUnits(id=face.id, person_id=face.person_id, calibrated=bool(reading.relative[row]), action_units=[
            ActionUnit(number=au.number, name=au.name, intensity=float(reading.intensities[row, k]),
                       calibrated_intensity=float(reading.calibrated_intensities[row, k]),
                       probability=float(reading.probabilities[row, k]), present=bool(reading.present[row, k]),
                       level=reading.levels[row][k])
            for k, au in enumerate(units)])
        for row, face in enumerate(frame.faces)])


def face_motion_array(header, vertices: np.ndarray, moved: list) -> FaceMotionArray:
    """From (face, motion, pose) of each face that moved since its previous frame."""
    return FaceMotionArray(header=header, vertices=vertices, faces=[
        FaceMotion(id=face.id, positions=motion.positions.astype(np.float32).ravel(),
                   pixels_per_mm=pose.scale / MM_PER_CM, rigid=motion.rigid.astype(np.float32).ravel(),
                   nonrigid=motion.nonrigid.astype(np.float32).ravel())
        for face, motion, pose in moved])


def emotion_array(header, model_id: str, classes: tuple[str, ...], frame: EmotionFrame) -> EmotionArray:
    return EmotionArray(header=header, model_id=model_id, labels=list(classes), emotions=[
        Emotion(id=face_id, person_id=person_id, label=classes[label], confidence=float(p[label]),
                probabilities=p.astype(np.float32), frame_label=classes[int(now.argmax())],
                frame_probabilities=now.astype(np.float32), calibrated=bool(c))
        for face_id, person_id, p, label, now, c in zip(frame.ids, frame.person_ids, frame.probabilities,
                                                        frame.labels, frame.frame_probabilities, frame.calibrated)])


def stress_array(header, model_id: str, estimates: list[StressEstimate], person_of: dict[str, str]) -> StressArray:
    return StressArray(header=header, model_id=model_id, stresses=[
        Stress(id=s.id, person_id=person_of.get(s.id, ''), probability=s.probability,
               label=Stress.STRESSED if s.probability >= 0.5 else Stress.NOT_STRESSED,
               window_seconds=s.window_seconds, num_samples=s.num_samples) for s in estimates])
