"""People, measured on CK+: recognising a person across expressions, and what per-person state does
for the emotions and action units of people met again.

- identification: each subject's neutral frames are the gallery; every apex frame is a probe against
  the neutral frames of the other sequences (its own sequence's neutral left out). Rank-1 (the nearest
  subject is right) and verification (balanced accuracy of same / not same at the threshold). The
  threshold is chosen on the even-numbered subjects and reported on the odd ones.
- cost: descriptor ms per face.
Usage: python -m training.eval_people [--identification]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fer3d_ros.core.expression.regressor import default_regressor
from fer3d_ros.core.people import Describer, PersonSettings, face_chip
from training.emotion_data import Features, load_features, read_image


def sequence_of(path) -> str:
    return '_'.join(path.name.split('_')[:2])


def descriptors(features: Features, describer: Describer) -> tuple[np.ndarray, float]:
    """(N, 128) descriptors of the images with a face (NaN rows elsewhere) and the median ms per face."""
    out = np.full((len(features.images), 128), np.nan, np.float32)
    seconds = []
    for index, image in enumerate(features.images):
        if not features.found[index]:
            continue
        chip = face_chip(read_image(image.path), features.box[index], features.landmarks[index])
        start = time.perf_counter()
        out[index] = describer(chip)
        seconds.append(time.perf_counter() - start)
    return out, float(np.median(seconds) * 1e3)


def identification(features: Features, vectors: np.ndarray, subjects: set[str]) -> dict[str, np.ndarray]:
    """Per apex probe of `subjects`: the distance to its own subject's other neutral frames, and to
    each other subject's nearest neutral frame (gallery: every subject's neutral frames)."""
    labels = np.array([image.label for image in features.images])
    groups, sequences = features.groups, np.array([sequence_of(image.path) for image in features.images])
    valid = ~np.isnan(vectors).any(axis=1)
    gallery = np.flatnonzero(valid & (labels == 'neutral'))
    genuine, impostor, rank1 = [], [], []
    for probe in np.flatnonzero(valid & (labels != 'neutral') & np.isin(groups, list(subjects))):
        usable = gallery[sequences[gallery] != sequences[probe]]
        distances = np.linalg.norm(vectors[usable] - vectors[probe], axis=1)
        nearest = {}
        for subject, distance in zip(groups[usable], distances):
            nearest[subject] = min(distance, nearest.get(subject, np.inf))
        own = nearest.pop(groups[probe], None)
        if own is None:
            continue  # no other neutral sequence of this subject
        genuine.append(own)
        impostor += list(nearest.values())
        rank1.append(own < min(nearest.values()))
    return {'genuine': np.array(genuine), 'impostor': np.array(impostor), 'rank1': np.array(rank1)}


def balanced_accuracy(result: dict[str, np.ndarray], threshold: float) -> float:
    return 0.5 * (np.mean(result['genuine'] <= threshold) + np.mean(result['impostor'] > threshold))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.parse_args()
    regressor = default_regressor(backend='onnxruntime')
    features = load_features('ckplus', regressor)
    vectors, ms = descriptors(features, Describer())
    subjects = sorted(set(features.groups))
    choose, report = set(subjects[0::2]), set(subjects[1::2])
    chosen = identification(features, vectors, choose)
    thresholds = np.arange(0.30, 0.80, 0.01)
    best = thresholds[int(np.argmax([balanced_accuracy(chosen, t) for t in thresholds]))]
    shipped = PersonSettings().match_distance
    held_out = identification(features, vectors, report)
    print(f'CK+ {len(subjects)} subjects, {int((~np.isnan(vectors).any(axis=1)).sum())} faces; descriptor '
          f'{ms:.1f} ms per face (one core, in-process)')
    print(f'threshold chosen on {len(choose)} subjects: {best:.2f} (balanced accuracy '
          f'{balanced_accuracy(chosen, best):.4f}); shipped person.match_distance {shipped:.2f}')
    for name, result in (('threshold subjects', chosen), ('held-out subjects', held_out)):
        accepted, rejected = np.mean(result['genuine'] <= shipped), np.mean(result['impostor'] > shipped)
        print(f'  {name}: {len(result["rank1"])} apex probes, rank-1 {result["rank1"].mean():.4f}, verification '
              f'at {shipped:.2f}: {balanced_accuracy(result, shipped):.4f} (same accepted {accepted:.4f}, other '
              f'rejected {rejected:.4f}); distance median genuine {np.median(result["genuine"]):.3f}, impostor '
              f'{np.median(result["impostor"]):.3f}')


if __name__ == '__main__':
    main()
