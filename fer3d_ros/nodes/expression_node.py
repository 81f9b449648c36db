"""expression_node: faces (FaceArray with aligned crops) -> expressions (ExpressionArray), and on
demand action units and 3D face motion (core.expression.stage does the work).

`~/reset_calibration` (std_srvs/Trigger) starts every track's calibration again. With `ros4hri`, each
tracked face's REP-155 `facs` too (nodes/ros4hri.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from std_srvs.srv import Trigger

from fer3d_ros.core.expression.stage import ExpressionSettings, ExpressionStage
from fer3d_ros.core.image_conversion import ImageConversionError
from fer3d_ros.core.settings import setting
from fer3d_ros.msg import (
    ActionUnitArray,
    ExpressionArray,
    FaceArray,
    FaceMotionArray,
)
from fer3d_ros.nodes.diagnostics import guarded, report_problems
from fer3d_ros.nodes.image_input import FrameAccount
from fer3d_ros.nodes.messages import action_unit_array, expression_array, face_input, face_motion_array
from fer3d_ros.nodes.process import run_node
from fer3d_ros.nodes.qos import RELIABLE_QOS
from fer3d_ros.nodes.ros4hri import FacsOutput, Ros4hriSettings
from fer3d_ros.nodes.stage_node import StageNode


@dataclass(frozen=True)
class InputSettings:
    queue_size: int = setting(1, 'FaceArrays waiting while the network runs; older ones are dropped, so the output '
                              'stays current when inference is slower than the camera.', minimum=1, maximum=100)


class ExpressionNode(StageNode):
    input_settings_class = InputSettings
    output_settings_class = Ros4hriSettings
    settings_class = ExpressionSettings

    def __init__(self, **kwargs) -> None:
        super().__init__('expression_node', **kwargs)
        self.face_arrays = FrameAccount('face_arrays')  # FaceArrays replaced in the queue while busy
        self.hri: FacsOutput | None = None
        self.start()

    def make_stage(self) -> ExpressionStage:
        return ExpressionStage(self.settings.value)

    def make_outputs(self) -> list:
        self.publisher = self.create_publisher(ExpressionArray, 'expressions', RELIABLE_QOS)
        self.au_publisher = self.create_publisher(ActionUnitArray, 'action_units', RELIABLE_QOS)
        self.motion_publisher = self.create_publisher(FaceMotionArray, 'face_motion', RELIABLE_QOS)
        card = self.stage.regressor.card
        self.get_logger().info(f'ready: {card.model_id} ({card.input_size} px) on {self.stage.regressor.backend.name}')
        self.hri = FacsOutput(self) if self.output_settings.ros4hri else None
        return [self.publisher, self.au_publisher, self.motion_publisher,
                self.create_service(Trigger, '~/reset_calibration', self.on_reset_calibration),
                *([self.hri] if self.hri else [])]

    def make_inputs(self) -> list:
        callback = guarded(self, self.diagnostics, (ImageConversionError, ValueError))(self.on_faces)
        qos = QoSProfile(depth=self.input_settings.value.queue_size, reliability=ReliabilityPolicy.RELIABLE)
        return [self.create_subscription(FaceArray, 'faces', self.face_arrays.counting(callback), qos),
                self.people_forgotten_input()]

    def on_reset_calibration(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        dropped = self.stage.reset_calibration() if self.stage is not None else -1
        if dropped < 0:
            response.success, response.message = False, 'calibration is disabled (calibration.enabled: false)'
            return response
        self.get_logger().info(f'calibration reset on request: {dropped} track(s) start again')
        response.success, response.message = True, f'calibration of {dropped} track(s) dropped'
        return response

    def on_faces(self, msg: FaceArray) -> None:
        start = time.perf_counter()
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        frame = self.stage.process(stamp, [face_input(face) for face in msg.faces])
        if frame.dropped:
            self.diagnostics.dropped += frame.dropped
            self.get_logger().warning(f'{len(msg.faces)} faces in one frame, more than max_faces '
                                      f'({self.stage.settings.max_faces}): only the largest processed',
                                      throttle_duration_sec=1.0)
        report_problems(self, self.diagnostics, 'faces of one frame', frame.problems)
        if frame.restarted:
            self.get_logger().info('time went backwards (a replayed bag?): calibration of every track restarted')
        card = self.stage.regressor.card
        self.publisher.publish(expression_array(msg.header, card.model_id, self.stage.names, frame))
        listening = self.au_publisher.get_subscription_count() > 0
        if listening or self.hri is not None:  # read only while someone listens
            units, reading = self.stage.action_units.units, self.stage.read_action_units(frame)
            if listening:
                self.au_publisher.publish(action_unit_array(msg.header, card.model_id, units, frame, reading))
            if self.hri is not None:
                self.hri.publish(msg.header, [face.id for face in frame.faces], units, reading,
                                 {face.id for face in msg.faces if face.confirmed})
        if self.motion_publisher.get_subscription_count():  # large: computed only while someone listens
            moved, restarted = self.stage.face_motion(stamp, frame, msg.image_width, msg.image_height)
            if restarted:
                self.get_logger().info('time went backwards (a replayed bag?): face motion of every track restarted')
            self.motion_publisher.publish(face_motion_array(msg.header, self.stage.motion_vertices, moved))
        if self.stage.calibrator is not None:
            self.diagnostics.extra['calibrated_tracks'] = str(len(self.stage.calibrator))
        self.diagnostics.extra.update(self.face_arrays.figures(), faces_last_frame=str(len(frame.faces)))
        self.diagnostics.record(time.perf_counter() - start)


def main(args: list[str] | None = None) -> int:
    return run_node(ExpressionNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
