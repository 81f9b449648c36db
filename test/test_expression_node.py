"""expression_node over real topics, and the shipped DeepExp3D model on real crops."""
import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from fer3d_ros.core.expression.motion import image_points
from fer3d_ros.core.expression.regressor import default_regressor, load_card
from fer3d_ros.core.files import find_model
from fer3d_ros.core.frontend.front_end import FaceFrontEnd
from fer3d_ros.core.image_conversion import image_to_numpy, numpy_to_image
from fer3d_ros.core.video import read_frames
from fer3d_ros.msg import ActionUnitArray, ExpressionArray, Face, FaceArray, FaceMotionArray
from fer3d_ros.nodes.expression_node import ExpressionNode
from fer3d_ros.nodes.messages import face_message
from fer3d_ros.tools.sample_data import pyfeat_media
from training.paths import SHARED

CKPLUS = SHARED / 'ckplus_128'


@pytest.fixture(scope='module')
def front_end():
    return FaceFrontEnd()


def _crop(front_end, path):
    front_end.tracker.reset()
    (face,) = front_end.process(cv2.imread(str(path))).faces
    return face


def test_model_card_matches_the_network():
    card = load_card(find_model('deepexp3d_mnv2_96.onnx'))
    regressor = default_regressor(backend='onnxruntime')
    assert len(card.expression_names) == 55 and 'jawOpen' in card.expression_names
    out = regressor.predict([np.zeros((224, 224, 3), np.uint8)] * 3)
    assert out.shape == (3, 55) and out.min() >= 0.0 and out.max() <= 1.0


def test_smiles_and_open_jaws_are_read_from_ckplus_apex_frames(front_end):
    """Subjects' happy apexes smile more than their neutral frames; surprised ones open the jaw."""
    regressor = default_regressor(backend='onnxruntime')
    names = regressor.card.expression_names
    smile, jaw = names.index('mouthSmile_L'), names.index('jawOpen')
    happy = sorted((CKPLUS / 'happiness').glob('*.png'))[:8]
    surprise = sorted((CKPLUS / 'surprise').glob('*.png'))[:8]
    neutral = sorted((CKPLUS / 'neutral').glob('*.png'))[:8]
    predict = lambda paths: regressor.predict([_crop(front_end, p).crop for p in paths])
    assert predict(happy)[:, smile].mean() > predict(neutral)[:, smile].mean() + 0.3
    assert predict(surprise)[:, jaw].mean() > predict(neutral)[:, jaw].mean() + 0.2


def test_expressions_follow_faces_with_the_same_header_and_ids(ros, front_end):
    _, publisher, received = _expression_graph(ros)
    image = cv2.imread(str(sorted((CKPLUS / 'happiness').glob('*.png'))[0]))
    front_end.tracker.reset()
    faces = front_end.process(image).faces
    msg = FaceArray(image_width=128, image_height=128,
                    faces=[face_message(face, FaceArray().header) for face in faces])
    msg.header.stamp.sec, msg.header.frame_id = 42, 'camera'
    assert ros.spin_until(lambda: publisher.get_subscription_count() >= 1)
    publisher.publish(msg)
    assert ros.spin_until(lambda: received, timeout=10.0)
    out = received[0]
    assert out.header.stamp.sec == 42 and out.header.frame_id == 'camera'
    assert [e.id for e in out.expressions] == [f.id for f in faces]
    assert len(out.names) == 55 and len(out.expressions[0].coefficients) == 55
    assert len(out.expressions[0].calibrated) == 0


def test_face_arrays_replaced_while_the_network_runs_are_counted(ros, front_end):
    node, publisher, received = _expression_graph(ros)
    face = face_message(_crop(front_end, sorted((CKPLUS / 'happiness').glob('*.png'))[0]), FaceArray().header)
    publisher.publish(FaceArray(faces=[face]))
    assert ros.spin_until(lambda: len(received) == 1)
    for _ in range(4):  # while the node is not spun: the one-deep queue keeps the newest
        publisher.publish(FaceArray(faces=[face]))
    assert ros.spin_until(lambda: len(received) == 2)
    ros.spin_for(0.3)
    figures = node.face_arrays.figures()
    assert (figures['face_arrays_received'], figures['face_arrays_skipped_busy']) == ('2', '3')
    published = {kv.key: kv.value for kv in node.diagnostics.status().values}  # what /diagnostics carries
    assert published['face_arrays_skipped_busy'] == '3'


def test_a_track_seen_at_rest_gets_calibrated_and_a_reset_starts_it_again(ros, front_end):
    """A subject's neutral frame for 30 frames, then their happy apex: the smile stands out against
    their own neutral; ~reset_calibration drops it."""
    # a still image for ~1 s: the 3 s evidence-span guard (test_calibration) is not what is tested here
    node, publisher, received = _expression_graph(ros, **{'calibration.min_neutral_seconds': 0.0})
    happy_path = sorted((CKPLUS / 'happiness').glob('*.png'))[0]
    neutral, happy = (face_message(_crop(front_end, path), FaceArray().header)
                      for path in (happy_path.parent.parent / 'neutral' / (happy_path.name[:9] + '00000001.png'),
                                   happy_path))

    def send(face, frame: int) -> None:
        face.id = 'f0007'
        msg = FaceArray(faces=[face])
        msg.header.stamp.sec, msg.header.stamp.nanosec = frame // 30, (frame % 30) * 33_333_333
        count = len(received)
        publisher.publish(msg)
        assert ros.spin_until(lambda: len(received) > count, timeout=10.0)

    for frame in range(30):
        send(neutral, frame)
    confidences = [e.expressions[0].calibration_confidence for e in received]
    assert confidences[0] < 0.1 and confidences[-1] > 0.5 and np.all(np.diff(confidences) >= 0)
    send(happy, 30)
    out = received[-1]
    smile = list(out.names).index('mouthSmile_L')
    raw, calibrated = out.expressions[0].coefficients, out.expressions[0].calibrated
    assert len(calibrated) == 55 and calibrated[smile] > 0.3
    assert np.allclose(np.asarray(raw) - np.asarray(received[-2].expressions[0].coefficients), calibrated, atol=1e-6)
    reset = ros.node('service_client').create_client(Trigger, '/expression_node/reset_calibration')
    assert reset.wait_for_service(timeout_sec=5.0)
    future = reset.call_async(Trigger.Request())
    assert ros.spin_until(future.done) and future.result().success
    send(happy, 31)
    assert len(received[-1].expressions[0].calibrated) == 0 and received[-1].expressions[0].calibration_confidence == 0
    assert node.diagnostics.extra['calibrated_tracks'] == '1'


def _face(front_end, face_id: str, path=None) -> Face:
    """A Face message as face_node sends it (bgr8 crop), of a CK+ neutral frame."""
    face = face_message(_crop(front_end, path or sorted(CKPLUS.glob('neutral/*.png'))[0]), FaceArray().header)
    face.id = face_id
    return face


def test_a_face_without_a_readable_crop_is_skipped_and_the_others_published(ros, front_end):
    node, publisher, received = _expression_graph(ros)
    no_crop, good, yuv = (_face(front_end, face_id) for face_id in ('f0001', 'f0002', 'f0003'))
    no_crop.crop = Image()
    yuv.crop.encoding = 'yuv422'
    out = _send(ros, publisher, received, [no_crop, good, yuv], 0)
    assert [e.id for e in out.expressions] == ['f0002']
    assert node.diagnostics.bad_inputs == 2
    assert "f0003: unsupported image encoding 'yuv422'" in node.diagnostics.last_error
    out = _send(ros, publisher, received, [no_crop], 1)
    assert out.expressions == [] and 'f0001: no aligned crop (set face_node' in node.diagnostics.last_error


def test_a_face_with_non_finite_landmarks_is_published_uncalibrated_with_a_clear_reason(ros, front_end):
    node, publisher, received = _expression_graph(ros)
    nan, good = _face(front_end, 'f0001'), _face(front_end, 'f0002')
    nan.landmarks[60] = float('nan')
    out = _send(ros, publisher, received, [nan, good], 0)
    assert [(e.id, len(e.calibrated)) for e in out.expressions] == [('f0001', 0), ('f0002', 55)]
    assert node.diagnostics.bad_inputs == 1 and node.diagnostics.last_error == (
        'face f0001: non-finite landmarks (NaN or infinity): cannot fit a face to them; published uncalibrated')


def test_max_faces_keeps_the_largest_faces_and_counts_the_others(ros, front_end):
    node, publisher, received = _expression_graph(ros, max_faces=2)
    faces = [_face(front_end, f'f{k:04d}') for k in range(5)]
    for face, width in zip(faces, (40, 90, 60, 20, 80)):
        face.width = face.height = float(width)
    assert [e.id for e in _send(ros, publisher, received, faces, 0).expressions] == ['f0001', 'f0004']
    assert node.diagnostics.dropped == 3
    assert ros.set_parameters('/expression_node', max_faces=4).successful
    assert [e.id for e in _send(ros, publisher, received, faces, 1).expressions] == ['f0000', 'f0001', 'f0002', 'f0004']
    for face in faces:  # five new tracks
        face.id = 'g' + face.id[1:]
    _send(ros, publisher, received, faces, 2)
    assert len(node.stage.calibrator) == 8  # calibration kept for 2 x max_faces tracks, the most recently seen
    refused = ros.set_parameters('/expression_node', max_faces=0)
    assert not refused.successful and 'Min: 1' in refused.reason


def test_crops_are_read_by_their_encoding(ros, front_end):
    node, publisher, received = _expression_graph(ros)
    front_end.tracker.reset()
    colour = front_end.process(next(read_frames(pyfeat_media('WolfgangLanger_Pexels.mp4')))).faces[0]
    bgr, rgb = (face_message(colour, FaceArray().header) for _ in range(2))
    rgb.id = 'f0002'
    rgb.crop = numpy_to_image(image_to_numpy(bgr.crop)[..., ::-1], 'rgb8', rgb.crop.header)
    out = _send(ros, publisher, received, [bgr, rgb], 0)
    assert np.allclose(out.expressions[0].coefficients, out.expressions[1].coefficients, atol=1e-5)


def _expression_graph(ros, **parameters):
    """An expression_node (ONNX Runtime), a publisher of FaceArrays to it and the ExpressionArrays it sent."""
    overrides = [Parameter(name, value=value) for name, value in {'backend': 'onnxruntime', **parameters}.items()]
    node = ros.add(ExpressionNode(context=ros.context, parameter_overrides=overrides))
    client = ros.node('client')
    received = []
    client.create_subscription(ExpressionArray, 'expressions', received.append, 50)
    publisher = client.create_publisher(FaceArray, 'faces', 50)
    ros.wait_for_subscribers(publisher)
    return node, publisher, received


def _send(ros, publisher, received, faces, frame: int, size: tuple[int, int] = (0, 0)) -> ExpressionArray:
    """Publish one FaceArray (frame n of a 30 frames/s stream, images width x height) and return the
    ExpressionArray it gave."""
    msg = FaceArray(faces=faces, image_width=size[0], image_height=size[1])
    msg.header.stamp.sec, msg.header.stamp.nanosec = frame // 30, (frame % 30) * 33_333_333
    count = len(received)
    publisher.publish(msg)
    assert ros.spin_until(lambda: len(received) > count, timeout=10.0)
    return received[-1]


def test_only_confirmed_and_calibration_thresholds_change_at_run_time(ros, front_end):
    # a still image for ~1 s: the 3 s evidence-span guard (test_calibration) is not what is tested here
    node, publisher, received = _expression_graph(ros, **{'calibration.min_neutral_seconds': 0.0})
    neutral = face_message(_crop(front_end, sorted(CKPLUS.glob('neutral/*.png'))[0]), FaceArray().header)
    for frame in range(5):
        out = _send(ros, publisher, received, [neutral], frame)
    assert out.expressions[0].calibration_confidence == pytest.approx(1 - np.exp(-5 / 30), abs=1e-6)
    assert ros.set_parameters('/expression_node', calibration__frames_for_confidence=1.0).successful
    out = _send(ros, publisher, received, [neutral], 5)  # the track's evidence now counts for more
    assert out.expressions[0].calibration_confidence == pytest.approx(1 - np.exp(-6), abs=1e-6)
    assert not neutral.confirmed and ros.set_parameters('/expression_node', only_confirmed=True).successful
    assert _send(ros, publisher, received, [neutral], 6).expressions == []
    out_of_range = ros.set_parameters('/expression_node', calibration__max_activity_mm=50.0)
    assert not out_of_range.successful and 'Max: 20.0' in out_of_range.reason
    refused = ros.set_parameters('/expression_node', calibration__window=10)
    assert not refused.successful and 'read-only' in refused.reason
    assert 'restart the node' in node.describe_parameter('calibration.window').description


def test_missing_model_stops_the_node_with_a_clear_message(ros):
    with pytest.raises(Exception, match='not found'):
        ExpressionNode(context=ros.context, parameter_overrides=[Parameter('model', value='/nope/model.onnx')])


def test_action_units_come_with_the_image_header_only_while_someone_listens(ros, front_end):
    node, publisher, received = _expression_graph(ros)
    happy = face_message(_crop(front_end, sorted((CKPLUS / 'happiness').glob('*.png'))[0]), FaceArray().header)
    _send(ros, publisher, received, [happy], 0)
    assert node.au_publisher.get_subscription_count() == 0  # nobody listened: nothing was read
    units = []
    ros.node('au_client').create_subscription(ActionUnitArray, 'action_units', units.append, 10)
    assert ros.spin_until(lambda: node.au_publisher.get_subscription_count() == 1)
    _send(ros, publisher, received, [happy], 1)
    assert ros.spin_until(lambda: units)
    (face,) = units[0].faces
    assert units[0].header.stamp == received[-1].header.stamp and face.id == happy.id
    by_number = {au.number: au for au in face.action_units}
    assert by_number[12].intensity > by_number[4].intensity  # a smile, not a frown
    assert by_number[12].present and by_number[12].probability > 0.5 and by_number[12].level in 'ABCDE'
    assert not by_number[4].present and np.isnan(by_number[45].probability)  # blinks are not measured on CK+
    assert all(np.isnan(au.calibrated_intensity) for au in face.action_units)  # no calibration after 2 frames
    assert not face.calibrated and face.person_id == happy.person_id  # read raw until the calibration is confident


def test_face_motion_is_published_from_a_track_second_frame_and_only_while_someone_listens(ros, front_end):
    node, publisher, received = _expression_graph(ros)
    frames = list(read_frames(pyfeat_media('WolfgangLanger_Pexels.mp4'), max_frames=3))
    front_end.tracker.reset()
    faces = [face_message(front_end.process(frame).faces[0], FaceArray().header) for frame in frames]
    _send(ros, publisher, received, [faces[0]], 0)
    assert len(node.stage.motion.tracks) == 0  # nobody listened: no motion was computed
    motions = []
    ros.node('motion_client').create_subscription(FaceMotionArray, 'face_motion', motions.append, 10)
    assert ros.spin_until(lambda: node.motion_publisher.get_subscription_count() == 1)
    height, width = frames[0].shape[:2]
    for frame, face in enumerate(faces[1:], start=1):
        _send(ros, publisher, received, [face], frame, (width, height))
    assert ros.spin_until(lambda: len(motions) == 2)
    assert motions[0].faces == [] and len(motions[1].faces) == 1  # a track's first frame has no motion yet
    (moved,) = motions[1].faces
    count = len(motions[1].vertices)
    assert count == 500 and len(moved.positions) == len(moved.rigid) == len(moved.nonrigid) == 3 * count
    assert motions[1].header.stamp == received[-1].header.stamp
    assert np.abs(np.asarray(moved.rigid) + np.asarray(moved.nonrigid)).max() < 50.0  # mm between two frames
    # the points are seen where the face is: most inside its box (the model's face area reaches the
    # ears and the neck, beyond the box), spread over most of it
    points = image_points(np.reshape(moved.positions, (-1, 3)), moved.pixels_per_mm, width, height)
    box = faces[2]
    inside = (points >= [box.x, box.y]).all(axis=1) & (points <= [box.x + box.width, box.y + box.height]).all(axis=1)
    assert inside.mean() > 0.5
    assert np.all(np.ptp(points[inside], axis=0) > [0.6 * box.width, 0.6 * box.height])
