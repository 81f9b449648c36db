"""expression_node: faces (FaceArray with aligned crops) -> expressions (ExpressionArray)."""
from __future__ import annotations

import time

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from fer3d_ros.core.expression import default_regressor
from fer3d_ros.core.image_conversion import ImageConversionError, image_to_numpy
from fer3d_ros.msg import Expression, ExpressionArray, FaceArray
from fer3d_ros.nodes.common import RELIABLE_QOS, Diagnostics, declare, guarded, run_node


class ExpressionNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('expression_node', **kwargs)
        self.regressor = default_regressor(
            declare(self, 'model', '', 'DeepExp3D ONNX model (with its .json card beside it); '
                    'empty = the shipped models/deepexp3d_r18_128.onnx.') or None,
            backend=declare(self, 'backend', 'auto', 'auto (TensorRT when available, else ONNX Runtime), '
                            'tensorrt or onnxruntime.'),
            engine_path=declare(self, 'engine', '', 'Prebuilt TensorRT engine; empty = the cache path keyed '
                                'by GPU, TensorRT version and precision.') or None,
            threads=declare(self, 'threads', 1, 'ONNX Runtime threads.', minimum=1, maximum=64),
            allow_engine_build=declare(self, 'allow_engine_build', False,
                                       'Build a missing TensorRT engine at start (minutes) instead of failing.'),
            max_batch=declare(self, 'max_batch', 16, 'Most faces per inference call.', minimum=1, maximum=256))
        self.only_confirmed = declare(self, 'only_confirmed', False,
                                      'Skip faces whose track is not confirmed yet (Face.confirmed).')
        queue_size = declare(self, 'queue_size', 1,
                             'FaceArrays waiting while the network runs; older ones are dropped, so the '
                             'output stays current when inference is slower than the camera.',
                             minimum=1, maximum=100)
        self.diagnostics = Diagnostics(self)
        self.publisher = self.create_publisher(ExpressionArray, 'expressions', RELIABLE_QOS)
        callback = guarded(self, self.diagnostics, (ImageConversionError, ValueError))(self.on_faces)
        self.create_subscription(FaceArray, 'faces', callback,
                                 QoSProfile(depth=queue_size, reliability=ReliabilityPolicy.RELIABLE))
        card = self.regressor.card
        self.get_logger().info(f'ready: {card.model_id} ({card.input_size} px) on {self.regressor.backend.name}')

    def on_faces(self, msg: FaceArray) -> None:
        start = time.perf_counter()
        faces = [face for face in msg.faces if face.confirmed or not self.only_confirmed]
        missing = [face.id for face in faces if face.crop.width == 0]
        if missing:
            raise ValueError(f'faces {missing} carry no aligned crop: set face_node publish_crops to true')
        coefficients = self.regressor.predict([image_to_numpy(face.crop) for face in faces])
        self.publisher.publish(ExpressionArray(
            header=msg.header, model_id=self.regressor.card.model_id,
            names=list(self.regressor.card.expression_names),
            expressions=[Expression(id=face.id, coefficients=values) for face, values in zip(faces, coefficients)]))
        latency = time.perf_counter() - start
        self.diagnostics.extra['faces_last_frame'] = str(len(faces))
        self.diagnostics.record(latency)


def main(args: list[str] | None = None) -> int:
    return run_node(ExpressionNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
