"""overlay_node: image + faces + emotions + stress (+ face motion) -> annotated debug image (debug/image),
only when watched."""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from fer3d_ros.core.drawing import FaceAnnotation, annotate, draw_points
from fer3d_ros.core.expression.motion import direction_colours, image_points
from fer3d_ros.core.image_conversion import ImageConversionError, check_message_size, message_to_bgr8, numpy_to_image
from fer3d_ros.core.settings import setting
from fer3d_ros.msg import EmotionArray, FaceArray, FaceMotionArray, StressArray
from fer3d_ros.nodes.common import RELIABLE_QOS, NodeSettings, StageNode, guarded, report_problems, run_node
from fer3d_ros.nodes.image_input import ImageInput, ImageInputSettings


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


@dataclass(frozen=True)
class OverlaySettings:
    """overlay_node's settings (beside its camera input's)."""
    cache_size: int = setting(30, 'Images, face arrays and emotion arrays kept (each) while waiting for their match '
                              'by stamp; also the most faces whose latest emotion and stress are kept.',
                              minimum=1, maximum=1000, dynamic=True)
    draw_motion: bool = setting(False, "Subscribe to face_motion and draw each face's 3D motion points coloured by "
                                'the direction (hue, saturation) and length (value) of their motion since the '
                                'previous frame. Makes expression_node compute the motion (it does only while '
                                'subscribed).')
    motion_full_scale_mm: float = setting(2.0, 'Motion between two frames (mm) drawn at full brightness.',
                                          minimum=0.01, maximum=100.0, dynamic=True)


class Overlay:
    """What overlay_node keeps between messages: the recent ones by stamp, each face's latest results."""

    def __init__(self, settings: OverlaySettings) -> None:
        size = settings.cache_size
        self.settings = settings
        self.images = RecentCache(size)           # stamp -> Image | CompressedImage
        self.faces = RecentCache(size)            # stamp -> FaceArray
        self.emotions = RecentCache(size)         # stamp -> EmotionArray
        self.latest_emotions = RecentCache(size)  # face id -> Emotion
        self.latest_stress = RecentCache(size)    # face id -> Stress
        self.latest_motion = RecentCache(size)    # face id -> FaceMotion

    def apply(self, settings: OverlaySettings) -> None:
        for cache in (self.images, self.faces, self.emotions, self.latest_emotions, self.latest_stress,
                      self.latest_motion):
            cache.resize(settings.cache_size)
        self.settings = settings


class OverlayNode(StageNode):
    settings_class = OverlaySettings

    def __init__(self, **kwargs) -> None:
        super().__init__('overlay_node', **kwargs)
        self.input_settings = NodeSettings(self, ImageInputSettings, self._apply_input_settings)
        self.image_input: ImageInput | None = None
        self.unwatched_images = 0
        self.start()

    def make_stage(self) -> Overlay:
        return Overlay(self.settings.value)

    def make_outputs(self) -> list:
        self.publisher = self.create_publisher(Image, 'debug/image', RELIABLE_QOS)
        return [self.publisher]

    def make_inputs(self) -> list:
        guard = guarded(self, self.diagnostics, (ImageConversionError, ValueError))
        self.image_input = ImageInput(self, self.input_settings.value, guard(self.on_image), self.diagnostics)
        inputs = [self.image_input, self.create_subscription(FaceArray, 'faces', guard(self.on_faces), RELIABLE_QOS),
                  self.create_subscription(EmotionArray, 'emotions', guard(self.on_emotions), RELIABLE_QOS),
                  self.create_subscription(StressArray, 'stress', guard(self.on_stress), RELIABLE_QOS)]
        if self.settings.value.draw_motion:
            inputs.append(self.create_subscription(FaceMotionArray, 'face_motion', guard(self.on_motion),
                                                   RELIABLE_QOS))
        self.get_logger().info(f'ready: drawing {self.image_input} on debug/image while someone subscribes to it')
        return inputs

    def _apply_input_settings(self, settings: ImageInputSettings) -> None:
        if self.image_input is not None and self._inputs:
            self.image_input.apply(settings)

    @property
    def motion_full_scale_mm(self) -> float:
        return self.settings.value.motion_full_scale_mm

    def on_image(self, msg: Image | CompressedImage) -> None:
        if self.publisher.get_subscription_count() == 0:
            self.unwatched_images += 1  # nobody watches: neither kept nor drawn
            self.diagnostics.extra['unwatched_images'] = str(self.unwatched_images)
            return
        check_message_size(msg, self.input_settings.value.max_image_pixels)  # a huge frame is not kept
        key = stamp_key(msg.header)
        self.stage.images[key] = msg
        self.diagnostics.dropped = self.stage.images.evicted  # frames whose faces never came
        self.publish_if_complete(key)

    def on_faces(self, msg: FaceArray) -> None:
        key = stamp_key(msg.header)
        self.stage.faces[key] = msg
        self.publish_if_complete(key)

    def on_emotions(self, msg: EmotionArray) -> None:
        self.stage.emotions[stamp_key(msg.header)] = msg
        for emotion in msg.emotions:
            self.stage.latest_emotions[emotion.id] = emotion

    def on_stress(self, msg: StressArray) -> None:
        for stress in msg.stresses:
            self.stage.latest_stress[stress.id] = stress

    def on_motion(self, msg: FaceMotionArray) -> None:
        """Keep each face's latest usable motion; a malformed one is said once, here, and not kept (the
        face's later frames are drawn without it, not warned about again)."""
        problems = []
        for motion in msg.faces:
            problem = motion_problem(motion)
            if problem:
                problems.append(f'{motion.id}: {problem}')
                self.stage.latest_motion.pop(motion.id, None)
            else:
                self.stage.latest_motion[motion.id] = motion
        report_problems(self, self.diagnostics, 'face motion not drawn', problems)

    def draw_motion(self, image: np.ndarray, faces: FaceArray) -> None:
        """Each face's latest motion (it comes after the faces: drawn where the face was then)."""
        for face in faces.faces:
            motion = self.stage.latest_motion.get(face.id)
            if motion is None:
                continue
            positions = np.reshape(motion.positions, (-1, 3))
            total = np.reshape(motion.rigid, (-1, 3)) + np.reshape(motion.nonrigid, (-1, 3))
            colours = direction_colours(total, self.motion_full_scale_mm)
            draw_points(image, image_points(positions, motion.pixels_per_mm, image.shape[1], image.shape[0]), colours)

    def publish_if_complete(self, key: int) -> None:
        """Draw and publish the image of `key` once both it and its faces are here."""
        if key not in self.stage.images or key not in self.stage.faces:
            return
        start = time.perf_counter()
        source, faces = self.stage.images.pop(key), self.stage.faces.pop(key)
        # a copy: never draw into the received message
        image = np.array(message_to_bgr8(source, self.input_settings.value.max_image_pixels))
        own_frame = self.stage.emotions.pop(key, None)
        emotion_of = {**self.stage.latest_emotions, **{e.id: e for e in (own_frame.emotions if own_frame else [])}}
        self.draw_motion(image, faces)
        # a broken upstream node: the frame is drawn without what could not be
        report_problems(self, self.diagnostics, 'faces drawn in part',
                        annotate(image, face_annotations(faces, emotion_of, self.stage.latest_stress)))
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
