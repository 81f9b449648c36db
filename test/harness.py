"""In-process rclpy helpers for tests: a private context, an executor, spin until a condition."""
from __future__ import annotations

import time
from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter


class RosHarness:
    """One rclpy context per test, so tests never share nodes, topics or state."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self._nodes: list[Node] = []
        self._parameter_client: Node | None = None

    def node(self, name: str, **kwargs) -> Node:
        """A plain node in this context, spun by this harness."""
        return self.add(Node(name, context=self.context, **kwargs))

    def add(self, node: Node) -> Node:
        """Spin an existing node (created with `context=harness.context`) with this harness."""
        self.executor.add_node(node)
        self._nodes.append(node)
        return node

    def spin_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Spin until `condition()` holds; False after `timeout` seconds (discovery can take ~1 s)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def spin_for(self, seconds: float) -> None:
        """Spin for a fixed time (to let messages arrive that should not, or to settle)."""
        self.spin_until(lambda: False, timeout=seconds)

    def wait_for_subscribers(self, publisher, count: int = 1, timeout: float = 10.0) -> None:
        """Block until `publisher` has matched `count` subscriptions (else fail loudly)."""
        if not self.spin_until(lambda: publisher.get_subscription_count() >= count, timeout):
            raise TimeoutError(f'no subscriber matched {publisher.topic_name} within {timeout} s')

    def set_parameters(self, node: str, **values) -> SetParametersResult:
        """Set parameters of `node` (e.g. '/face_node') through its set_parameters service, as
        `ros2 param set` does; dots in names are written as '__' (calibration__max_activity_mm).
        Returns the result of the first refused parameter, else a successful one."""
        self._parameter_client = self._parameter_client or self.node('parameter_client')
        client = self._parameter_client.create_client(SetParameters, f'{node}/set_parameters')
        try:
            if not client.wait_for_service(timeout_sec=10.0):
                raise TimeoutError(f'{node}/set_parameters is not served')
            future = client.call_async(SetParameters.Request(parameters=[
                Parameter(name.replace('__', '.'), value=value).to_parameter_msg() for name, value in values.items()]))
            if not self.spin_until(future.done):
                raise TimeoutError(f'{node}/set_parameters did not answer')
        finally:
            self._parameter_client.destroy_client(client)
        return next((r for r in future.result().results if not r.successful), SetParametersResult(successful=True))

    def close(self) -> None:
        for node in self._nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)
        # Destroying the handle ends the DDS participant now: a shut-down context's participant
        # otherwise lives on until garbage collection, and its nodes' services (lifecycle ones)
        # stay in the graph for the tests that follow.
        self.context.destroy()
