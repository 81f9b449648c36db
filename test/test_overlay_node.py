"""overlay_node over real topics, and the drawing it uses."""
import numpy as np
from builtin_interfaces.msg import Time
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import Image

from fer3d_ros.core import overlay
from fer3d_ros.core.drawing import FaceAnnotation, annotate
from fer3d_ros.core.image_conversion import image_to_numpy, numpy_to_image
from fer3d_ros.core.overlay import Overlay
from fer3d_ros.msg import Emotion, EmotionArray, Face, FaceArray, FaceMotion, FaceMotionArray, Stress, StressArray
from fer3d_ros.nodes.overlay_node import OverlayNode

BOX = (40, 30, 120, 110)  # x0, y0, x1, y1 in a 160 x 120 image


def landmarks_in(box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.stack([np.linspace(x0 + 10, x1 - 10, 68), np.linspace(y0 + 10, y1 - 10, 68)], axis=1)


def frame(seconds: int, pixels=None):
    """One camera image and the FaceArray, EmotionArray and StressArray of its stamp."""
    image = numpy_to_image(np.full((120, 160, 3), 90, np.uint8) if pixels is None else pixels, 'bgr8')
    x0, y0, x1, y1 = BOX
    faces = FaceArray(image_width=160, image_height=120, faces=[Face(
        id='f0001', confirmed=True, confidence=0.9, x=float(x0), y=float(y0), width=float(x1 - x0),
        height=float(y1 - y0), landmarks=landmarks_in(BOX).astype(np.float32).ravel())])
    emotions = EmotionArray(labels=['neutral', 'happy'], emotions=[Emotion(
        id='f0001', label=Emotion.HAPPY, confidence=0.8, probabilities=[0.2, 0.8])])
    stress = StressArray(stresses=[Stress(id='f0001', probability=0.7, label=Stress.STRESSED)])
    for msg in (image, faces, emotions, stress):
        msg.header.stamp, msg.header.frame_id = Time(sec=seconds, nanosec=500), 'camera_optical'
    return image, faces, emotions, stress


class Graph:
    """The overlay node and a client publishing its inputs (and, when `watch`, reading debug/image)."""

    def __init__(self, ros, watch: bool = True, **parameters) -> None:
        self.ros = ros
        self.node = ros.add(OverlayNode(context=ros.context, parameter_overrides=[
            Parameter(name, value=value) for name, value in parameters.items()]))
        client = ros.node('client')
        self.received = []
        if watch:
            client.create_subscription(Image, 'debug/image', self.received.append, 10)
        self.publishers = [client.create_publisher(kind, topic, 10) for kind, topic in (
            (Image, 'image'), (FaceArray, 'faces'), (EmotionArray, 'emotions'), (StressArray, 'stress'))]
        # image_reliability auto: the node moves to a reliable subscription once it hears this publisher
        assert ros.spin_until(lambda: self.node.image_input.reliability == ReliabilityPolicy.RELIABLE)
        for publisher in self.publishers:
            ros.wait_for_subscribers(publisher)
        if watch:
            assert ros.spin_until(lambda: self.node.publisher.get_subscription_count() > 0)

    def send(self, image, faces, emotions, stress) -> None:
        """Results first and the image last, so that the emotions and stress are known when it is drawn."""
        for publisher, msg in zip(self.publishers[::-1], (stress, emotions, faces, image)):
            publisher.publish(msg)
            self.ros.spin_for(0.05)


def test_draws_faces_emotions_and_stress_on_the_image_of_their_stamp(ros):
    graph = Graph(ros)
    image, *results = frame(7)
    graph.send(image, *results)
    assert ros.spin_until(lambda: graph.received)
    (debug,) = graph.received
    assert debug.header == image.header and debug.encoding == 'bgr8'
    assert (debug.width, debug.height) == (image.width, image.height)
    changed = np.any(image_to_numpy(debug) != image_to_numpy(image), axis=2)
    x0, y0, x1, y1 = BOX
    assert changed[y0:y1 + 1, x0:x1 + 1].any()  # box and landmarks
    assert changed[y1 + 2:, x0:x1 + 1].sum() > 100  # the emotion and stress bars under the box
    assert not graph.node.stage.images and not graph.node.stage.faces  # matched frames leave the cache


def test_nothing_is_drawn_while_nobody_subscribes(ros, monkeypatch):
    drawn = []
    monkeypatch.setattr(overlay, 'annotate', lambda image, faces: drawn.append(faces))
    graph = Graph(ros, watch=False)
    graph.send(*frame(1))
    assert ros.spin_until(lambda: graph.node.unwatched_images == 1, timeout=2.0)
    ros.spin_for(0.2)
    assert drawn == [] and not graph.node.stage.images and graph.node.diagnostics.processed == 0  # none published


def test_a_bad_image_is_reported_and_the_next_good_one_drawn(ros):
    graph = Graph(ros)
    truncated, *results = frame(1)
    truncated.data = truncated.data[:100]
    graph.send(truncated, *results)
    wrong_encoding, *results = frame(2)
    wrong_encoding.encoding = 'yuv422'
    graph.send(wrong_encoding, *results)
    good, *results = frame(3)
    graph.send(good, *results)
    assert ros.spin_until(lambda: graph.received)
    ros.spin_for(0.1)
    assert [m.header.stamp.sec for m in graph.received] == [3]
    diagnostics = graph.node.diagnostics
    assert diagnostics.bad_inputs == 2 and 'yuv422' in diagnostics.last_error and diagnostics.processed == 1


def test_cache_size_changes_at_run_time(ros):
    graph = Graph(ros)
    for seconds in range(1, 6):  # images whose faces never come; one at a time (the image queue is 1 deep)
        graph.publishers[0].publish(frame(seconds)[0])
        assert ros.spin_until(lambda: len(graph.node.stage.images) == seconds)
    assert ros.set_parameters('/overlay_node', cache_size=2).successful
    assert [stamp // 10**9 for stamp in graph.node.stage.images] == [4, 5]  # the newest two
    refused = ros.set_parameters('/overlay_node', cache_size=0)
    assert not refused.successful and 'Min: 1, Max: 1000' in refused.reason


def motion_through_the_box(shift_mm) -> FaceMotionArray:
    """f0001's motion: a 9 x 9 grid of points over BOX (160 x 120 image, 2 px per mm), all moved by shift_mm."""
    x0, y0, x1, y1 = BOX
    u, v = np.meshgrid(np.linspace(x0 + 5, x1 - 5, 9), np.linspace(y0 + 5, y1 - 5, 9))
    positions = np.stack([(u.ravel() - 80) / 2.0, (v.ravel() - 60) / 2.0, np.zeros(u.size)], axis=1)
    rigid = np.tile(np.asarray(shift_mm, np.float64), (u.size, 1))
    motion = FaceMotionArray(vertices=np.arange(u.size, dtype=np.uint32), faces=[FaceMotion(
        id='f0001', positions=positions.astype(np.float32).ravel(), pixels_per_mm=2.0,
        rigid=rigid.astype(np.float32).ravel(), nonrigid=np.zeros(rigid.size, np.float32))])
    motion.header.stamp.sec = 7
    return motion


def test_face_motion_is_drawn_in_its_direction_colour_only_with_draw_motion(ros):
    graph = Graph(ros, draw_motion=True, motion_full_scale_mm=1.0)
    client = ros.node('motion_client')
    motion_publisher = client.create_publisher(FaceMotionArray, 'face_motion', 10)
    ros.wait_for_subscribers(motion_publisher)
    motion_publisher.publish(motion_through_the_box([1.0, 0.0, 0.0]))  # to the right, full scale: pure red
    assert ros.spin_until(lambda: 'f0001' in graph.node.stage.latest_motion)
    graph.send(*frame(7, np.zeros((120, 160, 3), np.uint8)))
    assert ros.spin_until(lambda: graph.received)
    drawn = image_to_numpy(graph.received[0]).astype(int)
    red = (drawn[..., 2] > 200) & (drawn[..., 1] < 60) & (drawn[..., 0] < 60)
    assert red[BOX[1]:BOX[3], BOX[0]:BOX[2]].sum() > 81  # the grid's dots
    assert not red[:BOX[1] - 3].any() and not red[BOX[3] + 3:BOX[3] + 4].any()


def test_without_draw_motion_the_overlay_does_not_ask_for_face_motion(ros):
    graph = Graph(ros)
    assert graph.node.count_subscribers('face_motion') == 0  # expression_node would compute it for nobody


def test_motion_of_the_wrong_size_or_not_finite_is_said_when_it_comes_and_not_kept(ros):
    graph = Graph(ros, draw_motion=True)
    graph.node.on_motion(motion_through_the_box([0.5, 0.0, 0.0]))
    assert 'f0001' in graph.node.stage.latest_motion
    motion = motion_through_the_box([0.5, 0.0, 0.0])
    motion.faces[0].rigid = motion.faces[0].rigid[:-1]
    graph.node.on_motion(motion)
    assert 'f0001' not in graph.node.stage.latest_motion  # its last good motion is not drawn for it either
    assert graph.node.diagnostics.last_error == 'f0001: 243 position, 242 rigid and 243 non-rigid values (3 per point)'
    motion = motion_through_the_box([0.5, 0.0, 0.0])
    motion.faces[0].pixels_per_mm = float('nan')
    graph.node.on_motion(motion)
    assert 'f0001' not in graph.node.stage.latest_motion and 'not finite' in graph.node.diagnostics.last_error
    image, without_motion = np.zeros((120, 160, 3), np.uint8), np.zeros((120, 160, 3), np.uint8)
    graph.node.stage.draw(image, frame(7)[1], {})
    Overlay(graph.node.settings.value).draw(without_motion, frame(7)[1], {})
    assert np.array_equal(image, without_motion)  # the frame is drawn without the face's motion


def test_annotate_draws_box_landmarks_and_bars_in_place():
    image = np.zeros((240, 320, 3), np.uint8)
    annotate(image, [FaceAnnotation('f0001', BOX, landmarks_in(BOX), emotion='happy', confidence=0.75,
                                    stress=0.9),
                     FaceAnnotation('f0002', (200, 20, 300, 100), None, confirmed=False)])
    x0, y0, x1, y1 = BOX
    drawn = image.any(axis=2)
    assert drawn[y0, x0:x1].all() and drawn[y0 + 10, x0 + 10]  # box edge and first landmark
    below = drawn[y1 + 2:, x0:x1 + 1]
    assert below.sum() > 200  # emotion text and bar, stress text and bar
    assert drawn[110:, 200:301].sum() == 0  # a face without emotion or stress has nothing under it


def test_annotate_leaves_out_non_finite_or_absurd_values_and_draws_the_rest():
    image = np.zeros((240, 320, 3), np.uint8)
    landmarks = landmarks_in(BOX)
    landmarks[0], landmarks[1] = np.nan, 1e30
    problems = annotate(image, [
        FaceAnnotation('f0001', BOX, landmarks, emotion='happy', confidence=float('nan'), stress=0.9),
        FaceAnnotation('f0002', (np.inf, 20, 1e30, 100), landmarks_in((200, 20, 300, 100)), emotion='sad',
                       confidence=0.5, stress=float('nan'))])
    assert problems == ['f0001: 2 landmarks, emotion confidence nan not drawn',
                        'f0002: box (inf, 20, 1e+30, 100), stress nan not drawn']
    x0, y0, x1, y1 = BOX
    drawn = image.any(axis=2)
    assert drawn[y0, x0:x1].all() and drawn[y1 + 2:, x0:x1 + 1].sum() > 200  # box, emotion text, stress bar
    assert drawn[30, 210] and not drawn[100, 200:301].any()  # f0002: its landmarks, not its box
    assert drawn[101:, 200:301].sum() == 0  # nor bars: they go under a box


def test_a_face_with_non_finite_values_is_drawn_without_them_and_said_once(ros):
    graph = Graph(ros)
    image, faces, emotions, stress = frame(1)
    emotions.emotions[0].confidence = float('nan')
    graph.send(image, faces, emotions, stress)
    image, faces, emotions, stress = frame(2)
    faces.faces[0].width, faces.faces[0].landmarks[0] = float('inf'), 1e30
    graph.send(image, faces, emotions, stress)
    assert ros.spin_until(lambda: len(graph.received) == 2)
    diagnostics = graph.node.diagnostics
    assert diagnostics.bad_inputs == 2
    assert diagnostics.last_error == 'f0001: box (40, 30, inf, 110), 1 landmarks not drawn'

