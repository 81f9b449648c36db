"""What a robot gets: nodes started as `ros2 run` starts them, with the environment a robot's shell
has (no thread-pool variables), fed through real topics from another process."""
import os

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from processes import start_node
from sensor_msgs.msg import Image

from fer3d_ros.core.image_conversion import numpy_to_image
from fer3d_ros.core.sample_data import pyfeat_media
from fer3d_ros.core.video import read_frames
from fer3d_ros.msg import ExpressionArray
from fer3d_ros.nodes.common import RELIABLE_QOS

CLIP = pyfeat_media('WolfgangLanger_Pexels.mp4')


def clip_frames(count: int) -> list[np.ndarray]:
    return list(read_frames(CLIP, max_frames=count))


class NodeDiagnostics:
    """The latest /diagnostics values of each node, by its fully qualified name."""

    def __init__(self, node) -> None:
        self.latest: dict[str, dict[str, str]] = {}
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_array, 100)

    def _on_array(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.latest[status.name] = {kv.key: kv.value for kv in status.values}

    def __getitem__(self, name: str) -> dict[str, str]:
        return self.latest.get(name, {})


def pool_sizes(diagnostics: dict[str, str]) -> dict[str, int]:
    """'blas 1, openmp 1, opencv 1' -> {'blas': 1, ...}"""
    return {kind: int(size) for kind, size in (item.split() for item in diagnostics['library_threads'].split(', '))}


@pytest.mark.parametrize('library_threads', [None, 0])
def test_nodes_started_without_thread_variables_limit_their_own_pools(ros, tmp_path, library_threads):
    """face_node and expression_node with a calibrating face, started with a robot's environment:
    every BLAS, OpenMP and OpenCV pool of their processes is one thread (the default), read back
    from the libraries. library_threads:=0 leaves the libraries' own sizes (one per core)."""
    arguments = [] if library_threads is None else ['-p', f'library_threads:={library_threads}']
    face = start_node('face_node', tmp_path / 'face.log', *arguments)
    expression = start_node('expression_node', tmp_path / 'expression.log', '-p', 'backend:=onnxruntime', *arguments)
    client = ros.node('client')
    diagnostics = NodeDiagnostics(client)
    expressions = []
    client.create_subscription(ExpressionArray, 'expressions', expressions.append, RELIABLE_QOS)
    camera = client.create_publisher(Image, 'image', RELIABLE_QOS)
    try:
        assert ros.spin_until(lambda: camera.get_subscription_count() and expression.running() and
                              client.count_publishers('expressions'), 60), expression.output
        calibrating = lambda: int(diagnostics['/expression_node'].get('calibrated_tracks', '0')) > 0
        for index, frame in enumerate(clip_frames(60) * 3):
            msg = numpy_to_image(frame, 'bgr8')
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(index * 50_000_000, 10**9)
            camera.publish(msg)
            ros.spin_for(0.05)
            if calibrating() and index > 60:
                break
        assert ros.spin_until(calibrating, 10), f'no calibrating face:\n{expression.output[-3000:]}'
        assert any(e.expressions for e in expressions)
        expected = (os.cpu_count() or 1) if library_threads == 0 else 1
        for name in ('/face_node', '/expression_node'):
            sizes = pool_sizes(diagnostics[name])
            assert sizes['blas'] == sizes['opencv'] == expected, (name, sizes)
            assert sizes.get('openmp', expected) == expected, (name, sizes)
    finally:
        face.stop()
        expression.stop()
