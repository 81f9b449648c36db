"""Every custom message travels between two real nodes and arrives unchanged."""
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from fer3d_ros.core.image_conversion import numpy_to_image
from fer3d_ros.msg import Emotion, EmotionArray, Expression, ExpressionArray, Face, FaceArray, Stress, StressArray


# Scalars are exact in float32 so that what arrives compares equal to what was sent.
def _header():
    header = Header(frame_id='camera_optical_frame')
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 123_456_789
    return header


def _face():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    return Face(id='f0003', confirmed=True, confidence=0.875, x=10.0, y=20.0, width=80.0,
                height=90.0, landmarks=rng.uniform(0, 100, 136).astype(np.float32),
                roll=0.125, pitch=-0.25, yaw=0.375, scale=5.5, tx=40.0, ty=60.0,
                alignment=np.array([1, 0, -10, 0, 1, -20], np.float32),
                crop=numpy_to_image(crop, 'bgr8'))


def _expression():
    return Expression(id='f0003', coefficients=np.linspace(0, 1, 55, dtype=np.float32),
                      calibrated=np.linspace(-0.5, 0.5, 55, dtype=np.float32),
                      calibration_confidence=0.75)


def _emotion():
    return Emotion(id='f0003', label=Emotion.HAPPY, confidence=0.8125,
                   probabilities=np.array([0.05, 0.8, 0.05, 0.04, 0.02, 0.02, 0.02], np.float32),
                   calibrated=True)


def _stress():
    return Stress(id='f0003', probability=0.3125, label=Stress.NOT_STRESSED, window_seconds=10.0,
                  num_samples=300)


LABELS = [Emotion.NEUTRAL, Emotion.HAPPY, Emotion.SAD, Emotion.SURPRISE, Emotion.FEAR,
          Emotion.DISGUST, Emotion.ANGER]
SAMPLES = {
    Face: _face,
    FaceArray: lambda: FaceArray(header=_header(), image_width=640, image_height=480,
                                 faces=[_face(), _face()]),
    Expression: _expression,
    ExpressionArray: lambda: ExpressionArray(header=_header(), model_id='test-model',
                                             names=[f'c{i}' for i in range(55)],
                                             expressions=[_expression()]),
    Emotion: _emotion,
    EmotionArray: lambda: EmotionArray(header=_header(), model_id='test', labels=LABELS,
                                       emotions=[_emotion()]),
    Stress: _stress,
    StressArray: lambda: StressArray(header=_header(), model_id='prior', stresses=[_stress()]),
}


@pytest.mark.parametrize('msg_type', list(SAMPLES), ids=lambda t: t.__name__)
def test_message_arrives_unchanged_between_two_nodes(ros, msg_type):
    sent = SAMPLES[msg_type]()
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    publisher = ros.node('talker').create_publisher(msg_type, 'sample', qos)
    received = []
    ros.node('listener').create_subscription(msg_type, 'sample', received.append, qos)
    ros.wait_for_subscribers(publisher)

    publisher.publish(sent)
    assert ros.spin_until(lambda: received, timeout=10.0), f'no {msg_type.__name__} received'
    assert received[0] == sent


def test_emotion_label_constants_cover_the_seven_classes():
    assert LABELS == ['neutral', 'happy', 'sad', 'surprise', 'fear', 'disgust', 'anger']
