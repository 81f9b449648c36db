"""stress_node: expressions + faces (head pose) -> stress (StressArray), per tracked face and window
(core.affect.stage does the work)."""
from __future__ import annotations

import time

import numpy as np
from rclpy.time import Time

from fer3d_ros.core.affect.stage import StressSettings, StressStage
from fer3d_ros.msg import ExpressionArray, FaceArray, StressArray
from fer3d_ros.nodes.diagnostics import guarded, report_problems
from fer3d_ros.nodes.messages import stress_array
from fer3d_ros.nodes.process import run_node
from fer3d_ros.nodes.qos import RELIABLE_QOS
from fer3d_ros.nodes.stage_node import StageNode


class StressNode(StageNode):
    settings_class = StressSettings

    def __init__(self, **kwargs) -> None:
        super().__init__('stress_node', **kwargs)
        self.samples_without_pose = 0
        self.diagnostics.extra['samples_without_pose'] = '0'
        self.start()

    def make_stage(self) -> StressStage:
        return StressStage(self.settings.value)

    def make_outputs(self) -> list:
        self.publisher = self.create_publisher(StressArray, 'stress', RELIABLE_QOS)
        self.get_logger().info(f'ready: {self.stage.model.model_id}, window {self.stage.estimator.window:g} s, '
                               f'hop {self.stage.estimator.hop:g} s')
        return [self.publisher]

    def make_inputs(self) -> list:
        return [self.create_subscription(FaceArray, 'faces', self.on_faces, RELIABLE_QOS),
                self.create_subscription(ExpressionArray, 'expressions',
                                         guarded(self, self.diagnostics, (ValueError,))(self.on_expressions),
                                         RELIABLE_QOS), self.people_forgotten_input()]

    def on_faces(self, msg: FaceArray) -> None:
        self.stage.add_poses(Time.from_msg(msg.header.stamp).nanoseconds * 1e-9,
                             {face.id: (face.roll, face.pitch, face.yaw) for face in msg.faces})

    def on_expressions(self, msg: ExpressionArray) -> None:
        start = time.perf_counter()
        if self.stage.set_names(msg.names):
            self.get_logger().info(f'expression names from {msg.model_id}: {len(msg.names)} coefficients')
        frame = self.stage.process(Time.from_msg(msg.header.stamp).nanoseconds * 1e-9,
                                   [(e.id, np.asarray(e.coefficients), e.person_id) for e in msg.expressions])
        self.report_missing_poses(frame.without_pose)
        if frame.restarted:
            self.get_logger().info('time went backwards (a replayed bag?): every stress window restarted')
        report_problems(self, self.diagnostics, 'skipped samples', frame.problems)
        if frame.estimates:
            self.publisher.publish(stress_array(msg.header, self.stage.model.model_id, frame.estimates,
                                                {e.id: e.person_id for e in msg.expressions}))
        self.diagnostics.extra['tracked_faces'] = str(len(self.stage.estimator.tracks))
        self.diagnostics.record(time.perf_counter() - start)

    def report_missing_poses(self, face_ids: list[str]) -> None:
        """Faces scored without head movement (those features then count as typical): said, not silent."""
        if not face_ids:
            return
        self.samples_without_pose += len(face_ids)
        self.diagnostics.extra['samples_without_pose'] = str(self.samples_without_pose)
        self.get_logger().warning(
            f'no head pose for {", ".join(face_ids)} in faces stamped within pose_tolerance '
            f'({self.stage.poses.tolerance:g} s) of the expressions: their head movement counts as typical '
            '(is faces connected, stamped with the image?)', throttle_duration_sec=5.0)


def main(args: list[str] | None = None) -> int:
    return run_node(StressNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
