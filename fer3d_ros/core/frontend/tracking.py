"""Multi-face tracking with stable string ids (ROS4HRI style: "f0001", "f0002", ...).

Each frame's detections are matched to live tracks by the Hungarian algorithm on a cost that
mixes box overlap and landmark distance; matches that overlap too little and whose landmarks
are too far apart are refused. A track is confirmed after `confirm_frames` consecutive hits
and dropped after `max_misses` consecutive frames without a match. Ids are never reused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

_INFEASIBLE = 1e6


@dataclass
class Track:
    id: str
    box: np.ndarray        # (4,) x0, y0, x1, y1
    landmarks: np.ndarray  # (68, 2)
    hits: int = 1
    misses: int = 0
    confirmed: bool = False


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every box of a (N, 4) and of b (M, 4), as (N, M)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return intersection / np.maximum(area_a[:, None] + area_b[None, :] - intersection, 1e-9)


class FaceTracker:
    def __init__(self, confirm_frames: int = 3, max_misses: int = 10, min_iou: float = 0.2,
                 max_landmark_distance: float = 0.5, landmark_weight: float = 1.0,
                 id_prefix: str = 'f') -> None:
        if confirm_frames < 1 or max_misses < 0:
            raise ValueError(f'confirm_frames must be >= 1 and max_misses >= 0, '
                             f'got {confirm_frames} and {max_misses}')
        self.confirm_frames = confirm_frames
        self.max_misses = max_misses
        self.min_iou = min_iou
        self.max_landmark_distance = max_landmark_distance  # mean point distance / box size
        self.landmark_weight = landmark_weight
        self.id_prefix = id_prefix
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: np.ndarray, landmarks: np.ndarray) -> list[Track]:
        """Match this frame's faces (boxes (N, 4), landmarks (N, 68, 2)); return their tracks in order."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        landmarks = np.asarray(landmarks, np.float64).reshape(len(boxes), 68, 2)
        rows, cols = self._match(boxes, landmarks)
        assigned: list[Track | None] = [None] * len(boxes)
        for track_index, detection in zip(rows, cols):
            track = self.tracks[track_index]
            track.box, track.landmarks = boxes[detection], landmarks[detection]
            track.hits, track.misses = track.hits + 1, 0
            assigned[detection] = track
        for track in self.tracks:
            if all(track is not other for other in assigned):
                track.misses += 1
                track.hits = 0
        self.tracks = [track for track in self.tracks if track.misses <= self.max_misses]
        for detection, track in enumerate(assigned):
            if track is None:
                assigned[detection] = self._new_track(boxes[detection], landmarks[detection])
        for track in assigned:
            track.confirmed = track.confirmed or track.hits >= self.confirm_frames
        return assigned

    def reset(self) -> None:
        """Forget every track (ids keep counting up: they are never reused in a run)."""
        self.tracks = []

    def _match(self, boxes: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.tracks or not len(boxes):
            return np.empty(0, int), np.empty(0, int)
        track_boxes = np.stack([track.box for track in self.tracks])
        track_landmarks = np.stack([track.landmarks for track in self.tracks])
        iou = box_iou(track_boxes, boxes)
        size = np.sqrt((track_boxes[:, 2:] - track_boxes[:, :2]).prod(axis=1))[:, None]
        distance = np.linalg.norm(track_landmarks[:, None] - landmarks[None], axis=3).mean(axis=2) / size
        cost = (1.0 - iou) + self.landmark_weight * distance
        feasible = (iou >= self.min_iou) | (distance <= self.max_landmark_distance)
        cost[~feasible] = _INFEASIBLE
        rows, cols = linear_sum_assignment(cost)
        keep = cost[rows, cols] < _INFEASIBLE
        return rows[keep], cols[keep]

    def _new_track(self, box: np.ndarray, landmarks: np.ndarray) -> Track:
        track = Track(id=f'{self.id_prefix}{self._next_id:04d}', box=box, landmarks=landmarks)
        self._next_id += 1
        self.tracks.append(track)
        return track


def id_switches(main_ids: list[str | None]) -> int:
    """How often the id of the main (largest) face changes between frames in which a face is seen."""
    seen = [i for i in main_ids if i is not None]
    return sum(a != b for a, b in zip(seen, seen[1:]))
