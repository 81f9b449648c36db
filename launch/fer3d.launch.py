"""Start the fer3d_ros graph: faces -> expressions -> emotions (+ stress, + debug overlay).

    ros2 launch fer3d_ros fer3d.launch.py image:=/camera/color/image_raw
    ros2 launch fer3d_ros fer3d.launch.py image:=/camera/image_raw use_compressed:=true composed:=true
    ros2 launch fer3d_ros fer3d.launch.py backend:=tensorrt engine:=/data/deepexp3d.engine start_overlay:=true
    ros2 launch fer3d_ros fer3d.launch.py image:=/camera/image_raw ros4hri:=true   # REP-155 topics too
    ros2 launch fer3d_ros fer3d.launch.py start_expression:=false start_emotion:=false start_stress:=false  # robot
    ros2 launch fer3d_ros fer3d.launch.py start_face:=false                                               # edge box

Every node reads its config/<node>.yaml, then `params_file` if given, then the launch arguments
that were given (an empty argument leaves the config's value). composed:=true runs all nodes in
one process (fer3d_pipeline, one executor: the lowest latency; start_* then chooses stress and overlay
only); false runs one process per node.
A node that exits ends the launch with an error (exit status 1) unless respawn:=true restarts it.
The tables at the top are plain data so that tests can check them without the launch library.
"""
# Launch argument -> (default, description).
ARGUMENTS = {
    'image': ('image', 'Input image topic (sensor_msgs/Image); with use_compressed, <image>/compressed is used.'),
    'use_compressed': ('', 'true: subscribe to <image>/compressed (sensor_msgs/CompressedImage, jpeg/png); '
                           'empty: as in config/face.yaml (false).'),
    'image_reliability': ('', 'QoS of the image subscription: auto (match the camera), reliable or best_effort; '
                              'empty: as in config/face.yaml (auto).'),
    'backend': ('', 'DeepExp3D inference backend: auto | tensorrt | onnxruntime; empty: as in '
                    'config/expression.yaml (auto).'),
    'model': ('', 'DeepExp3D ONNX model (with its .json card); empty: as in config/expression.yaml (the shipped '
                  'model).'),
    'engine': ('', 'Prebuilt TensorRT engine (python3 -m fer3d_ros.core.inference.engine_builder); empty: as in '
                   'config/expression.yaml '
                   '(the cached one).'),
    'params_file': ('', 'Your own parameter file (sections keyed /**/<node>, as in config/), loaded after the '
                        "package's files and before these arguments."),
    'namespace': ('', 'Namespace of every node and topic.'),
    'use_sim_time': ('false', 'Use /clock (set true when replaying a bag with --clock).'),
    'start_face': ('true', 'Start face_node (false on a host that runs the rest of a graph split across hosts).'),
    'start_expression': ('true', 'Start expression_node.'),
    'start_emotion': ('true', 'Start emotion_node.'),
    'start_stress': ('true', 'Start stress_node.'),
    'start_overlay': ('false', 'Start overlay_node (debug/image, drawn only while subscribed).'),
    'draw_motion': ('', "true: overlay_node draws each face's 3D motion (face_motion); empty: as in "
                        'config/overlay.yaml (false).'),
    'ros4hri': ('', 'true: also publish the REP-155 (ROS4HRI) topics under /humans/faces (needs hri_msgs); empty: '
                    'as in the config files (false).'),
    'composed': ('false', 'Run every node in one process (fer3d_pipeline) instead of one process per node.'),
    'respawn': ('false', 'Restart a node that exits (after 2 s) instead of ending the launch with an error.'),
}
# Arguments that are booleans: true/false or 1/0, any case (what launch conditions accept); no others.
BOOLEANS = ('use_compressed', 'ros4hri', 'use_sim_time', 'start_face', 'start_expression', 'start_emotion',
            'start_stress', 'start_overlay', 'draw_motion', 'composed',
            'respawn')

# Executable, its config file, parameter -> launch argument, the argument that starts it.
NODES = (
    ('face_node', 'face.yaml', {'use_compressed': 'use_compressed', 'image_reliability': 'image_reliability',
                                'ros4hri': 'ros4hri'}, 'start_face'),
    ('expression_node', 'expression.yaml', {'backend': 'backend', 'model': 'model', 'engine': 'engine',
                                            'ros4hri': 'ros4hri'}, 'start_expression'),
    ('emotion_node', 'emotion.yaml', {'ros4hri': 'ros4hri'}, 'start_emotion'),
    ('stress_node', 'stress.yaml', {}, 'start_stress'),
    ('overlay_node', 'overlay.yaml',
     {'use_compressed': 'use_compressed', 'image_reliability': 'image_reliability', 'draw_motion': 'draw_motion'},
     'start_overlay'),
)
PIPELINE = 'fer3d_pipeline'
PACKAGE = 'fer3d_ros'
RESPAWN_DELAY = 2.0


def parse_bool(name: str, text: str) -> bool:
    if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(f'launch argument {name}:={text!r} is not a boolean: use true or false')
    return text.lower() in ('true', '1')


def resolve_arguments(values: dict) -> dict:
    """Launch argument strings -> typed values; empty optional booleans stay empty (config's value)."""
    return {name: (parse_bool(name, text) if name in BOOLEANS and text else text) for name, text in values.items()}


def parameter_overrides(arguments: dict, started: list) -> dict:
    """The launch's parameters of each started node, under the key of its config section.

    Same key, later file: these values replace the config's (a section keyed otherwise, or a
    global -p, would not override the config's section in rclpy).
    """
    sections = {}
    for executable, _, parameters, _ in NODES:
        if executable in started:
            values = {parameter: arguments[argument] for parameter, argument in parameters.items()
                      if arguments[argument] != ''}
            sections[f'/**/{executable}'] = {'ros__parameters': {**values, 'use_sim_time': arguments['use_sim_time']}}
    return sections


def started_nodes(arguments: dict) -> list:
    return [executable for executable, _, _, started_by in NODES if started_by is None or arguments[started_by]]


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=description)
          for name, (default, description) in ARGUMENTS.items()),
        OpaqueFunction(function=launch_setup),
    ])


def launch_setup(context):
    import os
    import tempfile

    import yaml
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import RegisterEventHandler
    from launch.event_handlers import OnProcessExit, OnShutdown
    from launch_ros.actions import Node

    arguments = resolve_arguments({name: context.launch_configurations[name] for name in ARGUMENTS})
    started = started_nodes(arguments)
    with tempfile.NamedTemporaryFile('w', prefix='fer3d_launch_', suffix='.yaml', delete=False) as file:
        yaml.safe_dump(parameter_overrides(arguments, started), file)
    user_files = [arguments['params_file']] if arguments['params_file'] else []
    for path in user_files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'params_file:={path}: no such file')
    config_dir = os.path.join(get_package_share_directory(PACKAGE), 'config')
    image = arguments['image']
    # FER3D_STOP_WITH_PARENT: each node stops once the launch has gone, even when a SIGTERM to the
    # launch alone ended it at once (upstream launch then leaves its processes running).
    common = dict(package=PACKAGE, namespace=arguments['namespace'], output='screen', emulate_tty=True,
                  additional_env={'FER3D_STOP_WITH_PARENT': '1'},
                  remappings=[('image', image), ('image/compressed', f'{image}/compressed')],
                  respawn=arguments['respawn'], respawn_delay=RESPAWN_DELAY)
    if arguments['composed']:
        # The runner loads every config file first, then these files (the same section keys).
        nodes = [Node(executable=PIPELINE, parameters=[*user_files, file.name], **common,
                      arguments=['--stress', str(arguments['start_stress']).lower(),
                                 '--overlay', str(arguments['start_overlay']).lower()])]
    else:
        nodes = [Node(executable=executable, parameters=[os.path.join(config_dir, config), *user_files, file.name],
                      **common) for executable, config, _, _ in NODES if executable in started]
    # The overrides file is the launch's own: it goes when the launch ends.
    cleanup = RegisterEventHandler(OnShutdown(on_shutdown=lambda event, context: os.unlink(file.name)))
    if arguments['respawn']:
        return [*nodes, cleanup]
    return [*nodes, cleanup,
            *(RegisterEventHandler(OnProcessExit(target_action=node, on_exit=end_launch)) for node in nodes)]


def end_launch(event, context):
    """A node that exits while the launch runs takes the graph down with it, loudly (exit status 1)."""
    if context.is_shutdown:
        return None
    raise RuntimeError(f'{event.action.name} exited with code {event.returncode}; the graph cannot run without '
                       'it, so the launch stops (its own log above says why; respawn:=true restarts nodes instead)')
