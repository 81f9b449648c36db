"""`make demo`: frames travel as real sensor_msgs/Image messages between two rclpy nodes.

This is the foundation's demo: it checks the installation end to end (rclpy, the generated
messages, image conversion) and prints what it measured. The perception stages replace the
listener's work as they land.
"""
from __future__ import annotations

import os
import time

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from fer3d_ros.core.image_conversion import message_to_bgr8, numpy_to_image  # noqa: E402
from fer3d_ros.msg import FaceArray  # noqa: E402

FRAMES = 60


def _test_pattern(index: int) -> np.ndarray:
    frame = np.zeros((480, 640, 3), np.uint8)
    cv2.circle(frame, (320 + int(100 * np.sin(index / 10)), 240), 80, (180, 200, 230), -1)
    return frame


def main() -> None:
    context = rclpy.Context()
    rclpy.init(context=context)
    camera, listener = Node('demo_camera', context=context), Node('demo_listener', context=context)
    publisher = camera.create_publisher(Image, 'image', qos_profile_sensor_data)
    faces_publisher = listener.create_publisher(FaceArray, 'faces', 10)
    sent_at: dict[int, float] = {}  # stamp (ns) -> send time, for the latency
    latencies = []

    def on_image(msg: Image) -> None:
        frame = message_to_bgr8(msg)
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        latencies.append(time.perf_counter() - sent_at[stamp])
        faces_publisher.publish(FaceArray(header=msg.header, image_width=frame.shape[1],
                                          image_height=frame.shape[0]))

    listener.create_subscription(Image, 'image', on_image, qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=context)
    for node in (camera, listener):
        executor.add_node(node)
    for index in range(FRAMES):
        msg = numpy_to_image(_test_pattern(index), 'bgr8')
        now = camera.get_clock().now()
        msg.header.stamp, msg.header.frame_id = now.to_msg(), 'camera'
        sent_at[now.nanoseconds] = time.perf_counter()
        publisher.publish(msg)
        executor.spin_once(timeout_sec=0.1)
    executor.shutdown()
    rclpy.try_shutdown(context=context)

    if not latencies:
        raise SystemExit('demo failed: no image arrived (is ROS discovery blocked?)')
    ms = np.array(latencies) * 1e3
    print(f'fer3d_ros demo: {len(ms)}/{FRAMES} frames of 640x480 bgr8 delivered and converted; '
          f'latency median {np.median(ms):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms')


if __name__ == '__main__':
    main()
