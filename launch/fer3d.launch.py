"""Start the fer3d_ros graph: faces -> expressions -> emotions (+ stress, + debug overlay).

    ros2 launch fer3d_ros fer3d.launch.py image:=/camera/color/image_raw
    ros2 launch fer3d_ros fer3d.launch.py image:=/camera/image_raw use_compressed:=true composed:=true
    ros2 launch fer3d_ros fer3d.launch.py backend:=tensorrt engine:=/data/deepexp3d.engine start_overlay:=true

Every node reads its config/<node>.yaml; the launch arguments below override single parameters.
composed:=true runs all nodes in one process (fer3d_pipeline, one executor: the lowest latency);
false runs one process per node. The tables at the top are plain data so that tests can check
them on machines without the launch library.
"""
# Launch argument -> (default, description).
ARGUMENTS = {
    'image': ('image', 'Input image topic (sensor_msgs/Image); with use_compressed, <image>/compressed is used.'),
    'use_compressed': ('false', 'Subscribe to <image>/compressed (sensor_msgs/CompressedImage, jpeg/png).'),
    'backend': ('auto', 'DeepExp3D inference backend: auto | tensorrt | onnxruntime.'),
    'model': ('', 'DeepExp3D ONNX model (with its .json card); empty = the shipped model.'),
    'engine': ('', 'Prebuilt TensorRT engine (python -m training.build_engine); empty = the cached one.'),
    'namespace': ('', 'Namespace of every node and topic.'),
    'use_sim_time': ('false', 'Use /clock (set true when replaying a bag with --clock).'),
    'start_stress': ('true', 'Start stress_node.'),
    'start_overlay': ('false', 'Start overlay_node (debug/image, drawn only while subscribed).'),
    'composed': ('false', 'Run every node in one process (fer3d_pipeline) instead of one process per node.'),
}

# Executable, its config file, parameter -> (launch argument, type), the argument that starts it.
NODES = (
    ('face_node', 'face.yaml', {'use_compressed': ('use_compressed', bool)}, None),
    ('expression_node', 'expression.yaml',
     {'backend': ('backend', str), 'model': ('model', str), 'engine': ('engine', str)}, None),
    ('emotion_node', 'emotion.yaml', {}, None),
    ('stress_node', 'stress.yaml', {}, 'start_stress'),
    ('overlay_node', 'overlay.yaml', {'use_compressed': ('use_compressed', bool)}, 'start_overlay'),
)
PIPELINE = 'fer3d_pipeline'
PACKAGE = 'fer3d_ros'


def generate_launch_description():
    import os

    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration, PythonExpression
    from launch_ros.actions import Node, SetParameter
    from launch_ros.parameter_descriptions import ParameterValue

    config_dir = os.path.join(get_package_share_directory(PACKAGE), 'config')
    image = LaunchConfiguration('image')
    composed = LaunchConfiguration('composed')
    remappings = [('image', image), ('image/compressed', [image, '/compressed'])]

    def is_true(name):
        return ["'", LaunchConfiguration(name), "'.lower() == 'true'"]

    def overrides(parameters):
        return {key: ParameterValue(LaunchConfiguration(argument), value_type=kind)
                for key, (argument, kind) in parameters.items()}

    def separate_node(executable, config, parameters, started_by):
        condition = is_true(started_by) + [' and not '] + is_true('composed') if started_by \
            else ['not '] + is_true('composed')
        return Node(package=PACKAGE, executable=executable, namespace=LaunchConfiguration('namespace'),
                    parameters=[os.path.join(config_dir, config), overrides(parameters)],
                    remappings=remappings, output='screen', emulate_tty=True,
                    condition=IfCondition(PythonExpression(condition)))

    # One process: every config file, and the overrides of all nodes (each node takes its own).
    all_overrides = {key: value for _, _, parameters, _ in NODES for key, value in overrides(parameters).items()}
    pipeline = Node(package=PACKAGE, executable=PIPELINE, namespace=LaunchConfiguration('namespace'),
                    arguments=['--stress', LaunchConfiguration('start_stress'),
                               '--overlay', LaunchConfiguration('start_overlay')],
                    parameters=[*(os.path.join(config_dir, config) for _, config, _, _ in NODES), all_overrides],
                    remappings=remappings, output='screen', emulate_tty=True, condition=IfCondition(composed))
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=description)
          for name, (default, description) in ARGUMENTS.items()),
        SetParameter(name='use_sim_time', value=ParameterValue(LaunchConfiguration('use_sim_time'), value_type=bool)),
        *(separate_node(*node) for node in NODES),
        pipeline,
    ])
