"""emotion_node: expressions (ExpressionArray) -> emotions (EmotionArray), per tracked face.

A face whose calibration is mature (Expression.calibration_confidence >= calibration.min_confidence)
is classified from its calibrated coefficients by a classifier trained on neutral-relative
features; any other face from its raw coefficients. Emotion.calibrated says which was used.
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node
from rclpy.time import Time

from fer3d_ros.core.emotion import CALIBRATED_MODEL_FILE, EmotionSmoother, default_classifier
from fer3d_ros.msg import Emotion, EmotionArray, ExpressionArray
from fer3d_ros.nodes.common import (
    RELIABLE_QOS,
    Diagnostics,
    declare,
    declare_library_threads,
    guarded,
    report_problems,
    run_node,
)


class EmotionNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('emotion_node', **kwargs)
        declare_library_threads(self)
        self.classifier = default_classifier(
            declare(self, 'model', '', 'Emotion classifier on raw coefficients (.npz from '
                    'training/train_emotion.py); empty = the shipped models/emotion_classifier.npz.') or None,
            features='raw')
        self.calibrated_classifier = default_classifier(
            declare(self, 'calibrated_model', '', 'Emotion classifier on calibrated coefficients (train_emotion '
                    '--features calibrated); empty = the shipped models/' + CALIBRATED_MODEL_FILE + '.') or None,
            features='calibrated') if declare(self, 'calibration.enabled', True,
                                              'Classify calibrated faces with the calibrated classifier.') else None
        self.min_confidence = declare(self, 'calibration.min_confidence', 0.5,
                                      'Calibration confidence from which a face is classified from its calibrated '
                                      'coefficients (0.5: about 21 neutral frames).', minimum=0.0, maximum=1.0,
                                      on_change=lambda value: setattr(self, 'min_confidence', value))
        self.smoother = EmotionSmoother(
            time_constant=declare(self, 'smoothing.time_constant', 0.3,
                                  'Seconds over which each face\'s probabilities are averaged '
                                  '(exponentially, by stamp time); 0 = no smoothing.', minimum=0.0, maximum=60.0,
                                  on_change=lambda value: setattr(self.smoother, 'time_constant', value)),
            forget_after=declare(self, 'smoothing.forget_after', 2.0,
                                 'Seconds after which a face that left the view is forgotten.',
                                 minimum=0.01, maximum=3600.0,
                                 on_change=lambda value: setattr(self.smoother.tracks, 'forget_after', value)))
        self.diagnostics = Diagnostics(self)
        self.publisher = self.create_publisher(EmotionArray, 'emotions', RELIABLE_QOS)
        self.create_subscription(ExpressionArray, 'expressions',
                                 guarded(self, self.diagnostics, (ValueError,))(self.on_expressions), RELIABLE_QOS)
        self.get_logger().info(f'ready: {self.classifier.model.describe()}')

    def on_expressions(self, msg: ExpressionArray) -> None:
        start = time.perf_counter()
        self.classifier.check_names(msg.names)
        if self.calibrated_classifier:
            self.calibrated_classifier.check_names(msg.names)
        checked = [(e, self._problem(e, len(msg.names))) for e in msg.expressions]
        report_problems(self, self.diagnostics, 'skipped faces', [problem for _, problem in checked if problem])
        usable = [e for e, problem in checked if not problem]
        calibrated = np.array([self._calibrated(e, len(msg.names)) for e in usable], bool)
        probabilities = np.zeros((len(usable), len(self.classifier.classes)))
        for use_calibrated, classifier in ((False, self.classifier), (True, self.calibrated_classifier)):
            rows = np.flatnonzero(calibrated == use_calibrated)
            if len(rows):
                field = 'calibrated' if use_calibrated else 'coefficients'
                probabilities[rows] = classifier.predict_proba(np.array([getattr(usable[i], field) for i in rows]))
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        smoothed, reset = self.smoother.update(stamp, [e.id for e in usable], probabilities)
        if reset:
            self.get_logger().info('time went backwards (a replayed bag?): smoothing state cleared')
        classes = self.classifier.classes
        self.publisher.publish(EmotionArray(
            header=msg.header, model_id=self.classifier.model.model_id, labels=list(classes),
            emotions=[Emotion(id=e.id, label=classes[int(p.argmax())], confidence=float(p.max()),
                              probabilities=p.astype(np.float32), calibrated=bool(c))
                      for e, p, c in zip(usable, smoothed, calibrated)]))
        self.diagnostics.extra['tracked_faces'] = str(len(self.smoother))
        self.diagnostics.extra['calibrated_faces_last_frame'] = str(int(calibrated.sum()))
        self.diagnostics.record(time.perf_counter() - start)

    def _calibrated(self, expression, count: int) -> bool:
        """Whether a face is classified from its calibrated coefficients (a malformed calibration: raw)."""
        return (self.calibrated_classifier is not None and expression.calibration_confidence >= self.min_confidence
                and len(expression.calibrated) == count and bool(np.isfinite(expression.calibrated).all()))

    @staticmethod
    def _problem(expression, count: int) -> str:
        """What makes one face's coefficients unusable ('' if nothing): that face is skipped, not the others."""
        values = np.asarray(expression.coefficients)
        problem = (f'{len(values)} coefficients for {count} names' if len(values) != count
                   else 'NaN or infinite coefficients' if not np.isfinite(values).all() else '')
        return f'{expression.id!r}: {problem}' if problem else ''


def main(args: list[str] | None = None) -> int:
    return run_node(EmotionNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
