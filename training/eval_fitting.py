"""How well the 3DMM fits recover expressions: synthetic videos, real clips, CK+ sanity.

--synthetic: known identities, sparse smooth expression trajectories and head motion; the 68
  landmarks projected with Gaussian pixel noise (1, 2, 4 px). Fitted per image (the paper's
  baseline) and per video; prints expression MSE (over all 55 coefficients and frames),
  identity-coefficient MSE, and identity leakage: the spread of fitted e when only i changes.
--clips: every clip of ../shared/data/videos through the front end and the video fit;
  reprojection error, pruned videos, fitting time per 1,000 frames.
--ckplus: CK+ subjects fitted as image sets (one identity for a subject's neutral and apex
  frames); mean fitted e of happiness and surprise apexes against the same subjects' neutrals.
Usage: python -m training.eval_fitting [--synthetic] [--clips] [--ckplus]
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from fer3d_ros.core.expression.fitting import fit_image
from fer3d_ros.core.expression.morphable_model import LandmarkModel, load_landmark_model
from fer3d_ros.core.frontend.detection import default_detector
from fer3d_ros.core.frontend.landmarks import DlibLandmarker
from training.media import clip_detections, detect_faces
from training.paths import OUT, SHARED
from training.synthetic import synthetic_video
from training.video_fit import VideoFitSettings, clean_track, fit_landmark_track, smooth_track

CKPLUS_CHECKS = {'happiness': ('mouthSmile_L', 'mouthSmile_R', 'cheekSquint_L', 'cheekSquint_R'),
                 'surprise': ('jawOpen', 'browInnerUp_L', 'browInnerUp_R', 'eyeWide_L', 'eyeWide_R')}


def per_image(landmarks: np.ndarray, model: LandmarkModel) -> tuple[np.ndarray, np.ndarray]:
    """Independent single-image fits: expressions (F, n_exp) and identities (F, n_id)."""
    fits = [fit_image(points, model) for points in landmarks]
    return np.array([f.expression for f in fits]), np.array([f.identity for f in fits])


def synthetic_recovery(model: LandmarkModel, videos: int, frames: int) -> None:
    print(f'synthetic recovery: {videos} videos x {frames} frames per noise level')
    print(f'{"noise px":>8s} {"e MSE image":>12s} {"e MSE video":>12s} {"ratio":>6s} '
          f'{"i MSE image":>12s} {"i MSE video":>12s} {"video s/1000 fr":>16s} {"reproj px":>9s}')
    for noise in (1.0, 2.0, 4.0):
        rows = []
        for seed in range(videos):
            video = synthetic_video(model, frames, noise, seed=seed)
            e_image, i_image = per_image(video.landmarks, model)
            start = time.perf_counter()
            fit = fit_landmark_track(np.arange(frames), video.landmarks, model)
            seconds = time.perf_counter() - start
            rows.append([((e_image - video.expressions) ** 2).mean(),
                         ((fit.expressions - video.expressions) ** 2).mean(),
                         ((i_image - video.identity) ** 2).mean(), ((fit.identity - video.identity) ** 2).mean(),
                         seconds / frames * 1000, fit.reprojection_px.mean()])
        e_img, e_vid, i_img, i_vid, speed, reprojection = np.mean(rows, axis=0)
        print(f'{noise:8.0f} {e_img:12.4f} {e_vid:12.4f} {e_img / e_vid:6.1f} {i_img:12.3f} {i_vid:12.3f} '
              f'{speed:16.1f} {reprojection:9.2f}')


def identity_leakage(model: LandmarkModel, identities: int, frames: int, noise: float = 1.0) -> None:
    """Same expressions and head motion, different people: how much do the fitted e differ?"""
    base = synthetic_video(model, frames, noise, seed=1000)
    rng = np.random.default_rng(7)
    per_image_fits, video_fits = [], []
    for _ in range(identities):
        identity = rng.standard_normal(model.n_identity)
        clean = np.stack([c.project(model.landmarks(identity, e)) for c, e in zip(base.cameras, base.expressions)])
        landmarks = clean + rng.normal(0, noise, clean.shape)
        per_image_fits.append(per_image(landmarks, model)[0])
        video_fits.append(fit_landmark_track(np.arange(frames), landmarks, model).expressions)
    truth_spread = np.sqrt((base.expressions ** 2).mean())
    for name, fits in (('per image', per_image_fits), ('video', video_fits)):
        spread = np.sqrt(np.stack(fits).var(axis=0).mean())  # std across people, RMS over frames/coefficients
        print(f'identity leakage ({name}): std of fitted e across {identities} people = {spread:.4f} '
              f'({spread / truth_spread:.0%} of the RMS expression {truth_spread:.4f})')


def real_clips(model: LandmarkModel, folder: Path) -> None:
    detector, landmarker = default_detector(), DlibLandmarker()
    print(f'{"clip":14s} {"frames":>6s} {"segments":>8s} {"reproj px":>9s} {"|i|^2":>7s} {"pruned":>6s} {"fit s":>6s}')
    pruned, frames_total, seconds_total = 0, 0, 0.0
    clips = sorted(folder.glob('*.mp4'))
    for clip in clips:
        detections = clip_detections(clip, detector, landmarker, cache=OUT / 'detections')
        start = time.perf_counter()
        fits = [fit_landmark_track(*smooth_track(segment), model) for segment in clean_track(detections)]
        seconds = time.perf_counter() - start
        fitted = sum(len(f.frames) for f in fits)
        frames_total, seconds_total = frames_total + fitted, seconds_total + seconds
        bad = any(f.implausible for f in fits)
        pruned += bad
        error = np.concatenate([f.reprojection_px for f in fits]).mean()
        norm = max(float(f.identity @ f.identity) for f in fits)
        print(f'{clip.name:14s} {len(detections):6d} {len(fits):8d} {error:9.2f} {norm:7.1f} {str(bad):>6s} '
              f'{seconds:6.1f}')
    print(f'pruned {pruned}/{len(clips)} videos; '
          f'fitting time {seconds_total / frames_total * 1000:.1f} s per 1,000 frames')


def ckplus_sanity(model: LandmarkModel, folder: Path) -> None:
    detector, landmarker = default_detector(), DlibLandmarker()
    images = defaultdict(list)  # subject -> [(label, landmarks)]
    for path in sorted(folder.glob('*/*.png')):
        faces = detect_faces(cv2.imread(str(path)), detector, landmarker)
        if faces:
            images[path.name.split('_')[0]].append((path.parent.name, faces[0][1]))
    names = model.expression_names
    image_set = replace(VideoFitSettings(), temporal_prior=0.0)
    fitted = defaultdict(list)  # (label, method) -> expressions
    for _subject, items in images.items():
        labels = [label for label, _ in items]
        if 'neutral' not in labels or not set(labels) & set(CKPLUS_CHECKS):
            continue
        landmarks = np.array([points for _, points in items])
        joint = fit_landmark_track(np.arange(len(items)), landmarks, model, image_set).expressions
        for label, points, e_joint in zip(labels, landmarks, joint):
            if label in CKPLUS_CHECKS or label == 'neutral':
                fitted[label, 'image set'].append(e_joint)
                fitted[label, 'per image'].append(fit_image(points, model).expression)
    for label, shapes in CKPLUS_CHECKS.items():
        for method in ('per image', 'image set'):
            apex, neutral = np.mean(fitted[label, method], axis=0), np.mean(fitted['neutral', method], axis=0)
            cells = ', '.join(f'{s} {apex[names.index(s)]:.2f} vs {neutral[names.index(s)]:.2f}' for s in shapes)
            print(f'CK+ {label} apex ({len(fitted[label, method])}) vs neutral ({len(fitted["neutral", method])}), '
                  f'{method}: {cells}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--synthetic', action='store_true')
    parser.add_argument('--videos', type=int, default=3)
    parser.add_argument('--frames', type=int, default=150)
    parser.add_argument('--clips', action='store_true')
    parser.add_argument('--ckplus', action='store_true')
    args = parser.parse_args()
    model = load_landmark_model()
    if args.synthetic:
        synthetic_recovery(model, args.videos, args.frames)
        identity_leakage(model, identities=8, frames=60)
    if args.clips:
        real_clips(model, SHARED / 'videos')
    if args.ckplus:
        ckplus_sanity(model, SHARED / 'ckplus_128')


if __name__ == '__main__':
    main()
