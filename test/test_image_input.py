"""Camera frames of every size reach face_node across processes, and every frame is accounted for."""
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from processes import start_node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fer3d_ros.msg import FaceArray
from fer3d_ros.nodes.face_node import FaceNode
from fer3d_ros.nodes.image_input import QUEUE_DEPTH, FrameAccount, reliability_to_match
from fer3d_ros.tools.sample_data import pyfeat_media

RELIABLE, BEST_EFFORT = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
CLIP = pyfeat_media('WolfgangLanger_Pexels.mp4')


def test_auto_reliability_hears_every_publisher():
    assert reliability_to_match([]) is None
    assert reliability_to_match([RELIABLE, RELIABLE]) == RELIABLE
    assert reliability_to_match([RELIABLE, BEST_EFFORT]) == BEST_EFFORT  # a reliable reader cannot hear BE


def test_sequence_gaps_not_lost_in_transport_are_frames_skipped_while_busy():
    account = FrameAccount()
    for publisher, sequence in [(b'a', 1), (b'a', 2), (b'a', 5), (b'b', 1), (b'b', 3), (b'a', 6), (b'a', 1)]:
        account.record(publisher, sequence)  # (b'a', 1) again: that publisher restarted
    account.lost_in_transport = 1
    assert (account.received, account.gaps, account.skipped_busy, account.before_first) == (7, 3, 2, 0)
    account.record(b'c', 4)  # a camera that had sent 3 frames before this one
    assert account.before_first == 3 and account.gaps == 3
    account.record(b'a', None)
    assert account.figures()['frames_skipped_busy'].startswith('n/a')


def test_a_node_that_drains_its_queue_counts_gaps_as_lost_and_its_own_drops_as_skipped():
    account = FrameAccount(drains_queue=True)
    account.record(b'a', 1)
    account.skip(b'a', 2)  # taken off the queue, dropped for the newer 3
    account.record(b'a', 3)
    account.record(b'a', 7)  # 4, 5, 6 never reached the node
    assert (account.received, account.skipped_busy, account.lost) == (3, 1, 3)
    assert account.figures()['frames_lost_in_transport'] == '3'


@pytest.mark.parametrize('publisher_reliability, expected', [(RELIABLE, 'reliable (auto)'),
                                                              (BEST_EFFORT, 'best_effort (auto)')])
def test_auto_subscribes_as_the_camera_publishes(ros, publisher_reliability, expected):
    node = ros.add(FaceNode(context=ros.context, parameter_overrides=[Parameter('publish_crops', value=False)]))
    publisher = ros.node('camera').create_publisher(Image, 'image', QoSProfile(depth=5,
                                                                                reliability=publisher_reliability))
    assert ros.spin_until(lambda: node.image_input.subscription.qos_profile.reliability == publisher_reliability)
    ros.wait_for_subscribers(publisher)
    assert node.image_input.subscription.qos_profile.depth == QUEUE_DEPTH
    assert node.diagnostics.extra['image_reliability'] == expected


def test_the_node_works_on_the_newest_queued_frame_and_counts_the_older_as_skipped(ros):
    overrides = [Parameter('publish_crops', value=False), Parameter('image_reliability', value='reliable')]
    node = ros.add(FaceNode(context=ros.context, parameter_overrides=overrides))
    faces = []
    ros.node('listener').create_subscription(FaceArray, 'faces', faces.append, 10)
    publisher = ros.node('camera').create_publisher(Image, 'image', QoSProfile(depth=5, reliability=RELIABLE))
    ros.wait_for_subscribers(publisher)
    ros.spin_for(0.5)
    for second in (1, 2):  # both queued before the node runs
        publisher.publish(Image(height=48, width=64, encoding='mono8', step=64, data=bytes(48 * 64)))
        publisher.publish(Image(height=48, width=64, encoding='mono8', step=64, data=bytes(48 * 64)))
        faces_before = len(faces)
        frame = Image(height=48, width=64, encoding='mono8', step=64, data=bytes(48 * 64))
        frame.header.stamp.sec = second
        publisher.publish(frame)
        assert ros.spin_until(lambda: len(faces) > faces_before)
        ros.spin_for(0.3)
    assert [array.header.stamp.sec for array in faces] == [1, 2]
    account = node.image_input.account  # each round: two frames taken off the queue and dropped unread
    assert (account.received, account.before_first, account.skipped_busy, account.lost) == (2, 0, 4, 0)


def test_a_fixed_reliability_is_kept_whatever_the_publishers(ros):
    node = ros.add(FaceNode(context=ros.context, parameter_overrides=[Parameter('image_reliability',
                                                                                value='best_effort')]))
    publisher = ros.node('camera').create_publisher(Image, 'image', QoSProfile(depth=5, reliability=RELIABLE))
    ros.wait_for_subscribers(publisher)
    ros.spin_for(1.5)  # past the periodic re-check
    assert node.image_input.subscription.qos_profile.reliability == BEST_EFFORT


def accounted(figures: dict) -> int:
    """Frames the node's account explains: answered, skipped, lost, or sent before its first one."""
    keys = ('frames_received', 'frames_skipped_busy', 'frames_lost_in_transport', 'frames_before_first')
    return sum(int(figures.get(key, 0)) for key in keys)


def test_image_reliability_changes_at_run_time(ros):
    node = ros.add(FaceNode(context=ros.context, parameter_overrides=[Parameter('publish_crops', value=False)]))
    publisher = ros.node('camera').create_publisher(Image, 'image', QoSProfile(depth=5, reliability=RELIABLE))
    assert ros.spin_until(lambda: node.image_input.reliability == RELIABLE)
    assert ros.set_parameters('/face_node', image_reliability='best_effort').successful
    assert node.image_input.subscription.qos_profile.reliability == BEST_EFFORT
    ros.wait_for_subscribers(publisher)
    refused = ros.set_parameters('/face_node', image_reliability='sometimes')
    assert not refused.successful and 'auto, reliable or best_effort' in refused.reason
    assert ros.set_parameters('/face_node', image_reliability='auto').successful
    assert ros.spin_until(lambda: node.image_input.reliability == RELIABLE)  # as the publisher offers


def face_node_figures(diagnostics: list) -> dict:
    """The latest transport figures face_node published on /diagnostics."""
    for array in reversed(diagnostics):
        if array.status[0].name.endswith('/face_node'):
            return {kv.key: kv.value for kv in array.status[0].values}
    return {}


@pytest.mark.parametrize('width, height, rate', [(640, 480, 30.0), (1280, 720, 10.0), (1920, 1080, 30.0)])
def test_every_frame_from_a_reliable_camera_process_is_answered_or_counted_as_skipped(ros, tmp_path, width, height,
                                                                                      rate):
    frames = 30
    face_node = start_node('face_node', tmp_path / 'face_node.log')
    client = ros.node('client')
    answers, diagnostics = [], []
    client.create_subscription(FaceArray, 'faces', answers.append, 100)
    client.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 100)
    # the camera starts once face_node listens; the client must hear face_node before that
    assert ros.spin_until(lambda: face_node_figures(diagnostics) and client.count_publishers('/faces'), 60), \
        face_node.output
    camera = start_node('video_camera', tmp_path / 'camera.log', '-p', f'video:={CLIP}', '-p', f'width:={width}',
                        '-p', f'height:={height}', '-p', f'rate:={rate}', '-p', f'frames:={frames}')
    try:
        assert ros.spin_until(lambda: not camera.running(), 60), 'the camera did not finish'
        ros.spin_until(lambda: accounted(face_node_figures(diagnostics)) == frames, 15)
        figures = face_node_figures(diagnostics)
    finally:
        camera.stop(), face_node.stop()
    assert camera.popen.returncode == 0 and f'published {frames} frames' in camera.output, camera.output
    assert figures['image_reliability'] == 'reliable (auto)' and figures['frames_lost_in_transport'] == '0'
    assert int(figures['frames_received']) == len(answers) > 0, figures
    # every frame: answered, skipped while busy, or sent before the connection was complete both ways
    # (discovery under load can lag by a second; the count says so rather than losing them)
    assert accounted(figures) == frames, figures
    assert answers[0].image_width == width and answers[0].image_height == height
    assert all(answer.faces for answer in answers)
