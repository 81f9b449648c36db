"""overlay_node: image + faces + emotions + stress (+ face motion) -> annotated debug image (debug/image),
only when watched."""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from fer3d_ros.core.drawing import FaceAnnotation, annotate, draw_points
from fer3d_ros.core.image_conversion import ImageConversionError, check_message_size, message_to_bgr8, numpy_to_image
from fer3d_ros.core.motion import direction_colours, image_points
from fer3d_ros.msg import EmotionArray, FaceArray, FaceMotionArray, StressArray
from fer3d_ros.nodes.common import (
    RELIABLE_QOS,
    Diagnostics,
    declare,
    declare_library_threads,
    guarded,
    report_problems,
    run_node,
)
from fer3d_ros.nodes.image_input import ImageInput


class RecentCache(OrderedDict):
    """A dict that keeps only the `size` most recently set keys; `evicted` counts the ones it dropped."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.evicted = size, 0

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        self.resize(self.size)

    def resize(self, size: int) -> None:
        """Keep at most `size` keys from now on, dropping the oldest beyond it."""
        self.size = size
        while len(self) > self.size:
            self.popitem(last=False)
            self.evicted += 1


# Largest position, motion (mm) or pixels_per_mm taken from a FaceMotion: 100 m, far beyond any face.
MAX_MOTION_VALUE = 1e5


def stamp_key(header) -> int:
    """Nanoseconds of a header's stamp: what matches results to the image they came from."""
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def face_annotations(faces: FaceArray, emotion_of: Mapping, stress_of: Mapping) -> list[FaceAnnotation]:
    """What to draw for each face: its box, landmarks, emotion and stress (looked up by face id)."""
    annotations = []
    for face in faces.faces:
        emotion, stress = emotion_of.get(face.id), stress_of.get(face.id)
        annotations.append(FaceAnnotation(
            id=face.id, box=(face.x, face.y, face.x + face.width, face.y + face.height),
            landmarks=np.reshape(face.landmarks, (-1, 2)), confirmed=face.confirmed,
            emotion=emotion.label if emotion else None, confidence=emotion.confidence if emotion else None,
            stress=stress.probability if stress else None))
    return annotations


class OverlayNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('overlay_node', **kwargs)
        declare_library_threads(self)
        use_compressed = declare(self, 'use_compressed', False,
                                 'Subscribe to image/compressed (sensor_msgs/CompressedImage, jpeg or png) '
                                 'instead of image (sensor_msgs/Image); set it as face_node\'s.')
        cache_size = declare(self, 'cache_size', 30,
                             'Images, face arrays and emotion arrays kept (each) while waiting for their '
                             'match by stamp; also the most faces whose latest emotion and stress are kept.',
                             minimum=1, maximum=1000, on_change=self.resize_caches)
        draw_motion = declare(self, 'draw_motion', False,
                              'Subscribe to face_motion and draw each face\'s 3D motion points coloured by the '
                              'direction (hue, saturation) and length (value) of their motion since the previous '
                              'frame. Makes expression_node compute the motion (it does only while subscribed).')
        self.motion_full_scale_mm = declare(self, 'motion_full_scale_mm', 2.0,
                                            'Motion between two frames (mm) drawn at full brightness.',
                                            minimum=0.01, maximum=100.0,
                                            on_change=lambda value: setattr(self, 'motion_full_scale_mm', value))
        self.images = RecentCache(cache_size)          # stamp -> Image | CompressedImage
        self.faces = RecentCache(cache_size)           # stamp -> FaceArray
        self.emotions = RecentCache(cache_size)        # stamp -> EmotionArray
        self.latest_emotions = RecentCache(cache_size)  # face id -> Emotion
        self.latest_stress = RecentCache(cache_size)    # face id -> Stress
        self.latest_motion = RecentCache(cache_size)    # face id -> FaceMotion
        self.unwatched_images = 0
        self.diagnostics = Diagnostics(self)
        self.publisher = self.create_publisher(Image, 'debug/image', RELIABLE_QOS)
        guard = guarded(self, self.diagnostics, (ImageConversionError, ValueError))
        self.image_input = ImageInput(self, use_compressed, guard(self.on_image), self.diagnostics)
        self.create_subscription(FaceArray, 'faces', guard(self.on_faces), RELIABLE_QOS)
        self.create_subscription(EmotionArray, 'emotions', guard(self.on_emotions), RELIABLE_QOS)
        self.create_subscription(StressArray, 'stress', guard(self.on_stress), RELIABLE_QOS)
        if draw_motion:
            self.create_subscription(FaceMotionArray, 'face_motion', guard(self.on_motion), RELIABLE_QOS)
        self.get_logger().info(f'ready: drawing {self.image_input} '
                               'on debug/image while someone subscribes to it')

    def resize_caches(self, size: int) -> None:
        for cache in (self.images, self.faces, self.emotions, self.latest_emotions, self.latest_stress,
                      self.latest_motion):
            cache.resize(size)

    def on_image(self, msg: Image | CompressedImage) -> None:
        if self.publisher.get_subscription_count() == 0:
            self.unwatched_images += 1  # nobody watches: neither kept nor drawn
            self.diagnostics.extra['unwatched_images'] = str(self.unwatched_images)
            return
        check_message_size(msg, self.image_input.max_pixels)  # a huge frame is not kept
        key = stamp_key(msg.header)
        self.images[key] = msg
        self.diagnostics.dropped = self.images.evicted  # frames whose faces never came
        self.publish_if_complete(key)

    def on_faces(self, msg: FaceArray) -> None:
        key = stamp_key(msg.header)
        self.faces[key] = msg
        self.publish_if_complete(key)

    def on_emotions(self, msg: EmotionArray) -> None:
        self.emotions[stamp_key(msg.header)] = msg
        for emotion in msg.emotions:
            self.latest_emotions[emotion.id] = emotion

    def on_stress(self, msg: StressArray) -> None:
        for stress in msg.stresses:
            self.latest_stress[stress.id] = stress

    def on_motion(self, msg: FaceMotionArray) -> None:
        """Keep each face's latest usable motion; a malformed one is said once, here, and not kept (the
        face's later frames are drawn without it, not warned about again)."""
        problems = []
        for motion in msg.faces:
            problem = motion_problem(motion)
            if problem:
                problems.append(f'{motion.id}: {problem}')
                self.latest_motion.pop(motion.id, None)
            else:
                self.latest_motion[motion.id] = motion
        report_problems(self, self.diagnostics, 'face motion not drawn', problems)

    def draw_motion(self, image: np.ndarray, faces: FaceArray) -> None:
        """Each face's latest motion (it comes after the faces: drawn where the face was then)."""
        for face in faces.faces:
            motion = self.latest_motion.get(face.id)
            if motion is None:
                continue
            positions = np.reshape(motion.positions, (-1, 3))
            total = np.reshape(motion.rigid, (-1, 3)) + np.reshape(motion.nonrigid, (-1, 3))
            colours = direction_colours(total, self.motion_full_scale_mm)
            draw_points(image, image_points(positions, motion.pixels_per_mm, image.shape[1], image.shape[0]), colours)

    def publish_if_complete(self, key: int) -> None:
        """Draw and publish the image of `key` once both it and its faces are here."""
        if key not in self.images or key not in self.faces:
            return
        start = time.perf_counter()
        source, faces = self.images.pop(key), self.faces.pop(key)
        # a copy: never draw into the received message
        image = np.array(message_to_bgr8(source, self.image_input.max_pixels))
        own_frame = self.emotions.pop(key, None)
        emotion_of = {**self.latest_emotions, **{e.id: e for e in (own_frame.emotions if own_frame else [])}}
        self.draw_motion(image, faces)
        # a broken upstream node: the frame is drawn without what could not be
        report_problems(self, self.diagnostics, 'faces drawn in part',
                        annotate(image, face_annotations(faces, emotion_of, self.latest_stress)))
        self.publisher.publish(numpy_to_image(image, 'bgr8', source.header))
        self.diagnostics.record(time.perf_counter() - start)


def motion_problem(motion) -> str:
    """What makes a FaceMotion undrawable ('' if nothing): sizes that are not 3 values per point, or
    values that are not finite or beyond any face (a broken upstream node)."""
    sizes = {len(motion.positions), len(motion.rigid), len(motion.nonrigid)}
    if len(sizes) != 1 or len(motion.positions) % 3:
        return (f'{len(motion.positions)} position, {len(motion.rigid)} rigid and {len(motion.nonrigid)} '
                'non-rigid values (3 per point)')
    values = np.concatenate([motion.positions, motion.rigid, motion.nonrigid, [motion.pixels_per_mm]])
    if not np.isfinite(values).all() or np.abs(values).max(initial=0.0) > MAX_MOTION_VALUE:
        return f'values that are not finite or beyond {MAX_MOTION_VALUE:g} (mm, pixels per mm)'
    if motion.pixels_per_mm <= 0:
        return f'pixels_per_mm {motion.pixels_per_mm:g} is not positive'
    return ''


def main(args: list[str] | None = None) -> int:
    return run_node(OverlayNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
