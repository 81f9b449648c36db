"""On-the-fly augmentation of the aligned training crops, shared by the trainers: misalignment,
flip with the L/R weights swapped, colour and grey, blur, noise, occlusion; and the network input."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np

CROP_SIZE = 224  # the data set's aligned crops


@dataclass(frozen=True)
class Augmentation:
    """On-the-fly augmentation of the 224 crop; probabilities per image, ranges uniform (+-)."""
    flip: float = 0.5                  # horizontal flip, with the L/R blendshapes swapped
    shift_px: float = 6.0              # misalignment: translation in 224-crop pixels, x and y
    rotate_deg: float = 5.0            #   rotation about the crop centre
    scale: float = 0.05                #   relative scale
    brightness: float = 0.2            # additive, fraction of 255
    contrast: float = 0.3              # gain about the image mean: 1 +- contrast
    saturation: float = 0.3            # blend with grey: 1 +- saturation
    colour_gain: float = 0.08          # independent per-channel gain (white balance): 1 +- gain
    grey: float = 0.1                  # probability of a grey (3 equal channels) image
    blur: float = 0.2                  # probability of a Gaussian blur ...
    blur_sigma: tuple[float, float] = (0.5, 2.0)   # ... with this sigma in 224-crop pixels
    noise: float = 0.2                 # probability of additive Gaussian noise ...
    noise_sigma: tuple[float, float] = (2.0, 8.0)  # ... with this sigma (0..255 scale)
    occlusion: float = 0.3             # probability of 1-2 occluding rectangles ...
    occlusion_side: tuple[float, float] = (0.1, 0.35)  # ... each side this fraction of the crop

    @classmethod
    def off(cls, **overrides: Any) -> Augmentation:
        """Everything disabled (probabilities and ranges 0), except `overrides`."""
        zeros = {f.name: (0.0, 0.0) if isinstance(f.default, tuple) else 0.0 for f in fields(cls)}
        return cls(**{**zeros, **overrides})


# ---------------------------------------------------------------------------------------- data

def mirror_permutation(names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Index map for a horizontally flipped face: target_flipped = target[perm].

    X_L <-> X_R, and the sideways moves xLeft <-> xRight (jawLeft/Right, mouthLeft/Right): after a
    mirror, what the subject's left side did, the right side did. Unpaired names map to themselves.
    """
    index = {name: k for k, name in enumerate(names)}

    def partner(name: str) -> str:
        for a, b in (('_L', '_R'), ('_R', '_L'), ('Left', 'Right'), ('Right', 'Left')):
            if name.endswith(a):
                return name[: -len(a)] + b
        return name
    return np.array([index.get(partner(name), k) for k, name in enumerate(names)])


def to_input(crop: np.ndarray, size: int) -> np.ndarray:
    """The runtime's preprocessing: INTER_AREA resize to size x size, HWC BGR -> CHW float32 0..255."""
    if crop.shape[:2] != (size, size):
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32)


def misalign(crop: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """A small random similarity about the centre, as from landmark noise in the run-time alignment."""
    h, w = crop.shape[:2]
    angle = rng.uniform(-aug.rotate_deg, aug.rotate_deg)
    scale = 1.0 + rng.uniform(-aug.scale, aug.scale)
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-aug.shift_px, aug.shift_px, 2)
    return cv2.warpAffine(crop, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def jitter_colour(crop: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """White balance, saturation (sometimes grey), contrast about the mean, brightness: all affine in
    the pixel, so composed into one 3x4 colour matrix applied by cv2.transform (uint8, saturating)."""
    gain = np.diag(1.0 + rng.uniform(-aug.colour_gain, aug.colour_gain, 3))
    saturation = 0.0 if rng.random() < aug.grey else 1.0 + rng.uniform(-aug.saturation, aug.saturation)
    to_grey = np.full((3, 3), 1.0 / 3.0)
    colour = saturation * np.eye(3) + (1.0 - saturation) * to_grey
    contrast = 1.0 + rng.uniform(-aug.contrast, aug.contrast)
    mean = float((colour @ gain @ np.array(cv2.mean(crop)[:3])).mean())  # image mean after gain + colour
    offset = (1.0 - contrast) * mean + 255.0 * rng.uniform(-aug.brightness, aug.brightness)
    matrix = np.hstack([contrast * colour @ gain, np.full((3, 1), offset)])
    return cv2.transform(crop, matrix)


def occlude(image: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """1-2 rectangles of a random flat colour or noise (hands, microphones, hair, glare)."""
    h, w = image.shape[:2]
    for _ in range(rng.integers(1, 3)):
        rh, rw = (rng.uniform(*aug.occlusion_side, 2) * (h, w)).astype(int) + 1
        y, x = rng.integers(0, h - rh + 1), rng.integers(0, w - rw + 1)
        image[y:y + rh, x:x + rw] = rng.integers(0, 256, (rh, rw, 3) if rng.random() < 0.5 else 3, np.uint8)
    return image


def augment(crop: np.ndarray, target: np.ndarray, aug: Augmentation, rng: np.random.Generator,
            mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Augment one 224 crop (uint8 BGR) and its target; returns a uint8 crop of the same size.
    Order: misalignment, flip, colour, blur, noise, occlusion (all at 224, before the resize to S)."""
    if aug.shift_px or aug.rotate_deg or aug.scale:
        crop = misalign(crop, aug, rng)
    if rng.random() < aug.flip:
        crop, target = cv2.flip(crop, 1), target[mirror]
    crop = jitter_colour(crop, aug, rng)
    if rng.random() < aug.blur:
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(*aug.blur_sigma))
    if rng.random() < aug.noise:
        noise = rng.normal(0.0, rng.uniform(*aug.noise_sigma), crop.shape).astype(np.float32)
        crop = np.clip(crop + noise + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < aug.occlusion:
        crop = occlude(crop.copy(), aug, rng)
    return crop, target


