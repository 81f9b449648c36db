"""What every fer3d_ros node shares: parameters declared from a stage's settings, the lifecycle,
diagnostics, and a main() wrapper."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from fer3d_ros.core import settings as settings_module
from fer3d_ros.core.files import ModelFileError, find_shared_file
from fer3d_ros.core.settings import RESTART_NOTE, setting
from fer3d_ros.core.threads import library_threads, limit_library_threads

# Outputs and node-to-node inputs: reliable, depth 10 (camera input: image_input.py).
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

# Latency thresholds of the diagnostics status (seconds), as ROS4HRI nodes use.
LATENCY_WARN, LATENCY_ERROR = 0.5, 2.0

# With use_sim_time and no /clock after this many seconds, the node says so (once, and on /diagnostics).
NO_CLOCK_WARNING_AFTER = 5.0
NO_CLOCK = ('use_sim_time is true but no /clock has arrived: stamps and time windows wait for it '
            '(replay the bag with --clock, or set use_sim_time false)')

# Seconds between two readings of the libraries' thread pools for the diagnostics.
LIBRARY_THREADS_PERIOD = 30.0



def declare(node: Node, name: str, default, description: str, *, minimum=None, maximum=None,
            on_change: Callable[[Any], None] | None = None):
    """Declare a parameter with a descriptor (and a range when given) and return its value.

    Out-of-range values are refused by rclpy, at start and on `ros2 param set`, with the range in
    the reason. With `on_change` the parameter is dynamic: once rclpy has checked a new value,
    `on_change(value)` applies it to the running objects (a ValueError it raises refuses the value,
    its text being the reason). Without it the parameter is read-only: the node reads it once at
    start, and its description says so.
    """
    dynamic = on_change is not None
    descriptor = ParameterDescriptor(description=description if dynamic else f'{description} {RESTART_NOTE}',
                                     read_only=not dynamic)
    if minimum is not None or maximum is not None:
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise TypeError(f'a range needs a numeric parameter, {name} is {type(default).__name__}')
        if isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(minimum), to_value=int(maximum), step=1)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(minimum), to_value=float(maximum))]
    value = node.declare_parameter(name, default, descriptor).value
    if dynamic:
        ParameterSetters.of(node)[name] = on_change
    return value


@dataclass(frozen=True)
class ProcessSettings:
    """What every fer3d_ros node sets for its process."""
    library_threads: int = setting(
        1, "Threads of each BLAS, OpenMP and OpenCV pool in this node's process (NumPy, SciPy, OpenCV). 1 suits the "
        "graph's many small problems and leaves the other cores to the other nodes; 0 = the libraries' defaults (one "
        'per core, or OMP_NUM_THREADS). Where nodes share a process, the largest value holds.', minimum=0, maximum=256)


@dataclass(frozen=True)
class LifecycleSettings:
    autostart: bool = setting(True, 'Configure and activate the node as soon as it starts; false: wait, unconfigured, '
                              'for a lifecycle manager (configure loads the models, activate subscribes to the '
                              'inputs, deactivate pauses the work).')


def declare_process_settings(node: Node) -> ProcessSettings:
    """A node's ProcessSettings, its thread pools limited at once (see core.threads: a robot's shell
    sets no OMP_NUM_THREADS, and unpinned pools made the graph four times slower)."""
    settings = NodeSettings(node, ProcessSettings).value
    limit_library_threads(settings.library_threads)
    return settings


class NodeSettings:
    """A settings dataclass declared as a node's parameters, one per setting (ranges and descriptions
    from its specs, read-only unless dynamic); `value` is the current settings. A dynamic change is
    checked, handed to `apply(new settings)` (a ValueError it raises refuses it) and then kept."""

    def __init__(self, node: Node, settings_class: type, apply: Callable[[Any], None] | None = None) -> None:
        self._class, self._apply = settings_class, apply
        values = {}
        for name, default, spec in settings_module.leaves(settings_class):
            change = (lambda value, name=name: self._change(name, value)) if spec.dynamic else None
            values[name] = declare(node, name, default, spec.description, minimum=spec.minimum,
                                   maximum=spec.maximum, on_change=change)
        self.value = settings_module.check(settings_module.build(settings_class, values))

    def _change(self, name: str, value: Any) -> None:
        reason = settings_module.problem(name, value, settings_module.spec_of(self._class, name))
        if reason:
            raise ValueError(reason)
        changed = settings_module.replaced(self.value, name, value)
        if self._apply is not None:
            self._apply(changed)
        self.value = changed


class ParameterSetters(dict):
    """The `on_change` setters of one node's dynamic parameters, by name, called from the node's one
    on-set-parameters callback (rclpy has checked read-only flags, types and ranges before)."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._node = node
        node.add_on_set_parameters_callback(self.apply)

    @classmethod
    def of(cls, node: Node) -> ParameterSetters:
        """The node's setters, made (and its callback added) on first use."""
        if not hasattr(node, '_fer3d_parameter_setters'):
            node._fer3d_parameter_setters = cls(node)
        return node._fer3d_parameter_setters

    def apply(self, parameters: list[Parameter]) -> SetParametersResult:
        """Apply every new value, or none: a refused one restores those already applied (the node
        still holds their old values while this runs)."""
        applied = []
        for parameter in parameters:
            if parameter.name not in self:
                continue  # a parameter being declared, or one that rclpy handles (use_sim_time)
            try:
                self[parameter.name](parameter.value)
            except ValueError as error:
                for done in reversed(applied):
                    self[done.name](self._node.get_parameter(done.name).value)
                return SetParametersResult(successful=False, reason=f'{parameter.name}: {error}')
            applied.append(parameter)
        for parameter in applied:
            self._node.get_logger().info(f'parameter {parameter.name} set to {parameter.value}')
        return SetParametersResult(successful=True)


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


class StageNode(LifecycleNode):
    """A fer3d_ros node: a lifecycle node around one core stage.

    At construction it declares its parameters (`library_threads`, `autostart`, its stage's
    settings); `configure` builds the stage (loads and checks the model files) and the outputs,
    `activate` subscribes to the inputs, `deactivate` unsubscribes (the work stops; a robot pauses
    the expensive part), `cleanup` releases the stage. With `autostart` (default) the node configures
    and activates itself once constructed, so `ros2 run` and `ros2 launch` need no lifecycle manager;
    a stage that cannot be built then stops the node at start with the reason. Subclasses set
    `settings_class`, implement make_stage, make_outputs and make_inputs, and call `start()` last.
    """

    settings_class: type               # the stage's settings
    input_settings_class: type | None = None  # the inputs' (ROS side), if any
    output_settings_class: type | None = None  # what else it publishes (ROS side, read at start), if any

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.stage = None
        self._inputs: list = []   # what activate made: subscriptions (or objects with a close())
        self._outputs: list = []  # what configure made: publishers, services
        self._failure = ''
        declare_process_settings(self)
        self.autostart = NodeSettings(self, LifecycleSettings).value.autostart
        self.settings = NodeSettings(self, self.settings_class, self._apply_settings)
        self.input_settings = NodeSettings(self, self.input_settings_class, self._apply_input_settings) \
            if self.input_settings_class else None
        self.output_settings = NodeSettings(self, self.output_settings_class).value \
            if self.output_settings_class else None
        self.diagnostics = Diagnostics(self, state=self.state_label)

    def make_stage(self):
        """The core stage, built from self.settings.value (models loaded and checked)."""
        raise NotImplementedError

    def make_outputs(self) -> list:
        """Publishers and services (made on configure)."""
        return []

    def make_inputs(self) -> list:
        """Subscriptions (made on activate)."""
        return []

    def people_forgotten_input(self):
        """face_node's announcements of forgotten people: their state here goes too."""
        def on_forgotten(msg) -> None:
            if self.stage is not None:
                self.stage.forget_person(msg.data)
        from std_msgs.msg import String
        return self.create_subscription(String, 'people/forgotten', on_forgotten, RELIABLE_QOS)

    def _apply_settings(self, settings) -> None:
        if self.stage is not None:
            self.stage.apply(settings)

    def _apply_input_settings(self, settings) -> None:
        """Dynamic input settings reach whatever of the active inputs has an apply()."""
        for entity in self._inputs:
            if hasattr(entity, 'apply'):
                entity.apply(settings)

    def start(self) -> None:
        """Configure and activate now if `autostart`; RuntimeError with the reason if the stage cannot be built."""
        if not self.autostart:
            self.get_logger().info('autostart is false: waiting for a lifecycle manager (configure, activate)')
            return
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError(self._failure or 'configure failed')
        self.trigger_activate()

    def state_label(self) -> str:
        """The lifecycle state ('unconfigured', 'inactive', 'active', ...), with why configure failed."""
        label = self._state_machine.current_state[1]
        return f'{label} (configure failed: {self._failure})' if self._failure and label == 'unconfigured' else label

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.stage = self.make_stage()
            self._outputs = self.make_outputs()
        except Exception as error:  # noqa: BLE001 - any reason the stage cannot run is said the same way
            self._failure = str(error)
            self.get_logger().error(f'cannot configure: {error}')
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._failure = ''
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._inputs = self.make_inputs()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close_inputs()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _close_inputs(self) -> None:
        for entity in self._inputs:
            if hasattr(entity, 'close'):
                entity.close()
            else:
                self.destroy_subscription(entity)
        self._inputs = []

    def _release(self) -> None:
        self._close_inputs()
        for entity in self._outputs:
            if hasattr(entity, 'close'):  # a group of publishers (nodes/ros4hri.py)
                entity.close()
            else:
                (self.destroy_publisher if hasattr(entity, 'publish') else self.destroy_service)(entity)
        self._outputs = []
        if hasattr(self.stage, 'close'):
            self.stage.close()
        self.stage = None

    def destroy_node(self) -> None:
        self._release()
        # rclpy's LifecycleNode never destroys its state machine, which keeps the node's handle, and so
        # its DDS participant, alive after the node and its context are gone.
        self._state_machine.destroy_when_not_in_use()
        super().destroy_node()


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
    leaves them running (upstream behaviour); a node orphaned like that stops itself, cleanly."""
    if os.environ.get(STOP_WITH_PARENT) != '1':
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
        if started:
            raise
        if context.ok():  # else a signal shut the context down while the nodes started: a stop, not a failure
            print(f'[FATAL] [{name}]: cannot start: {error}', file=sys.stderr)
            return 1
    finally:
        executor.shutdown()
        for node in executor.get_nodes():
            node.destroy_node()
        rclpy.try_shutdown(context=context)
    return 0


def run_node(node_class: type[Node], args: list[str] | None = None) -> int:
    """Entry point of a node executable: `run_nodes` with one node, named as its executable."""
    return run_nodes(node_class.__module__.rsplit('.', 1)[-1], lambda context: [node_class(context=context)],
                     args if args is not None else sys.argv)
