"""What a host of a split graph answers: run on the edge box's side by test_two_hosts.py, it counts
the EmotionArrays on `emotions` and their latency (arrival minus the camera's stamp; both hosts
share this machine's clock), until out.stop appears; the summary goes to out.json.

    python test/link_probe.py out.json
"""
import json
import sys
import time
from pathlib import Path

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

from fer3d_ros.msg import EmotionArray


def main(out: str) -> None:
    rclpy.init()
    node = rclpy.create_node('link_probe')
    arrivals = []
    node.create_subscription(EmotionArray, 'emotions', lambda m: arrivals.append(
        [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, time.time(), len(m.emotions)]),
        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    print('ready', flush=True)
    stop = Path(out).with_suffix('.stop')
    while not stop.exists():
        rclpy.spin_once(node, timeout_sec=0.05)
    Path(out).write_text(json.dumps(arrivals))
    node.destroy_node()
    rclpy.shutdown()


if __name__ == '__main__':
    main(sys.argv[1])
