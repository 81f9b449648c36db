"""emotion_node: expressions (ExpressionArray) -> emotions (EmotionArray), per tracked face."""
from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node
from rclpy.time import Time

from fer3d_ros.core.emotion import EmotionSmoother, default_classifier
from fer3d_ros.msg import Emotion, EmotionArray, ExpressionArray
from fer3d_ros.nodes.common import RELIABLE_QOS, Diagnostics, declare, guarded, run_node


class EmotionNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('emotion_node', **kwargs)
        self.classifier = default_classifier(
            declare(self, 'model', '', 'Emotion classifier (.npz from training/train_emotion.py); '
                    'empty = the shipped models/emotion_ecoc_svm.npz.') or None)
        self.smoother = EmotionSmoother(
            time_constant=declare(self, 'smoothing.time_constant', 0.3,
                                  'Seconds over which each face\'s probabilities are averaged '
                                  '(exponentially, by stamp time); 0 = no smoothing.', minimum=0.0, maximum=60.0),
            forget_after=declare(self, 'smoothing.forget_after', 2.0,
                                 'Seconds after which a face that left the view is forgotten.',
                                 minimum=0.01, maximum=3600.0))
        self.diagnostics = Diagnostics(self)
        self.publisher = self.create_publisher(EmotionArray, 'emotions', RELIABLE_QOS)
        self.create_subscription(ExpressionArray, 'expressions',
                                 guarded(self, self.diagnostics, (ValueError,))(self.on_expressions), RELIABLE_QOS)
        model = self.classifier.model
        self.get_logger().info(f'ready: {model.model_id} ({len(model.classes)} classes, '
                               f'{len(model.support_vectors)} support vectors)')

    def on_expressions(self, msg: ExpressionArray) -> None:
        start = time.perf_counter()
        self.classifier.check_names(msg.names)
        usable = [e for e in msg.expressions if self._usable(e, len(msg.names))]
        probabilities = self.classifier.predict_proba(np.array([e.coefficients for e in usable])) \
            if usable else np.zeros((0, len(self.classifier.classes)))
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        smoothed, reset = self.smoother.update(stamp, [e.id for e in usable], probabilities)
        if reset:
            self.get_logger().info('time went backwards (a replayed bag?): smoothing state cleared')
        classes = self.classifier.classes
        self.publisher.publish(EmotionArray(
            header=msg.header, model_id=self.classifier.model.model_id, labels=list(classes),
            emotions=[Emotion(id=e.id, label=classes[int(p.argmax())], confidence=float(p.max()),
                              probabilities=p.astype(np.float32), calibrated=False)
                      for e, p in zip(usable, smoothed)]))
        self.diagnostics.extra['tracked_faces'] = str(len(self.smoother))
        self.diagnostics.record(time.perf_counter() - start)

    def _usable(self, expression, count: int) -> bool:
        """Skip (and report) one face's malformed coefficients without losing the others."""
        values = np.asarray(expression.coefficients)
        problem = (f'{len(values)} coefficients for {count} names' if len(values) != count
                   else 'NaN or infinite coefficients' if not np.isfinite(values).all() else '')
        if problem:
            self.diagnostics.bad_input(f'{expression.id}: {problem}')
            self.get_logger().warning(f'skipped face {expression.id!r}: {problem}', throttle_duration_sec=1.0)
        return not problem


def main(args: list[str] | None = None) -> int:
    return run_node(EmotionNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
