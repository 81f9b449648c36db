"""Annotated images for debugging and reports: boxes, ids, landmarks, emotions, stress, aligned crops."""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

GREEN, YELLOW, WHITE, BLUE = (80, 220, 80), (0, 220, 255), (255, 255, 255), (255, 190, 60)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class FaceAnnotation:
    """What to draw for one face; box is (x0, y0, x1, y1) in pixels or None, landmarks (68, 2) or None."""
    id: str
    box: tuple[float, float, float, float] | np.ndarray | None
    landmarks: np.ndarray | None
    confirmed: bool = True
    emotion: str | None = None
    confidence: float | None = None
    stress: float | None = None


def line_thickness(image: np.ndarray) -> int:
    """Lines and text grow with the image's longer side: 1 pixel below 600, 2 up to 1000 (VGA), 3 for 720p..."""
    return max(1, round(max(image.shape[:2]) / 400))


def draw_face(image: np.ndarray, box, landmarks: np.ndarray, label: str, confirmed: bool = True) -> None:
    """Draw one face in place: box (green once confirmed, yellow before) and label unless box is None,
    and the 68 points."""
    thickness = line_thickness(image)
    if box is not None:
        colour = GREEN if confirmed else YELLOW
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, thickness)
        (_, text_height), _ = cv2.getTextSize(label, FONT, 0.5 * thickness, thickness)
        cv2.putText(image, label, (x0, max(text_height + 2, y0 - 6)), FONT, 0.5 * thickness, colour, thickness,
                    cv2.LINE_AA)
    for x, y in np.asarray(landmarks).reshape(-1, 2):
        cv2.circle(image, (int(round(x)), int(round(y))), thickness, WHITE, -1, cv2.LINE_AA)


def drawable(face: FaceAnnotation, image_shape: tuple[int, ...]) -> tuple[FaceAnnotation, list[str]]:
    """The face without the values that cannot be drawn, and what they were.

    Non-finite values, and coordinates more than an image size outside the image (a face cut by
    the border reaches a little outside), come from a broken upstream node: drawing them would
    fail (NaN, inf) or draw nonsense, and must not cost the rest of the face or of the frame.
    """
    low, high = -max(image_shape[:2]), 2 * max(image_shape[:2])
    inside = lambda values: np.isfinite(values) & (values >= low) & (values <= high)
    left_out = []
    box = None if face.box is None else np.asarray(face.box, np.float64).reshape(-1)
    if box is not None and (box.shape != (4,) or not inside(box).all()):
        left_out.append(f'box ({", ".join(f"{v:g}" for v in box)})')
        box = None
    landmarks = np.empty((0, 2)) if face.landmarks is None else np.asarray(face.landmarks, np.float64)
    landmarks = landmarks.reshape(-1, 2) if landmarks.size % 2 == 0 else np.full((1, 2), np.nan)
    usable = inside(landmarks).all(axis=1)
    if not usable.all():
        left_out.append(f'{np.count_nonzero(~usable)} landmarks')
    confidence, stress = face.confidence, face.stress
    fraction = lambda value: -1e-3 <= value <= 1.0 + 1e-3  # NaN is not; rounding is
    if confidence is not None and not fraction(confidence):
        left_out.append(f'emotion confidence {confidence:g}')
        confidence = None
    if stress is not None and not fraction(stress):
        left_out.append(f'stress {stress:g}')
        stress = None
    return replace(face, box=box, landmarks=landmarks[usable], confidence=confidence, stress=stress), left_out


def annotate(image: np.ndarray, faces: list[FaceAnnotation]) -> list[str]:
    """Draw every face in place: box, id and landmarks; under the box, emotion and stress bars.

    Values that cannot be drawn are left out (see `drawable`), the rest of the face and the other
    faces are drawn; returns one line per face that had any, saying which.
    """
    problems = []
    for face in faces:
        face, left_out = drawable(face, image.shape)
        if left_out:
            problems.append(f'{face.id}: {", ".join(left_out)} not drawn')
        draw_face(image, face.box, face.landmarks, face.id, face.confirmed)
        if face.box is None:
            continue  # the bars go under the box
        x0, _, x1, y1 = (int(round(v)) for v in face.box)
        thickness = line_thickness(image)
        # Under the box; inside its bottom when the face reaches the image's lower edge.
        block = (face.emotion is not None) + (face.stress is not None)
        top = min(y1 + 2 * thickness, image.shape[0] - block * labelled_bar_height(image))
        if face.emotion is not None:
            text = face.emotion if face.confidence is None else f'{face.emotion} {face.confidence:.0%}'
            top = labelled_bar(image, (x0, top), x1 - x0, text, face.confidence, BLUE)
        if face.stress is not None:
            labelled_bar(image, (x0, top), x1 - x0, f'stress {face.stress:.0%}', face.stress,
                         stress_colour(face.stress))
    return problems


def draw_points(image: np.ndarray, points: np.ndarray, colours: np.ndarray) -> int:
    """Draw (N, 2) pixel points in their (N, 3) BGR colours, in place, leaving out those outside the
    image (a face cut by the border); returns how many were not finite (a broken upstream node)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    height, width = image.shape[:2]
    finite = np.isfinite(points).all(axis=1)
    x, y = np.where(finite[:, None], points, -1.0).T
    inside = finite & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    radius = line_thickness(image) + 1
    for (px, py), colour in zip(points[inside], np.asarray(colours)[inside]):
        cv2.circle(image, (int(px), int(py)), radius, tuple(int(c) for c in colour), -1, cv2.LINE_AA)
    return int(np.count_nonzero(~finite))


def labelled_bar(image: np.ndarray, corner: tuple[int, int], width: int, text: str, fraction: float | None,
                 colour) -> int:
    """Draw a line of text and under it a bar filled to `fraction` (none if None); return the next free y."""
    thickness = line_thickness(image)
    x, y = corner
    (_, text_height), baseline = cv2.getTextSize(text, FONT, 0.5 * thickness, thickness)
    y += text_height
    cv2.putText(image, text, (x, y), FONT, 0.5 * thickness, colour, thickness, cv2.LINE_AA)
    y += baseline
    if fraction is None:
        return y + thickness
    height, width = 5 * thickness, max(width, 1)
    filled = int(round(width * float(np.clip(fraction, 0.0, 1.0))))
    cv2.rectangle(image, (x, y), (x + filled, y + height), colour, -1)
    cv2.rectangle(image, (x, y), (x + width, y + height), WHITE, 1)
    return y + height + 2 * thickness


def labelled_bar_height(image: np.ndarray) -> int:
    """Pixels one labelled_bar takes (text, bar and the gap after it)."""
    thickness = line_thickness(image)
    (_, text_height), baseline = cv2.getTextSize('Hg', FONT, 0.5 * thickness, thickness)
    return text_height + baseline + 7 * thickness


def stress_colour(probability: float) -> tuple[int, int, int]:
    """BGR from green (0, not stressed) through yellow to red (1, stressed)."""
    p = float(np.clip(probability, 0.0, 1.0))
    return 0, int(round(255 * min(1.0, 2 * (1 - p)))), int(round(255 * min(1.0, 2 * p)))


def inset(image: np.ndarray, picture: np.ndarray, corner: str = 'top-right') -> None:
    """Paste `picture` (scaled to at most a third of the image height) into a corner, in place."""
    side = min(picture.shape[0], image.shape[0] // 3)
    small = cv2.resize(picture, (side * picture.shape[1] // picture.shape[0], side))
    height, width = small.shape[:2]
    x = image.shape[1] - width if corner.endswith('right') else 0
    y = 0 if corner.startswith('top') else image.shape[0] - height
    image[y:y + height, x:x + width] = small
