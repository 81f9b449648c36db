"""emotion_node: expressions (ExpressionArray) -> emotions (EmotionArray), per face, through its temporal
model (core.affect.stage does the work); with `ros4hri`, each tracked face's REP-155 `expression` too
(nodes/ros4hri.py)."""
from __future__ import annotations

import time

from rclpy.time import Time

from fer3d_ros.core.affect.stage import EmotionSettings, EmotionStage
from fer3d_ros.msg import EmotionArray, ExpressionArray
from fer3d_ros.nodes.diagnostics import guarded, report_problems
from fer3d_ros.nodes.messages import emotion_array, face_expressions
from fer3d_ros.nodes.process import run_node
from fer3d_ros.nodes.qos import RELIABLE_QOS
from fer3d_ros.nodes.ros4hri import ExpressionOutput, Ros4hriSettings
from fer3d_ros.nodes.stage_node import StageNode


class EmotionNode(StageNode):
    settings_class = EmotionSettings
    output_settings_class = Ros4hriSettings

    def __init__(self, **kwargs) -> None:
        super().__init__('emotion_node', **kwargs)
        self.hri: ExpressionOutput | None = None
        self.start()

    def make_stage(self) -> EmotionStage:
        return EmotionStage(self.settings.value)

    def make_outputs(self) -> list:
        self.publisher = self.create_publisher(EmotionArray, 'emotions', RELIABLE_QOS)
        self.get_logger().info(f'ready: {self.stage.classifier.model.describe()}')
        self.hri = ExpressionOutput(self) if self.output_settings.ros4hri else None
        return [self.publisher, *([self.hri] if self.hri else [])]

    def make_inputs(self) -> list:
        return [self.create_subscription(ExpressionArray, 'expressions',
                                         guarded(self, self.diagnostics, (ValueError,))(self.on_expressions),
                                         RELIABLE_QOS), self.people_forgotten_input()]

    def on_expressions(self, msg: ExpressionArray) -> None:
        start = time.perf_counter()
        frame = self.stage.process(Time.from_msg(msg.header.stamp).nanoseconds * 1e-9, msg.names,
                                   face_expressions(msg))
        report_problems(self, self.diagnostics, 'skipped faces', frame.problems)
        if frame.restarted:
            self.get_logger().info('time went backwards (a replayed bag?): temporal state of every face cleared')
        self.publisher.publish(emotion_array(msg.header, self.stage.classifier.model.model_id, self.stage.classes,
                                             frame))
        if self.hri is not None:
            self.hri.publish(msg.header, [(face_id, self.stage.classes[label], float(p[label])) for face_id, label, p
                                          in zip(frame.ids, frame.labels, frame.probabilities)],
                             {expression.id for expression in msg.expressions if expression.confirmed})
        self.diagnostics.extra['tracked_faces'] = str(len(self.stage.filter))
        self.diagnostics.extra['calibrated_faces_last_frame'] = str(int(frame.calibrated.sum()))
        self.diagnostics.record(time.perf_counter() - start)


def main(args: list[str] | None = None) -> int:
    return run_node(EmotionNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
