"""expression_node: faces (FaceArray with aligned crops) -> expressions (ExpressionArray), and on
demand action units and 3D face motion (core.expression.stage does the work).

`~/reset_calibration` (std_srvs/Trigger) starts every track's calibration again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from std_srvs.srv import Trigger

from fer3d_ros.core.expression.motion import MM_PER_CM
from fer3d_ros.core.expression.stage import ExpressionFrame, ExpressionSettings, ExpressionStage, FaceInput
from fer3d_ros.core.image_conversion import ImageConversionError, message_to_bgr8
from fer3d_ros.core.settings import setting
from fer3d_ros.msg import (
    ActionUnit,
    ActionUnitArray,
    Expression,
    ExpressionArray,
    FaceActionUnits,
    FaceArray,
    FaceMotion,
    FaceMotionArray,
)
from fer3d_ros.nodes.common import RELIABLE_QOS, NodeSettings, StageNode, guarded, report_problems, run_node
from fer3d_ros.nodes.image_input import FrameAccount


@dataclass(frozen=True)
class InputSettings:
    queue_size: int = setting(1, 'FaceArrays waiting while the network runs; older ones are dropped, so the output '
                              'stays current when inference is slower than the camera.', minimum=1, maximum=100)


class ExpressionNode(StageNode):
    settings_class = ExpressionSettings

    def __init__(self, **kwargs) -> None:
        super().__init__('expression_node', **kwargs)
        self.input_settings = NodeSettings(self, InputSettings)
        self.face_arrays = FrameAccount('face_arrays')  # FaceArrays replaced in the queue while busy
        self.start()

    def make_stage(self) -> ExpressionStage:
        return ExpressionStage(self.settings.value)

    def make_outputs(self) -> list:
        self.publisher = self.create_publisher(ExpressionArray, 'expressions', RELIABLE_QOS)
        self.au_publisher = self.create_publisher(ActionUnitArray, 'action_units', RELIABLE_QOS)
        self.motion_publisher = self.create_publisher(FaceMotionArray, 'face_motion', RELIABLE_QOS)
        card = self.stage.regressor.card
        self.get_logger().info(f'ready: {card.model_id} ({card.input_size} px) on {self.stage.regressor.backend.name}')
        return [self.publisher, self.au_publisher, self.motion_publisher,
                self.create_service(Trigger, '~/reset_calibration', self.on_reset_calibration)]

    def make_inputs(self) -> list:
        callback = guarded(self, self.diagnostics, (ImageConversionError, ValueError))(self.on_faces)
        qos = QoSProfile(depth=self.input_settings.value.queue_size, reliability=ReliabilityPolicy.RELIABLE)
        return [self.create_subscription(FaceArray, 'faces', self.face_arrays.counting(callback), qos)]

    def on_reset_calibration(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        dropped = self.stage.reset_calibration() if self.stage is not None else -1
        if dropped < 0:
            response.success, response.message = False, 'calibration is disabled (calibration.enabled: false)'
            return response
        self.get_logger().info(f'calibration reset on request: {dropped} track(s) start again')
        response.success, response.message = True, f'calibration of {dropped} track(s) dropped'
        return response

    @staticmethod
    def face_input(face) -> FaceInput:
        """A Face message as the stage reads it; a crop that cannot be read is said, not fatal."""
        crop, problem = None, ''
        try:
            if face.crop.width == 0 or face.crop.height == 0:
                raise ImageConversionError('no aligned crop (set face_node publish_crops to true)')
            crop = message_to_bgr8(face.crop)
        except ImageConversionError as error:
            problem = str(error)
        return FaceInput(face.id, face.confirmed, face.width * face.height, crop, np.asarray(face.landmarks),
                         (face.roll, face.pitch, face.yaw), face.scale, (face.tx, face.ty), problem)

    def on_faces(self, msg: FaceArray) -> None:
        start = time.perf_counter()
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        frame = self.stage.process(stamp, [self.face_input(face) for face in msg.faces])
        if frame.dropped:
            self.diagnostics.dropped += frame.dropped
            self.get_logger().warning(f'{len(msg.faces)} faces in one frame, more than max_faces '
                                      f'({self.stage.settings.max_faces}): only the largest processed',
                                      throttle_duration_sec=1.0)
        report_problems(self, self.diagnostics, 'faces of one frame', frame.problems)
        if frame.restarted:
            self.get_logger().info('time went backwards (a replayed bag?): calibration of every track restarted')
        expressions = [Expression(id=face.id, coefficients=values,
                                  calibrated=calibrated if calibrated is not None else [],
                                  calibration_confidence=float(confidence) if calibrated is not None else 0.0)
                       for face, values, calibrated, confidence in zip(frame.faces, frame.coefficients,
                                                                        frame.calibrated, frame.confidence)]
        self.publisher.publish(ExpressionArray(header=msg.header, model_id=self.stage.regressor.card.model_id,
                                               names=list(self.stage.names), expressions=expressions))
        if self.au_publisher.get_subscription_count():  # read only while someone listens
            self.au_publisher.publish(self.action_unit_message(msg.header, frame))
        if self.motion_publisher.get_subscription_count():  # large: computed only while someone listens
            self.motion_publisher.publish(self.motion_message(msg, stamp, frame))
        if self.stage.calibrator is not None:
            self.diagnostics.extra['calibrated_tracks'] = str(len(self.stage.calibrator))
        self.diagnostics.extra.update(self.face_arrays.figures(), faces_last_frame=str(len(frame.faces)))
        self.diagnostics.record(time.perf_counter() - start)

    def action_unit_message(self, header, frame: ExpressionFrame) -> ActionUnitArray:
        raw, calibrated = self.stage.read_action_units(frame)
        units = self.stage.action_units.units
        return ActionUnitArray(header=header, model_id=self.stage.regressor.card.model_id, faces=[
            FaceActionUnits(id=face.id, action_units=[
                ActionUnit(number=au.number, name=au.name, intensity=float(raw.intensities[row, k]),
                           calibrated_intensity=float(calibrated[row, k]), probability=float(raw.probabilities[row, k]),
                           present=bool(raw.present[row, k]), level=raw.levels[row][k])
                for k, au in enumerate(units)])
            for row, face in enumerate(frame.faces)])

    def motion_message(self, msg: FaceArray, stamp: float, frame: ExpressionFrame) -> FaceMotionArray:
        moved, restarted = self.stage.face_motion(stamp, frame, msg.image_width, msg.image_height)
        if restarted:
            self.get_logger().info('time went backwards (a replayed bag?): face motion of every track restarted')
        return FaceMotionArray(header=msg.header, vertices=self.stage.motion_vertices, faces=[
            FaceMotion(id=face.id, positions=motion.positions.astype(np.float32).ravel(),
                       pixels_per_mm=pose.scale / MM_PER_CM, rigid=motion.rigid.astype(np.float32).ravel(),
                       nonrigid=motion.nonrigid.astype(np.float32).ravel())
            for face, motion, pose in moved])


def main(args: list[str] | None = None) -> int:
    return run_node(ExpressionNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
