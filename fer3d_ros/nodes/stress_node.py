"""stress_node: expressions + faces (head pose) -> stress (StressArray), per tracked face and window."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from rclpy.node import Node
from rclpy.time import Time

from fer3d_ros.core.stress import FeatureSettings, PoseHistory, StressEstimator, default_stress_model
from fer3d_ros.msg import ExpressionArray, FaceArray, Stress, StressArray
from fer3d_ros.nodes.common import (
    RELIABLE_QOS,
    Diagnostics,
    declare,
    declare_library_threads,
    guarded,
    report_problems,
    run_node,
)


class StressNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('stress_node', **kwargs)
        declare_library_threads(self)
        self.model = default_stress_model(
            declare(self, 'model', '', 'Stress model (.json from training/train_stress.py); empty = the '
                    'literature prior models/stress_prior.json.') or None)
        self.estimator = StressEstimator(
            self.model,
            window=declare(self, 'window', 10.0, 'Window length in seconds.', minimum=1.0, maximum=600.0,
                           on_change=lambda value: self.estimator.configure(window=value)),
            hop=declare(self, 'hop', 1.0, 'Seconds between two estimates of a face.', minimum=0.01, maximum=600.0,
                        on_change=lambda value: self.estimator.configure(hop=value)),
            min_fill=declare(self, 'min_fill', 0.8, 'Fraction of the window a face must have been seen over '
                             'before its first estimate.', minimum=0.05, maximum=1.0,
                             on_change=lambda value: self.estimator.configure(min_fill=value)),
            settings=FeatureSettings(blink_threshold=declare(
                self, 'blink_threshold', 0.15, 'eyeBlink rise above its window median that counts as a blink.',
                minimum=0.01, maximum=1.0,
                on_change=lambda value: self.estimator.configure(
                    settings=replace(self.estimator.settings, blink_threshold=value)))))
        self.poses = PoseHistory(declare(
            self, 'pose_tolerance', 0.02, 'Seconds by which the stamp of a FaceArray may differ from its '
            'ExpressionArray\'s and still give its faces\' head pose (the nearest stamp is taken).',
            minimum=0.0, maximum=1.0, on_change=lambda value: setattr(self.poses, 'tolerance', value)))
        self.samples_without_pose = 0
        self.diagnostics = Diagnostics(self)
        self.diagnostics.extra['samples_without_pose'] = '0'
        self.publisher = self.create_publisher(StressArray, 'stress', RELIABLE_QOS)
        self.create_subscription(FaceArray, 'faces', self.on_faces, RELIABLE_QOS)
        self.create_subscription(ExpressionArray, 'expressions',
                                 guarded(self, self.diagnostics, (ValueError,))(self.on_expressions), RELIABLE_QOS)
        self.get_logger().info(f'ready: {self.model.model_id}, window {self.estimator.window:g} s, '
                               f'hop {self.estimator.hop:g} s')

    def on_faces(self, msg: FaceArray) -> None:
        self.poses.add(Time.from_msg(msg.header.stamp).nanoseconds * 1e-9,
                       {face.id: (face.roll, face.pitch, face.yaw) for face in msg.faces})

    def on_expressions(self, msg: ExpressionArray) -> None:
        start = time.perf_counter()
        if self.estimator.set_names(msg.names):
            self.get_logger().info(f'expression names from {msg.model_id}: {len(msg.names)} coefficients')
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        poses = self.poses.at(stamp)
        self.report_missing_poses([e.id for e in msg.expressions if e.id not in poses])
        update = self.estimator.update(stamp, [(e.id, np.asarray(e.coefficients), poses.get(e.id))
                                               for e in msg.expressions])
        if update.reset:
            self.get_logger().info('time went backwards (a replayed bag?): every stress window restarted')
        report_problems(self, self.diagnostics, 'skipped samples', update.rejected)
        if update.estimates:
            self.publisher.publish(StressArray(header=msg.header, model_id=self.model.model_id, stresses=[
                Stress(id=s.id, probability=s.probability,
                       label=Stress.STRESSED if s.probability >= 0.5 else Stress.NOT_STRESSED,
                       window_seconds=s.window_seconds, num_samples=s.num_samples) for s in update.estimates]))
        self.diagnostics.extra['tracked_faces'] = str(len(self.estimator.tracks))
        self.diagnostics.record(time.perf_counter() - start)

    def report_missing_poses(self, face_ids: list[str]) -> None:
        """Faces scored without head movement (those features then count as typical): said, not silent."""
        if not face_ids:
            return
        self.samples_without_pose += len(face_ids)
        self.diagnostics.extra['samples_without_pose'] = str(self.samples_without_pose)
        self.get_logger().warning(
            f'no head pose for {", ".join(face_ids)} in faces stamped within pose_tolerance '
            f'({self.poses.tolerance:g} s) of the expressions: their head movement counts as typical '
            '(is faces connected, stamped with the image?)', throttle_duration_sec=5.0)


def main(args: list[str] | None = None) -> int:
    return run_node(StressNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
