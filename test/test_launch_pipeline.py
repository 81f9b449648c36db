"""The launch file's tables against what exists and what each node declares, the config files, and
the all-in-one runner as a real process (test_launch_file.py runs the launch file itself)."""
import importlib.util
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from processes import robot_environment
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from fer3d_ros.core.image_conversion import numpy_to_image
from fer3d_ros.core.video import read_frames
from fer3d_ros.msg import EmotionArray, ExpressionArray, StressArray
from fer3d_ros.nodes.pipeline import STAGES
from fer3d_ros.tools.sample_data import pyfeat_media

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / 'launch' / 'fer3d.launch.py'
INSTALL = Path(sys.prefix)
# Parameters every rclpy node has without declaring them.
IMPLICIT = {'use_sim_time', 'start_type_description_service'}


def load_launch_module():
    spec = importlib.util.spec_from_file_location('fer3d_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # module level is plain data: no launch library needed
    return module


LAUNCH = load_launch_module()
NODE_CLASSES = {executable: cls for cls, _ in STAGES.values()
                for executable in [cls.__module__.rsplit('.', 1)[1]]}


def flatten(tree: dict, prefix: str = '') -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


def config_parameters(config: str, node: str) -> dict:
    tree = yaml.safe_load((ROOT / 'config' / config).read_text())
    assert list(tree) == [f'/**/{node}'], f'{config} must hold one section, /**/{node} (any namespace)'
    return flatten(tree[f'/**/{node}']['ros__parameters'])


def test_launch_references_existing_installed_executables_and_configs():
    names = [executable for executable, *_ in LAUNCH.NODES] + [LAUNCH.PIPELINE]
    for executable in names:
        for folder in (ROOT / 'scripts', INSTALL / 'lib' / 'fer3d_ros'):
            path = folder / executable
            assert path.is_file() and path.stat().st_mode & 0o111, f'{path} missing or not executable'
    for _, config, _, _ in LAUNCH.NODES:
        assert (ROOT / 'config' / config).is_file() and (INSTALL / 'share/fer3d_ros/config' / config).is_file()
    assert (INSTALL / 'share/fer3d_ros/launch/fer3d.launch.py').is_file()
    assert {config for _, config, _, _ in LAUNCH.NODES} == {config for _, config in STAGES.values()}


def test_launch_arguments_are_all_declared_and_used():
    used = set(re.findall(r"arguments\['(\w+)'\]", LAUNCH_FILE.read_text()))
    used |= {argument for *_, parameters, started_by in LAUNCH.NODES
             for argument in [*parameters.values(), started_by] if argument}
    assert used == set(LAUNCH.ARGUMENTS), f'undeclared: {used - set(LAUNCH.ARGUMENTS)}, unused: ' \
                                          f'{set(LAUNCH.ARGUMENTS) - used}'
    assert set(LAUNCH.BOOLEANS) <= set(LAUNCH.ARGUMENTS)
    for default, description in LAUNCH.ARGUMENTS.values():
        assert isinstance(default, str) and description


@pytest.mark.parametrize('executable, config, overrides', [(e, c, o) for e, c, o, _ in LAUNCH.NODES])
def test_config_and_launch_overrides_match_what_the_node_declares(ros, executable, config, overrides):
    """Every YAML key and launch override is a declared parameter of the right type, and every
    declared parameter is in the YAML (the config files document them all)."""
    values = config_parameters(config, executable)
    node = ros.add(NODE_CLASSES[executable](
        context=ros.context, parameter_overrides=[Parameter('backend', value='onnxruntime')]
        if executable == 'expression_node' else []))
    declared = {name for name in node._parameters if name not in IMPLICIT}
    assert set(values) == declared, f'{config}: missing {declared - set(values)}, unknown {set(values) - declared}'
    for name, value in values.items():
        assert type(node.get_parameter(name).value) is type(value), f'{config}: {name} has the wrong type'
    for name, argument in overrides.items():
        assert name in declared
        assert isinstance(node.get_parameter(name).value, bool) == (argument in LAUNCH.BOOLEANS), name


def clip_frame() -> np.ndarray:
    return next(read_frames(pyfeat_media('WolfgangLanger_Pexels.mp4')))


def start_pipeline(*arguments: str, executable: str = 'fer3d_pipeline') -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(INSTALL / 'lib/fer3d_ros' / executable), *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=robot_environment())


def test_runner_runs_the_whole_graph_in_one_process_with_remapped_input(ros):
    process = start_pipeline('--overlay', 'true', '--ros-args', '-r', 'image:=/camera/color/image_raw',
                             '-p', 'expression_node:backend:=onnxruntime', '-p', 'stress_node:window:=1.0',
                             '-p', 'stress_node:hop:=0.5')
    try:
        client = ros.node('client')
        emotions, stress, debug = [], [], []
        client.create_subscription(EmotionArray, 'emotions', emotions.append, 10)
        client.create_subscription(StressArray, 'stress', stress.append, 10)
        client.create_subscription(Image, 'debug/image', debug.append, 10)
        publisher = client.create_publisher(Image, '/camera/color/image_raw', qos_profile_sensor_data)
        # face_node and overlay_node; stop at once if the runner died
        ros.spin_until(lambda: publisher.get_subscription_count() >= 2 or process.poll() is not None, 30)
        assert process.poll() is None and publisher.get_subscription_count() == 2
        frame, sent = clip_frame(), 0
        deadline = time.monotonic() + 60
        while not (stress and debug and emotions and emotions[-1].emotions) and time.monotonic() < deadline:
            msg = numpy_to_image(frame, 'bgr8')
            msg.header.frame_id = 'camera_color_optical_frame'
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(sent * 10**8, 10**9)  # 10 frames/s
            publisher.publish(msg)
            sent += 1
            ros.spin_for(0.1)
        assert emotions and emotions[-1].emotions, 'no emotions from the runner'
        assert emotions[-1].header.frame_id == 'camera_color_optical_frame'
        assert stress and debug and debug[-1].header.frame_id == 'camera_color_optical_frame'
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
        print(output)  # shown when the test fails
    assert process.returncode == 0, output
    assert 'running face, expression, emotion, stress, overlay in one process' in output


@pytest.mark.parametrize('executable, listens_on', [('fer3d_pipeline', 'image'), ('emotion_node', 'expressions')])
def test_sigterm_stops_the_runner_and_a_node_cleanly(ros, executable, listens_on):
    """Process supervisors (systemd, launch) stop a process with SIGTERM: a clean exit 0, as on SIGINT."""
    process = start_pipeline('--ros-args', '-p', 'expression_node:backend:=onnxruntime', executable=executable)
    try:
        publisher = ros.node('client').create_publisher(Image if listens_on == 'image' else ExpressionArray,
                                                        listens_on, 10)
        assert ros.spin_until(lambda: publisher.get_subscription_count() or process.poll() is not None, 30)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert 'Traceback' not in output


def test_runner_refuses_to_start_without_its_model_and_says_which_file():
    process = start_pipeline('--ros-args', '-p', 'expression_node:model:=/nonexistent/deepexp3d.onnx')
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert '[FATAL] [fer3d_pipeline]: cannot start' in output and '/nonexistent/deepexp3d.onnx' in output


def test_runner_rejects_a_bad_option_with_usage():
    process = start_pipeline('--stress', 'maybe')
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2 and 'expected true or false' in output


def test_installed_executables_run_without_activating_the_venv():
    """Their first line names the interpreter they were built for (as pip's console scripts do), so
    launch can start them from a shell where the venv is not active."""
    for executable in (INSTALL / 'lib' / 'fer3d_ros').iterdir():
        assert executable.read_text().splitlines()[0] == f'#!{sys.executable}', executable
    bare = {'PATH': '/usr/bin:/bin', 'HOME': str(Path.home()), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    result = subprocess.run([str(INSTALL / 'lib/fer3d_ros/fer3d_pipeline'), '--help'], env=bare,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and 'usage: fer3d_pipeline' in result.stdout, result.stderr
