"""overlay_node's stage: the recent messages it keeps until an image and its faces are both there,
each face's latest results, and the drawing of one frame."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fer3d_ros.core.drawing import FaceAnnotation, annotate, draw_points
from fer3d_ros.core.expression.motion import direction_colours, image_points
from fer3d_ros.core.settings import setting


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


def face_annotations(faces, emotion_of: Mapping, stress_of: Mapping) -> list[FaceAnnotation]:
    """What to draw for each face of a FaceArray: its box, landmarks, emotion and stress (by face id)."""
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

    def keep_motion(self, faces) -> list[str]:
        """Keep each face's latest usable FaceMotion; a malformed one is not kept (the face's later
        frames are drawn without it): one line for each, to be said once, now."""
        problems = []
        for motion in faces:
            problem = motion_problem(motion)
            if problem:
                problems.append(f'{motion.id}: {problem}')
                self.latest_motion.pop(motion.id, None)
            else:
                self.latest_motion[motion.id] = motion
        return problems

    def take_complete(self, key: int):
        """(image message, FaceArray, emotion of each face id) once both the image and the faces of `key`
        are here (they leave the caches), else None."""
        if key not in self.images or key not in self.faces:
            return None
        own_frame = self.emotions.pop(key, None)
        emotion_of = {**self.latest_emotions, **{e.id: e for e in (own_frame.emotions if own_frame else [])}}
        return self.images.pop(key), self.faces.pop(key), emotion_of

    def draw(self, image: np.ndarray, faces, emotion_of: Mapping) -> list[str]:
        """Draw the faces (boxes, landmarks, emotion, stress, motion) into `image`; one line per face
        that had something that could not be drawn (a broken upstream node)."""
        for face in faces.faces:  # each face's latest motion: it comes after the faces
            motion = self.latest_motion.get(face.id)
            if motion is not None:
                positions = np.reshape(motion.positions, (-1, 3))
                total = np.reshape(motion.rigid, (-1, 3)) + np.reshape(motion.nonrigid, (-1, 3))
                points = image_points(positions, motion.pixels_per_mm, image.shape[1], image.shape[0])
                draw_points(image, points, direction_colours(total, self.settings.motion_full_scale_mm))
        return annotate(image, face_annotations(faces, emotion_of, self.latest_stress))


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


