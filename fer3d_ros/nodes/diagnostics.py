"""What a node says on /diagnostics: per-frame latency, problems, its lifecycle state, the clock."""
from __future__ import annotations

import time
import traceback
from collections import deque
from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from fer3d_ros.core.threads import library_threads

# Latency thresholds of the diagnostics status (seconds), as ROS4HRI nodes use.
LATENCY_WARN, LATENCY_ERROR = 0.5, 2.0

# With use_sim_time and no /clock after this many seconds, the node says so (once, and on /diagnostics).
NO_CLOCK_WARNING_AFTER = 5.0
NO_CLOCK = ('use_sim_time is true but no /clock has arrived: stamps and time windows wait for it '
            '(replay the bag with --clock, or set use_sim_time false)')

# Seconds between two readings of the libraries' thread pools for the diagnostics.
LIBRARY_THREADS_PERIOD = 30.0


class Diagnostics:
    """Per-node health on /diagnostics at 1 Hz: rate, latency percentiles, bad and dropped inputs."""

    def __init__(self, node: Node, window: int = 100, state: Callable[[], str] | None = None) -> None:
        self._node, self._state = node, state
        self._publisher = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._latencies: deque[float] = deque(maxlen=window)
        self._stamps: deque[float] = deque(maxlen=window)
        self.processed = 0
        self.bad_inputs = 0
        self.dropped = 0
        self.last_error = ''
        self.warning = ''  # a condition the node found (e.g. its camera's transport), WARN while it holds
        self.extra: dict[str, str] = {}
        self._threads: dict[str, int] = {}
        self._threads_read_at = -float('inf')
        self._started = time.monotonic()
        self._said_no_clock = False
        # The wall's steady clock: with use_sim_time a ROS-time timer never fires before /clock comes.
        node.create_timer(1.0, self.publish, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def record(self, latency: float) -> None:
        self.processed += 1
        self._latencies.append(latency)
        self._stamps.append(time.monotonic())

    def bad_input(self, error: str) -> None:
        self.bad_inputs += 1
        self.last_error = error

    def status(self) -> DiagnosticStatus:
        latencies = np.array(self._latencies) if self._latencies else np.zeros(1)
        median, p95 = np.percentile(latencies, 50), np.percentile(latencies, 95)
        span = self._stamps[-1] - self._stamps[0] if len(self._stamps) > 1 else 0.0
        rate = (len(self._stamps) - 1) / span if span > 0 else 0.0
        level, message = DiagnosticStatus.OK, 'running'
        state = self._state() if self._state else 'active'
        if state != 'active':  # a lifecycle node that does no work now, and says why
            level, message = (DiagnosticStatus.ERROR if 'failed' in state else DiagnosticStatus.OK), state
        elif self.waiting_for_clock():
            level, message = DiagnosticStatus.WARN, NO_CLOCK
        elif self.warning:
            level, message = DiagnosticStatus.WARN, self.warning
        elif not self.processed:
            message = 'waiting for input'
        elif median > LATENCY_ERROR:
            level, message = DiagnosticStatus.ERROR, f'median latency {median:.2f} s'
        elif median > LATENCY_WARN:
            level, message = DiagnosticStatus.WARN, f'median latency {median:.2f} s'
        values = {'rate_hz': f'{rate:.1f}', 'latency_median_ms': f'{median * 1e3:.1f}',
                  'latency_p95_ms': f'{p95 * 1e3:.1f}', 'processed': str(self.processed),
                  'bad_inputs': str(self.bad_inputs), 'dropped': str(self.dropped),
                  'last_error': self.last_error, 'library_threads': self._library_threads(), **self.extra}
        return DiagnosticStatus(level=level, name=f'{self._node.get_fully_qualified_name()}',
                                message=message, hardware_id='fer3d_ros',
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def _library_threads(self) -> str:
        """The pool sizes read from the libraries (~10 ms with ROS's libraries loaded: every 30 s)."""
        now = time.monotonic()
        if now - self._threads_read_at > LIBRARY_THREADS_PERIOD:
            self._threads, self._threads_read_at = library_threads(), now
        return ', '.join(f'{kind} {size}' for kind, size in self._threads.items())

    def waiting_for_clock(self) -> bool:
        """use_sim_time is set and no /clock message has arrived (the node's time is still zero)."""
        return self._node.get_parameter('use_sim_time').value and self._node.get_clock().now().nanoseconds == 0

    def publish(self) -> None:
        if not self._said_no_clock and time.monotonic() - self._started > NO_CLOCK_WARNING_AFTER \
                and self.waiting_for_clock():
            self._node.get_logger().warning(NO_CLOCK)
            self._said_no_clock = True
        array = DiagnosticArray(status=[self.status()])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)


def report_problems(node: Node, diagnostics: Diagnostics, what: str, problems: list[str]) -> None:
    """Count every problem with a part of one message (a face, a sample) and say them all in one
    line, at most one line a second: a throttled line per part would name only the first."""
    if not problems:
        return
    for problem in problems:
        diagnostics.bad_input(problem)
    node.get_logger().warning(f'{what}: {"; ".join(problems)}', throttle_duration_sec=1.0)


def guarded(node: Node, diagnostics: Diagnostics, expected: tuple[type[Exception], ...]) -> Callable:
    """Decorate a subscription callback so that one bad message never kills the node.

    Expected errors (bad input) are logged as one throttled warning line; anything else is
    logged with its traceback. Either way the node keeps running. A callback cut short because the
    process is stopping (SIGINT or SIGTERM shut the context down under it) is not an error.
    """
    def decorate(callback: Callable) -> Callable:
        def wrapper(msg) -> None:
            try:
                callback(msg)
            except Exception as error:  # noqa: BLE001 - a node must survive any one message
                if not node.context.ok():
                    return  # stopping: the publishers and the log are gone, nothing went wrong
                if isinstance(error, expected):
                    diagnostics.bad_input(str(error))
                    node.get_logger().warning(f'skipped a message: {error}', throttle_duration_sec=1.0)
                    return
                diagnostics.bad_input(f'{type(error).__name__}: {error}')
                node.get_logger().error(f'failed on a message: {error}\n{traceback.format_exc()}',
                                        throttle_duration_sec=1.0)
        return wrapper
    return decorate
