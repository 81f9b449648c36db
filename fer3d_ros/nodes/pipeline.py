"""fer3d_pipeline: the whole graph in one process and one executor (lowest latency, no copies
between processes).

    ros2 run fer3d_ros fer3d_pipeline [--stress true|false] [--overlay true|false] \
        --ros-args -r image:=/camera/image_raw -p expression_node:backend:=onnxruntime

Each node reads its section of the same config/*.yaml files as the separate executables; the
package's files are loaded first, so --params-file and -p given on the command line override them.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rclpy.context import Context
from rclpy.node import Node
from rclpy.utilities import remove_ros_args

from fer3d_ros.core.files import find_shared_file
from fer3d_ros.nodes.emotion_node import EmotionNode
from fer3d_ros.nodes.expression_node import ExpressionNode
from fer3d_ros.nodes.face_node import FaceNode
from fer3d_ros.nodes.overlay_node import OverlayNode
from fer3d_ros.nodes.process import run_nodes
from fer3d_ros.nodes.stress_node import StressNode

# Stage name -> (node class, its config file), in data-flow order.
STAGES = {
    'face': (FaceNode, 'face.yaml'),
    'expression': (ExpressionNode, 'expression.yaml'),
    'emotion': (EmotionNode, 'emotion.yaml'),
    'stress': (StressNode, 'stress.yaml'),
    'overlay': (OverlayNode, 'overlay.yaml'),
}
REQUIRED_STAGES = ('face', 'expression', 'emotion')


def stages(stress: bool = True, overlay: bool = False) -> list[str]:
    return [*REQUIRED_STAGES, *(['stress'] if stress else []), *(['overlay'] if overlay else [])]


def config_arguments(names: Sequence[str]) -> list[str]:
    """A --ros-args section loading the packaged config file of each stage, to go before the user's
    arguments (so that theirs override it); '--' closes the section."""
    arguments = ['--ros-args']
    for name in names:
        arguments += ['--params-file', str(find_shared_file('config', STAGES[name][1]))]
    return [*arguments, '--']


def create_nodes(context: Context, names: Sequence[str]) -> list[Node]:
    """One node per stage in `context`; each reads its parameters from the context's arguments."""
    nodes: list[Node] = []
    try:
        for name in names:
            nodes.append(STAGES[name][0](context=context))
    except Exception:
        for node in nodes:
            node.destroy_node()
        raise
    return nodes


def _flag(text: str) -> bool:
    if text.lower() not in ('true', 'false'):
        raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')
    return text.lower() == 'true'


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='fer3d_pipeline', description=__doc__.split('\n\n')[0],
                                     epilog='ROS arguments (remappings, parameters) follow --ros-args.')
    parser.add_argument('--stress', type=_flag, default=True, metavar='true|false', help='run stress_node')
    parser.add_argument('--overlay', type=_flag, default=False, metavar='true|false',
                        help='run overlay_node (debug/image, drawn only while subscribed)')
    return parser.parse_args(remove_ros_args(list(argv))[1:])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    options = parse_options(argv)
    names = stages(options.stress, options.overlay)

    def create(context: Context) -> list[Node]:
        nodes = create_nodes(context, names)
        nodes[0].get_logger().info(f'fer3d_pipeline running {", ".join(names)} in one process')
        return nodes

    return run_nodes('fer3d_pipeline', create, [argv[0], *config_arguments(names), *argv[1:]])


if __name__ == '__main__':
    raise SystemExit(main())
