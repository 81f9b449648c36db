"""A node executable's process: its DDS profile, its executor, signals, and ending with its parent."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from fer3d_ros.core.files import ModelFileError, find_shared_file
from fer3d_ros.core.lifetime import die_with_parent, return_large_buffers


class DownstreamFirstExecutor(SingleThreadedExecutor):
    """A single-threaded executor that serves the nodes added last first.

    rclpy keeps an executor's nodes in a set, so which of two ready callbacks runs first is left to
    chance. Given the nodes in data-flow order, this one finishes a frame already in flight
    (expression_node's faces) before starting on the next camera frame: with the nodes' one-deep
    queues, the other order replaced a face array with a newer one whenever the camera was faster
    than the graph, so the face work of every other frame was done for nothing.
    """

    def __init__(self, *, context: Context) -> None:
        super().__init__(context=context)
        self._order: list[Node] = []

    def add_node(self, node: Node) -> bool:
        if node not in self._order:
            self._order.append(node)
        return super().add_node(node)

    def get_nodes(self) -> list[Node]:
        nodes = set(super().get_nodes())
        return [node for node in reversed(self._order) if node in nodes]


# Where Fast DDS looks for a participant profile (the second: its name before Fast DDS 2.10).
DDS_PROFILE_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')


def use_package_dds_profile() -> None:
    """Give this process's DDS participant config/fastdds.xml (large shared-memory segments: camera
    frames in one piece), unless the environment names a profile of its own. Only this process is
    affected; its peers keep their settings and still talk to it."""
    if any(os.environ.get(variable) for variable in DDS_PROFILE_VARIABLES):
        return
    try:
        os.environ[DDS_PROFILE_VARIABLES[0]] = str(find_shared_file('config', 'fastdds.xml'))
    except ModelFileError:
        pass  # a source tree without the installed config: Fast DDS's defaults


# Set (to 1) by launch/fer3d.launch.py: the process stops when its parent, the launch, has gone.
STOP_WITH_PARENT = 'FER3D_STOP_WITH_PARENT'
PARENT_CHECK_PERIOD = 0.5  # seconds


def stop_with_parent() -> None:
    """With STOP_WITH_PARENT set, SIGTERM this process once its parent process has ended.

    `ros2 launch` stops its nodes on SIGINT, but a SIGTERM sent to it alone ends it at once and
    leaves them running (upstream behaviour); a node orphaned like that stops itself, cleanly: the
    kernel signals it at once on Linux, elsewhere a thread looks every PARENT_CHECK_PERIOD."""
    if os.environ.get(STOP_WITH_PARENT) != '1' or die_with_parent(signal.SIGTERM):
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:  # an orphan is adopted by another process
            time.sleep(PARENT_CHECK_PERIOD)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name='fer3d_stop_with_parent', daemon=True).start()


def run_nodes(name: str, create: Callable[[Context], list[Node]], args: list[str]) -> int:
    """Entry point of an executable: create nodes (in data-flow order) in a fresh context, spin them in
    one executor until SIGINT or SIGTERM, and return the exit status.

    A node that cannot start (missing model file, unavailable backend, parameter out of range) prints
    one FATAL line saying why and exits with status 1, without a traceback. SIGINT and SIGTERM (what
    process supervisors such as systemd and launch send) stop with status 0, even while nodes start.
    """
    use_package_dds_profile()  # before rclpy creates the participant
    stop_with_parent()
    return_large_buffers()
    context = Context()
    # rclpy installs its signal handlers only for the default context unless asked: without them
    # SIGTERM killed the process (status -15).
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.ALL)
    executor, started = DownstreamFirstExecutor(context=context), False
    try:
        for node in create(context):
            executor.add_node(node)
        started = True
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as error:  # noqa: BLE001 - any startup failure is reported the same way
        if not context.ok():
            # A signal shut the context down while the nodes started, or between the executor's check
            # of the context and its next wait ("failed to initialize wait set: the given context is not
            # valid"): a stop, not a failure.
            return 0
        if started:
            raise
        print(f'[FATAL] [{name}]: cannot start: {error}', file=sys.stderr)
        return 1
    finally:
        # Stopping now: Ctrl-C reaches every process of the terminal's group and ros2 launch sends its
        # own SIGINT after it; a second signal must not interrupt the teardown with a traceback. The
        # handlers come back afterwards (an ignored signal is inherited by every process started later).
        handlers = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            executor.shutdown()
            for node in executor.get_nodes():
                node.destroy_node()
            rclpy.try_shutdown(context=context)
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
    return 0


def run_node(node_class: type[Node], args: list[str] | None = None) -> int:
    """Entry point of a node executable: `run_nodes` with one node, named as its executable."""
    return run_nodes(node_class.__module__.rsplit('.', 1)[-1], lambda context: [node_class(context=context)],
                     args if args is not None else sys.argv)
