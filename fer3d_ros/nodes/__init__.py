"""Thin rclpy adapters around fer3d_ros.core, one module per node."""
