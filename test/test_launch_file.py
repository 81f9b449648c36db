"""launch/fer3d.launch.py run for real, as `ros2 launch` runs it: nodes in their own processes, a
camera in another, and assertions on what comes out and on the parameters each node holds."""
import time
from pathlib import Path

import pytest
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from processes import launch_environment, node_parameters, start_launch_file, start_node, wait_for_nodes
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from fer3d_ros.core.files import find_model
from fer3d_ros.msg import ActionUnitArray, EmotionArray, FaceMotionArray, StressArray
from fer3d_ros.tools.sample_data import pyfeat_media

LAUNCH_FILE = 'fer3d.launch.py'
CLIP = pyfeat_media('WolfgangLanger_Pexels.mp4')


@pytest.fixture(scope='module')
def launch_env(tmp_path_factory):
    return launch_environment(tmp_path_factory.mktemp('ros2_launch'))


def start_camera(tmp_path, topic, width, height, *, compressed=False, rate=10.0):
    return start_node('video_camera', tmp_path / 'camera.log', '-p', f'video:={CLIP}', '-p', f'width:={width}',
                      '-p', f'height:={height}', '-p', f'rate:={rate}', '-p', f'compressed:={str(compressed).lower()}',
                      '-p', 'frame_id:=head_camera', '-r', f'image:={topic}',
                      '-r', f'image/compressed:={topic}/compressed')


def collect(client, msg_type, topic):
    received = []
    client.create_subscription(msg_type, topic, received.append, 10)
    return received


def stop_all(*processes):
    return [process.stop() for process in processes]


def test_per_node_launch_applies_every_argument(ros, launch_env, tmp_path):
    """namespace, image, image_reliability, backend, start_overlay, draw_motion, params_file: each changes
    what runs; the on-demand outputs (action units, face motion) come out of the running graph."""
    params_file = tmp_path / 'mine.yaml'
    params_file.write_text(yaml.safe_dump({'/**/stress_node': {'ros__parameters': {'window': 1.0, 'hop': 0.5}},
                                           '/**/expression_node': {'ros__parameters': {'backend': 'tensorrt'}}}))
    launch = start_launch_file(launch_env, tmp_path / 'launch.log', LAUNCH_FILE, 'namespace:=robot',
                               'image:=/head_camera/image_raw', 'image_reliability:=reliable', 'backend:=onnxruntime',
                               'start_overlay:=True', 'draw_motion:=true', f'params_file:={params_file}')
    camera = start_camera(tmp_path, '/head_camera/image_raw', 1280, 720)
    client = ros.node('client')
    emotions, stress = collect(client, EmotionArray, '/robot/emotions'), collect(client, StressArray, '/robot/stress')
    debug = collect(client, Image, '/robot/debug/image')
    units, motion = collect(client, ActionUnitArray, '/robot/action_units'), collect(client, FaceMotionArray,
                                                                                       '/robot/face_motion')
    try:
        nodes = {f'/robot/{name}' for name in ('face_node', 'expression_node', 'emotion_node', 'stress_node',
                                               'overlay_node')}
        wait_for_nodes(ros, client, nodes, launch)
        assert ros.spin_until(lambda: emotions and emotions[-1].emotions and stress and debug or not launch.running(),
                              90), f'no output from the graph:\n{launch.output[-5000:]}'
        assert emotions[-1].header.frame_id == debug[-1].header.frame_id == 'head_camera'
        assert ros.spin_until(lambda: units and units[-1].faces and motion and motion[-1].faces, 30)
        assert units[-1].header.frame_id == motion[-1].header.frame_id == 'head_camera'
        assert node_parameters(ros, client, '/robot/overlay_node', ['draw_motion']) == {'draw_motion': True}
        face = node_parameters(ros, client, '/robot/face_node', ['image_reliability', 'use_compressed', 'use_sim_time'])
        assert face == {'image_reliability': 'reliable', 'use_compressed': False, 'use_sim_time': False}
        # the launch argument wins over params_file, which wins over config/stress.yaml
        expression = node_parameters(ros, client, '/robot/expression_node', ['backend', 'model'])
        assert expression == {'backend': 'onnxruntime', 'model': ''}
        assert node_parameters(ros, client, '/robot/stress_node', ['window', 'hop']) == {'window': 1.0, 'hop': 0.5}
    finally:
        launch_status, _ = stop_all(launch, camera)
    assert launch_status == 0, launch.output[-5000:]
    assert 'listening on /head_camera/image_raw (image_reliability: reliable)' in launch.output


def test_composed_launch_applies_every_argument(ros, launch_env, tmp_path):
    """One process; compressed input, sim time, a model for expression_node only, no stress_node."""
    model = find_model('deepexp3d_mnv2_96.onnx')
    launch = start_launch_file(launch_env, tmp_path / 'launch.log', LAUNCH_FILE, 'composed:=1', 'use_compressed:=true',
                               'start_stress:=false', 'use_sim_time:=true', f'model:={model}', 'image:=/cam/image')
    camera = start_camera(tmp_path, '/cam/image', 640, 480, compressed=True)
    client = ros.node('client')
    emotions, diagnostics = collect(client, EmotionArray, '/emotions'), collect(client, DiagnosticArray, '/diagnostics')
    clock = client.create_publisher(Clock, '/clock', 10)
    try:
        wait_for_nodes(ros, client, {'/face_node', '/expression_node', '/emotion_node'}, launch)
        start = time.monotonic()

        def tick():  # simulated time from 1234 s, advancing as the wall clock does
            clock.publish(Clock(clock=Time(sec=1234 + int(time.monotonic() - start))))
            return bool(emotions and emotions[-1].emotions and face_diagnostics())

        def face_diagnostics():
            return [array for array in diagnostics if array.status[0].name == '/face_node']

        assert ros.spin_until(tick, 90), f'no emotions or diagnostics from the composed graph:\n{launch.output[-5000:]}'
        assert 1234 <= face_diagnostics()[-1].header.stamp.sec < 1234 + 100  # the node's clock is /clock
        assert node_parameters(ros, client, '/face_node', ['use_compressed', 'use_sim_time', 'image_reliability']) \
            == {'use_compressed': True, 'use_sim_time': True, 'image_reliability': 'auto'}
        assert node_parameters(ros, client, '/expression_node', ['model'])['model'] == str(model)
        assert node_parameters(ros, client, '/emotion_node', ['model'])['model'] == ''  # not the regressor's file
        # (a stress_node of an earlier test's graph may take a moment to leave the graph)
        assert ros.spin_until(lambda: '/stress_node' not in {f'/{name}' for name, _ in
                                                             client.get_node_names_and_namespaces()}, 10)
    finally:
        launch_status, _ = stop_all(launch, camera)
    assert launch_status == 0, launch.output[-5000:]
    assert 'running face, expression, emotion in one process' in launch.output
    assert 'listening on /cam/image/compressed' in launch.output


@pytest.mark.parametrize('composed', ['false', 'true'])
def test_a_missing_model_is_named_in_one_line_and_ends_the_launch(launch_env, tmp_path, composed):
    launch = start_launch_file(launch_env, tmp_path / 'launch.log', LAUNCH_FILE, f'composed:={composed}',
                               'model:=/nonexistent/deepexp3d.onnx')
    status = launch.wait(timeout=90)
    fatal = [line for line in launch.output.splitlines() if 'FATAL' in line]
    assert status == 1, launch.output
    assert len(fatal) == 1 and '/nonexistent/deepexp3d.onnx' in fatal[0], launch.output
    assert 'exited with code 1; the graph cannot run without it' in launch.output


def test_respawn_restarts_a_node_that_exits(launch_env, tmp_path):
    launch = start_launch_file(launch_env, tmp_path / 'launch.log', LAUNCH_FILE, 'respawn:=true',
                               'model:=/nonexistent/deepexp3d.onnx', 'start_stress:=false')
    try:
        for _ in range(120):
            if launch.output.count('[expression_node-2]: process started') >= 2 or not launch.running():
                break
            time.sleep(0.5)
        assert launch.running() and launch.output.count('[expression_node-2]: process started') >= 2, launch.output
    finally:
        launch.stop()


def test_the_launch_leaves_no_parameter_file_behind(launch_env, tmp_path):
    import glob
    import tempfile
    pattern = f'{tempfile.gettempdir()}/fer3d_launch_*.yaml'
    before = set(glob.glob(pattern))
    launch = start_launch_file(launch_env, tmp_path / 'launch.log', LAUNCH_FILE, 'start_stress:=false',
                               'backend:=onnxruntime')
    # Ctrl-C once the nodes are started: upstream launch can be interrupted inside its own process
    # spawning (a KeyboardInterrupt in asyncio's child watcher), which is not what this test is about.
    for _ in range(240):
        if launch.output.count('process started with pid') >= 3 or not launch.running():
            break
        time.sleep(0.25)
    assert set(glob.glob(pattern)) - before, launch.output  # written while the launch runs
    assert launch.stop() == 0, launch.output
    assert set(glob.glob(pattern)) == before


def test_a_boolean_argument_that_is_not_one_is_refused(launch_env, tmp_path):
    launch = start_launch_file(launch_env, tmp_path / 'launch.log', LAUNCH_FILE, 'composed:=maybe')
    assert launch.wait(timeout=60) != 0
    assert "composed:='maybe' is not a boolean: use true or false" in launch.output
    assert 'process started' not in launch.output


def test_launch_file_parses_booleans_one_way():
    from importlib.util import module_from_spec, spec_from_file_location
    spec = spec_from_file_location('fer3d_launch', Path(__file__).parents[1] / 'launch' / LAUNCH_FILE)
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    parsed = [module.parse_bool('x', text) for text in ('true', 'True', '1', 'false', 'FALSE', '0')]
    assert parsed == [True] * 3 + [False] * 3
    resolved = module.resolve_arguments({name: default for name, (default, _) in module.ARGUMENTS.items()})
    started = module.started_nodes(resolved)
    assert started == ['face_node', 'expression_node', 'emotion_node', 'stress_node']
    # empty arguments leave the config's values; use_sim_time is always set, per node
    assert module.parameter_overrides(resolved, started)['/**/face_node'] == {
        'ros__parameters': {'use_sim_time': False}}
