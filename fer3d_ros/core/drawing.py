"""Annotated images for debugging and reports: boxes, ids, landmarks, aligned crops."""
from __future__ import annotations

import cv2
import numpy as np

GREEN, YELLOW, WHITE = (80, 220, 80), (0, 220, 255), (255, 255, 255)


def draw_face(image: np.ndarray, box, landmarks: np.ndarray, label: str, confirmed: bool = True) -> None:
    """Draw one face in place: box (green once confirmed, yellow before), label and 68 points."""
    colour = GREEN if confirmed else YELLOW
    thickness = max(1, round(max(image.shape[:2]) / 400))
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(image, (x0, y0), (x1, y1), colour, thickness)
    cv2.putText(image, label, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thickness, colour,
                thickness, cv2.LINE_AA)
    for x, y in np.asarray(landmarks).reshape(-1, 2):
        cv2.circle(image, (int(round(x)), int(round(y))), thickness, WHITE, -1, cv2.LINE_AA)


def inset(image: np.ndarray, picture: np.ndarray, corner: str = 'top-right') -> None:
    """Paste `picture` (scaled to at most a third of the image height) into a corner, in place."""
    side = min(picture.shape[0], image.shape[0] // 3)
    small = cv2.resize(picture, (side * picture.shape[1] // picture.shape[0], side))
    height, width = small.shape[:2]
    x = image.shape[1] - width if corner.endswith('right') else 0
    y = 0 if corner.startswith('top') else image.shape[0] - height
    image[y:y + height, x:x + width] = small
