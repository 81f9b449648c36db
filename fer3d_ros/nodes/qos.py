"""The QoS of fer3d_ros's outputs and node-to-node inputs (the camera input: image_input.py)."""
from __future__ import annotations

from rclpy.qos import QoSProfile, ReliabilityPolicy

# Outputs and node-to-node inputs: reliable, depth 10 (camera input: image_input.py).
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
