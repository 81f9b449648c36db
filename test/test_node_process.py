"""What every node shares: parameters declared from settings and applied through one callback, and
the process that runs nodes."""
import signal

from rclpy.node import Node
from rclpy.parameter import Parameter

from fer3d_ros.nodes.parameters import declare
from fer3d_ros.nodes.process import DownstreamFirstExecutor, run_nodes


class Thermostat(Node):
    """A node with one read-only and two dynamic parameters; `low` refuses to exceed `high`."""

    def __init__(self, **kwargs) -> None:
        super().__init__('thermostat', **kwargs)
        self.applied = []
        self.sensor = declare(self, 'sensor', 'lm35', 'Sensor model.')
        self.high = declare(self, 'high', 25.0, 'Upper bound.', minimum=0.0, maximum=50.0, on_change=self.set_high)
        self.low = declare(self, 'low', 18.0, 'Lower bound.', minimum=0.0, maximum=50.0, on_change=self.set_low)

    def set_high(self, value: float) -> None:
        self.applied.append(('high', value))
        self.high = value

    def set_low(self, value: float) -> None:
        if value > self.high:
            raise ValueError(f'must not exceed high ({self.high:g})')
        self.applied.append(('low', value))
        self.low = value


def test_dynamic_parameters_are_applied_and_read_only_ones_say_to_restart(ros):
    node = ros.add(Thermostat(context=ros.context))
    assert node.applied == []  # declaring applies nothing: the node reads the values itself
    assert ros.set_parameters('/thermostat', high=30.0, low=20.0).successful
    assert (node.high, node.low) == (30.0, 20.0) and node.get_parameter('low').value == 20.0
    out_of_range = ros.set_parameters('/thermostat', high=60.0)
    assert not out_of_range.successful and 'Min: 0.0, Max: 50.0' in out_of_range.reason and node.high == 30.0
    refused = ros.set_parameters('/thermostat', sensor='dht22')
    assert not refused.successful and 'read-only' in refused.reason
    assert node.describe_parameter('sensor').read_only and 'restart the node' in node.describe_parameter(
        'sensor').description
    assert not node.describe_parameter('high').read_only and 'restart' not in node.describe_parameter(
        'high').description


def test_a_refused_value_undoes_the_others_of_an_atomic_set(ros):
    node = ros.add(Thermostat(context=ros.context))
    result = node.set_parameters_atomically([Parameter('high', value=10.0), Parameter('low', value=15.0)])
    assert not result.successful and result.reason == 'low: must not exceed high (10)'
    assert (node.high, node.low) == (25.0, 18.0) and node.get_parameter('high').value == 25.0
    assert node.applied == [('high', 10.0), ('high', 25.0)]  # applied, then restored


def test_one_process_serves_the_nodes_added_last_first(ros):
    """A frame in flight is finished (downstream callbacks) before a new camera frame is started."""
    executor = DownstreamFirstExecutor(context=ros.context)
    stages = [Node(name, context=ros.context) for name in ('face', 'expression', 'emotion')]
    for node in stages:
        executor.add_node(node)
    assert [node.get_name() for node in executor.get_nodes()] == ['emotion', 'expression', 'face']
    executor.remove_node(stages[1])
    assert [node.get_name() for node in executor.get_nodes()] == ['emotion', 'face']
    executor.shutdown()
    for node in stages:
        node.destroy_node()


def test_a_signal_between_the_executors_check_and_its_wait_is_a_stop_not_a_crash(monkeypatch):
    """SIGTERM right after "ready" once gave overlay_node exit 1 and a traceback: rclpy's signal thread
    shut the context down after the executor had checked it and before it built its wait set. The
    shutdown is placed exactly there; rclpy then raises its real error, and run_nodes must stop cleanly."""
    original = DownstreamFirstExecutor.wait_for_ready_callbacks

    def shut_down_first(self, *args, **kwargs):
        self._context.try_shutdown()
        return original(self, *args, **kwargs)
    monkeypatch.setattr(DownstreamFirstExecutor, 'wait_for_ready_callbacks', shut_down_first)
    status = run_nodes('race_probe', lambda context: [Node('race_probe', context=context)], [])
    assert status == 0
    # and the process's own signal handlers are back (ignored ones would pass to every child it starts)
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
