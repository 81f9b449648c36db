"""Test set-up shared by every test: ROS stays on this machine, one rclpy context per test."""
import os
import random
import signal

# Before rclpy is imported anywhere: DDS discovery must never leave this machine, and a random
# domain keeps concurrent test runs on one machine from hearing each other.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_LOCALHOST_ONLY'] = '1'
os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 100)))
# A shell that starts the tests in the background (`make test &`) ignores SIGINT in them, and
# node processes the tests start would inherit that and never stop on the SIGINT they are sent.
signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest  # noqa: E402
from harness import RosHarness  # noqa: E402

from fer3d_ros.core.threads import limit_library_threads  # noqa: E402

# The test process limits its own pools, as every node process does (core.threads). Nothing is set
# in the environment: the node processes that tests start get a robot's, and limit their own.
limit_library_threads(1)


@pytest.fixture
def ros():
    """An initialised rclpy context with an executor; nodes made through it are cleaned up."""
    harness = RosHarness()
    try:
        yield harness
    finally:
        harness.close()
