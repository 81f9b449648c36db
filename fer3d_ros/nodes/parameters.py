"""Parameters declared from a stage's settings dataclass (core/settings.py): descriptors with
ranges and read-only flags, dynamic ones applied through one callback, the process settings."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from fer3d_ros.core import settings as settings_module
from fer3d_ros.core.settings import RESTART_NOTE, setting
from fer3d_ros.core.threads import limit_library_threads


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
