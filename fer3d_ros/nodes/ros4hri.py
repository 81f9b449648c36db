"""REP-155 (ROS4HRI) output: fer3d_ros as the face and expression source of a ROS4HRI robot.

With the parameter `ros4hri` true, each node publishes its part from the stage it already runs (no
second pipeline), with the camera image's header on every message:
- face_node: `/humans/faces/tracked` (hri_msgs/IdsList, every frame), `/humans/candidate_matches`
  (hri_msgs/IdsMatch: face <-> person once recognised; confidence 0 when the face ends), and per
  face `roi`, `cropped`, `aligned`, `landmarks`;
- expression_node: per face `facs` (hri_msgs/FacialActionUnits);
- emotion_node: per face `expression` (hri_msgs/Expression).
A face's topics, /humans/faces/<id>/..., are made on the first frame its track is confirmed and
removed when it is no longer tracked. They are reliable and keep the face's last second (transient
local): a consumer that subscribes on seeing a new id in /humans/faces/tracked, as libhri does,
still gets the frames before its subscription matched. hri_msgs comes from the ROS distribution
(ros-<distro>-hri-msgs); asked for without it, the node refuses to start and says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fer3d_ros.core.expression.action_units import ActionUnit, Reading
from fer3d_ros.core.frontend.front_end import FaceObservation
from fer3d_ros.core.image_conversion import numpy_to_image
from fer3d_ros.core.settings import setting

TRACKED_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# A face's last second at 30 fps (its images: the last few), kept for subscribers that join late.
FACE_QOS = QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
FACE_IMAGE_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Our classes -> hri_msgs/Expression's constants.
EXPRESSIONS = {'neutral': 'NEUTRAL', 'happy': 'HAPPY', 'sad': 'SAD', 'surprise': 'SURPRISED', 'fear': 'SCARED',
               'disgust': 'DISGUSTED', 'anger': 'ANGRY'}
PUPILS = (68, 69)  # FacialLandmarks' RIGHT_PUPIL, LEFT_PUPIL: dlib's 68 points have none


@dataclass(frozen=True)
class Ros4hriSettings:
    ros4hri: bool = setting(False, 'Also publish REP-155 (ROS4HRI) topics under /humans/faces (needs hri_msgs: '
                            'ros-<distro>-hri-msgs).')


@dataclass(frozen=True)
class FaceRos4hriSettings(Ros4hriSettings):
    ros4hri_face_size: int = setting(128, 'Width and height in pixels of /humans/faces/<id>/cropped and aligned (the '
                                     "REP's /humans/faces/width and height): the face scaled, centred and "
                                     'zero-padded.', minimum=16, maximum=1024)


def hri_messages():
    """hri_msgs.msg, or a RuntimeError that says how to get it."""
    try:
        from hri_msgs import msg
    except ImportError as error:
        raise RuntimeError(f'ros4hri is true but hri_msgs cannot be imported ({error}): install it '
                           '(apt install ros-$ROS_DISTRO-hri-msgs, or build ros4hri/hri_msgs in your workspace), '
                           'or set ros4hri false') from None
    return msg


class FaceTopics:
    """The per-face REP-155 topics one node publishes, made on a face's first message and destroyed
    when the face is no longer tracked."""

    def __init__(self, node, kinds: dict[str, tuple[type, QoSProfile]]) -> None:
        self.node, self.kinds = node, kinds
        self.publishers: dict[str, dict] = {}

    def publish(self, face_id: str, kind: str, msg) -> None:
        if face_id not in self.publishers:
            self.publishers[face_id] = {name: self.node.create_publisher(message, f'/humans/faces/{face_id}/{name}',
                                                                         qos)
                                        for name, (message, qos) in self.kinds.items()}
        self.publishers[face_id][kind].publish(msg)

    def keep(self, ids) -> list[str]:
        """Remove the topics of every face not in `ids`; the faces that ended."""
        ended = [face_id for face_id in self.publishers if face_id not in ids]
        for face_id in ended:
            for publisher in self.publishers.pop(face_id).values():
                self.node.destroy_publisher(publisher)
        return ended

    def close(self) -> None:
        self.keep(())


class FaceOutput:
    """face_node's REP-155 topics: the tracked faces, their matches with people, and per face its
    region, cropped and aligned images and landmarks."""

    def __init__(self, node, face_size: int) -> None:
        self.hri = hri = hri_messages()
        self.face_size = face_size
        self.tracked = node.create_publisher(hri.IdsList, '/humans/faces/tracked', TRACKED_QOS)
        self.matches = node.create_publisher(hri.IdsMatch, '/humans/candidate_matches', TRACKED_QOS)
        self.topics = FaceTopics(node, {'roi': (hri.NormalizedRegionOfInterest2D, FACE_QOS),
                                        'landmarks': (hri.FacialLandmarks, FACE_QOS),
                                        'cropped': (Image, FACE_IMAGE_QOS), 'aligned': (Image, FACE_IMAGE_QOS)})
        self.node = node
        self.person_of: dict[str, str] = {}  # face id -> the person last announced for it

    def publish(self, header, image: np.ndarray, faces: list[FaceObservation]) -> None:
        confirmed = [face for face in faces if face.confirmed]
        height, width = image.shape[:2]
        for face in confirmed:
            self.topics.publish(face.id, 'roi', self.roi(header, face, width, height))
            self.topics.publish(face.id, 'landmarks', self.landmarks(header, face, width, height))
            self.topics.publish(face.id, 'cropped', numpy_to_image(square(image, face.box, self.face_size), 'bgr8',
                                                                   header))
            if face.crop is not None:  # face_node's publish_crops
                aligned = cv2.resize(face.crop, (self.face_size, self.face_size), interpolation=cv2.INTER_AREA)
                self.topics.publish(face.id, 'aligned', numpy_to_image(aligned, 'bgr8', header))
            if face.person_id and self.person_of.get(face.id) != face.person_id:
                self.match(face.id, face.person_id, face.person_confidence)
        self.tracked.publish(self.hri.IdsList(header=header, ids=[face.id for face in confirmed]))
        for face_id in self.topics.keep({face.id for face in confirmed}):
            if face_id in self.person_of:  # REP-155: a face that ended is no longer that person
                self.match(face_id, self.person_of.pop(face_id), 0.0)

    def match(self, face_id: str, person_id: str, confidence: float) -> None:
        match = self.hri.IdsMatch
        self.matches.publish(match(id1=face_id, id1_type=match.FACE, id2=person_id, id2_type=match.PERSON,
                                   confidence=float(confidence)))
        if confidence > 0:
            self.person_of[face_id] = person_id

    def roi(self, header, face: FaceObservation, width: int, height: int):
        x0, y0, x1, y1 = np.clip(np.asarray(face.box, np.float64) / [width, height, width, height], 0.0, 1.0)
        return self.hri.NormalizedRegionOfInterest2D(header=header, xmin=x0, ymin=y0, xmax=x1, ymax=y1,
                                                     c=float(face.score))

    def landmarks(self, header, face: FaceObservation, width: int, height: int):
        point = self.hri.NormalizedPointOfInterest2D
        points = [point(x=float(x / width), y=float(y / height), c=float(face.score)) for x, y in face.landmarks]
        points += [point(x=0.0, y=0.0, c=0.0) for _ in PUPILS]  # not observed
        return self.hri.FacialLandmarks(header=header, landmarks=points, width=width, height=height)

    def close(self) -> None:
        self.topics.close()
        self.node.destroy_publisher(self.tracked)
        self.node.destroy_publisher(self.matches)


def square(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The box's pixels scaled to fit size x size, centred, the rest zero (REP-155's cropped face)."""
    height, width = image.shape[:2]
    x0, y0 = (max(0, int(math.floor(v))) for v in box[:2])
    x1, y1 = min(width, int(math.ceil(box[2]))), min(height, int(math.ceil(box[3])))
    out = np.zeros((size, size, 3), np.uint8)
    if x1 <= x0 or y1 <= y0:
        return out
    scale = size / max(x1 - x0, y1 - y0)
    w, h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    left, top = (size - w) // 2, (size - h) // 2
    out[top:top + h, left:left + w] = cv2.resize(image[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_AREA)
    return out


class ExpressionOutput:
    """emotion_node's REP-155 topics: each tracked face's expression."""

    def __init__(self, node) -> None:
        self.hri = hri_messages()
        self.topics = FaceTopics(node, {'expression': (self.hri.Expression, FACE_QOS)})

    def publish(self, header, faces: list[tuple[str, str, float]], tracked: set[str]) -> None:
        """(face id, label, confidence) of one frame's faces; `tracked`: the confirmed ones."""
        constants = self.hri.Expression
        for face_id, label, confidence in faces:
            if face_id in tracked:
                # valence and arousal are not measured: no labelled data here (README: Using fer3d_ros with ROS4HRI)
                self.topics.publish(face_id, 'expression', constants(
                    header=header, expression=getattr(constants, EXPRESSIONS[label]), valence=math.nan,
                    arousal=math.nan, confidence=float(confidence)))
        self.topics.keep(tracked)

    def close(self) -> None:
        self.topics.close()


class FacsOutput:
    """expression_node's REP-155 topics: each tracked face's action units."""

    def __init__(self, node) -> None:
        self.hri = hri_messages()
        self.topics = FaceTopics(node, {'facs': (self.hri.FacialActionUnits, FACE_QOS)})

    def publish(self, header, ids: list[str], units: tuple[ActionUnit, ...], reading: Reading,
                tracked: set[str]) -> None:
        """The action units of one frame's faces (rows of `reading`, in the order of `ids`)."""
        intensities = reading.read_intensities()
        for row, face_id in enumerate(ids):
            if face_id in tracked:
                self.topics.publish(face_id, 'facs', facs_message(self.hri.FacialActionUnits, header, units,
                                                                  intensities[row], reading.probabilities[row]))
        self.topics.keep(tracked)

    def close(self) -> None:
        self.topics.close()


def facs_message(message: type, header, units: tuple[ActionUnit, ...], intensities: np.ndarray,
                 probabilities: np.ndarray):
    """FacialActionUnits indexed by FACS number: the AUs read get their intensity and their presence
    probability as confidence (NaN where no presence model was measured: intensity only); every other
    AU is not observed (intensity 0, confidence 0)."""
    intensity, confidence = np.zeros(99, np.float32), np.zeros(99, np.float32)
    for unit, value, probability in zip(units, intensities, probabilities):
        intensity[unit.number], confidence[unit.number] = np.nan_to_num(value), probability
    return message(header=header, intensity=intensity, confidence=confidence)
