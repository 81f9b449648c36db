"""People, measured on CK+: recognising a person across expressions, and what per-person state does
for the emotions and action units of people met again.

- identification: each subject's neutral frames are the gallery; every apex frame is a probe against
  the neutral frames of the other sequences (its own sequence's neutral left out). Rank-1 (the nearest
  subject is right) and verification (balanced accuracy of same / not same at the threshold). The
  threshold is chosen on the even-numbered subjects and reported on the odd ones.
- meeting people (CK+ subject-wise folds, classifiers fitted on the other folds' subjects): the
  subjects of a fold are met one after another, each once: every image of a subject is held for
  1.5 s (30 frames at 20 fps), the face gone 2 s in between (a new track each time). Order: its
  neutral frames, then its apexes (`meeting`), or one apex first, then the neutral frames, then
  that apex again (`apex first`). Per-person state (the calibration and smoothing of the person
  recognised from the descriptor, as the nodes keep them), per-track state (each showing starts
  afresh) and raw (no calibration) are scored on the label held at the end of each showing and
  on every frame. The guards against learning a held expression as the rest
  (calibration.min_neutral_probability, min_neutral_seconds, emotion_node's calibration.weight)
  were chosen on the even-numbered (validation) subjects; the odd ones are reported apart.
- cost: descriptor ms per face (bench/bench_people.py measures it alone, with the worker's CPU).
Usage: python -m training.eval_people [--trials 10] [--folds 10]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

from fer3d_ros.core.affect.emotion import EMOTIONS, EmotionClassifier
from fer3d_ros.core.affect.stage import EmotionSettings
from fer3d_ros.core.affect.temporal import EmotionFilter
from fer3d_ros.core.expression.calibration import CalibrationSettings, Calibrator
from fer3d_ros.core.expression.regressor import default_regressor
from fer3d_ros.core.people import Describer, DescriptorWorker, People, PersonSettings, face_chip
from training.emotion_data import Features, calibrated_features, load_features, read_image
from training.emotion_svm import SearchSettings, fit_model

FPS, HELD, GAP = 20.0, 30, 2.0  # a showing: 30 frames at 20 fps (1.5 s), then the face gone 2 s
RECOGNISED_AFTER = 5            # frames: the track's confirmation (3) and the worker's ~80 ms
NEUTRAL = EMOTIONS.index('neutral')
MODES = ('person', 'track', 'raw')


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


@dataclass(frozen=True)
class FoldModels:
    raw: EmotionClassifier
    calibrated: EmotionClassifier
    subjects: list[str]   # the fold's test subjects


def fold_models(features: Features, folds: int, settings: SearchSettings) -> list[FoldModels]:
    """Per subject-wise fold, ECOC classifiers on raw and on calibrated coefficients fitted on the other
    folds (as training.eval_calibration); the raw one also gates the neutral evidence."""
    calibrated = calibrated_features(features)
    usable = features.found & np.isfinite(calibrated).all(axis=1)
    labels, groups, names = features.labels, features.groups, tuple(default_regressor().card.expression_names)
    split = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=settings.seed)
    models = []
    for train, test in tqdm(list(split.split(features.cnn, labels, groups)), desc='folds', leave=False):
        raw_rows, calibrated_rows = train[features.found[train]], train[usable[train]]
        raw = fit_model(features.cnn[raw_rows], labels[raw_rows], groups[raw_rows], names, 'raw', settings)
        calibrated_model = fit_model(calibrated[calibrated_rows], labels[calibrated_rows], groups[calibrated_rows],
                                     names, 'calibrated', settings, features='calibrated')
        models.append(FoldModels(EmotionClassifier(raw), EmotionClassifier(calibrated_model),
                                 sorted(set(groups[test]))))
    return models


def showings(features: Features, subject: str, apex_first: bool) -> list[int]:
    """The images shown to the robot when meeting one subject, in order."""
    rows = np.flatnonzero((features.groups == subject) & features.found)
    neutral = rows[features.labels[rows] == NEUTRAL]
    apexes = rows[features.labels[rows] != NEUTRAL]
    if apex_first:
        return [apexes[0], *neutral, apexes[0]] if len(apexes) else []
    return [*neutral, *apexes]


@dataclass
class Meeting:
    """What the robot held at the end of each showing, and on every frame, in one mode."""
    image: list[int]
    subject: list[str]
    first: list[bool]      # the first showing of its subject
    final: list[int]       # label at the end of the showing
    frames: list[float]    # fraction of the showing's frames labelled right


def meet(features: Features, vectors: np.ndarray, models: FoldModels, mode: str, apex_first: bool,
         calibration: CalibrationSettings, weight: float, people: People) -> Meeting:
    """Meet a fold's subjects one after another as the nodes would (state kept per `mode`), with
    emotion_node's default temporal model (on a still the mouth's envelope changes nothing) and
    calibration confidence, and the calibrated classifier's `weight` (emotion_node's calibration.weight)."""
    emotion = EmotionSettings()
    calibrator = Calibrator(features.cnn.shape[1], calibration)
    smoothing = emotion.smoothing
    temporal = EmotionFilter(models.raw.model.feature_names, smoothing.time_constant, smoothing.switch_margin,
                             smoothing.speech_window, smoothing.forget_after)
    raw_probabilities = models.raw.predict_proba(np.where(features.found[:, None], features.cnn, 0.0))
    result = Meeting([], [], [], [], [])
    clock, tracks = 0.0, 0
    for subject in models.subjects:
        for order, image in enumerate(showings(features, subject, apex_first)):
            tracks += 1
            track, person, right = f't{tracks}', '', 0
            for frame in range(HELD):
                clock += 1.0 / FPS
                calibrator.new_frame(clock)
                temporal.new_frame(clock)
                if mode == 'person' and frame == RECOGNISED_AFTER and np.isfinite(vectors[image]).all():
                    person = people.assign(track, vectors[image])
                probabilities, used_calibration = raw_probabilities[image][None], False
                if mode != 'raw':
                    calibrated = calibrator.update(track, features.landmarks[image], features.cnn[image],
                                                   person_id=person,
                                                   neutral_probability=float(probabilities[0, NEUTRAL]))
                    if calibrated.coefficients is not None and \
                            calibrated.confidence >= emotion.calibration.min_confidence:  # as EmotionStage
                        relative = models.calibrated.predict_proba(calibrated.coefficients[None])
                        probabilities = (1.0 - weight) * probabilities + weight * relative
                        used_calibration = True
                label = temporal.update(temporal.state(track, person), clock, probabilities[0], used_calibration)[1]
                right += int(label == features.labels[image])
            result.image.append(image)
            result.subject.append(subject)
            result.first.append(order == 0)
            result.final.append(label)
            result.frames.append(right / HELD)
            clock += GAP
            people.update(clock, None, [])  # the face is gone: its track ends
    return result


def meetings(features: Features, vectors: np.ndarray, folds: list[FoldModels], apex_first: bool,
             calibration: CalibrationSettings, weight: float) -> dict[str, Meeting]:
    results = {}
    worker = DescriptorWorker()  # idle: the descriptors were computed before; People needs one
    try:
        for mode in MODES:
            parts = [meet(features, vectors, fold, mode, apex_first, calibration, weight, People(worker=worker))
                     for fold in folds]
            results[mode] = Meeting(*(sum((getattr(part, name) for part in parts), [])
                                      for name in ('image', 'subject', 'first', 'final', 'frames')))
    finally:
        worker.close()
    return results


def scores(features: Features, meeting: Meeting, subjects: set[str], first_only: bool = False) -> tuple[float, float]:
    """(accuracy of the label held at the end of the showings, of every frame) over `subjects`' showings."""
    rows = [k for k, subject in enumerate(meeting.subject) if subject in subjects and
            (meeting.first[k] or not first_only)]
    truth = features.labels[np.array(meeting.image)[rows]]
    return float(np.mean(np.array(meeting.final)[rows] == truth)), float(np.mean(np.array(meeting.frames)[rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--trials', type=int, default=10, help='Bayesian optimisation trials per fold and model')
    parser.add_argument('--folds', type=int, default=10, help='subject-wise folds of the meetings (0: skip them)')
    args = parser.parse_args()
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
    if args.folds:
        folds = fold_models(features, args.folds, SearchSettings(trials=args.trials))
        print_meetings(features, vectors, folds, choose, report)


def print_meetings(features: Features, vectors: np.ndarray, folds: list[FoldModels], choose: set[str],
                   report: set[str]) -> None:
    """The shipped settings, and without the guards against a held expression (every still, calm
    frame neutral evidence at once, the calibrated classifier alone)."""
    shipped = CalibrationSettings()
    variants = {'shipped': (shipped, EmotionSettings().calibration.weight),
                'without the held-expression guards': (
                    replace(shipped, min_neutral_probability=0.0, min_neutral_seconds=0.0), 1.0)}
    print(f'meeting people: {len(folds)} subject-wise folds; each image held {HELD / FPS:.1f} s, {GAP:.0f} s apart; '
          'accuracy of the label at the end of each showing (of every frame)')
    for variant, (calibration, weight) in variants.items():
        print(f'  {variant}: calibration.min_neutral_probability {calibration.min_neutral_probability:.2f}, '
              f'min_neutral_seconds {calibration.min_neutral_seconds:.1f}, emotion calibration.weight {weight:.2f}')
        for apex_first in (False, True):
            results = meetings(features, vectors, folds, apex_first, calibration, weight)
            for name, subjects in (('validation subjects', choose), ('held-out subjects', report),
                                   ('all subjects', choose | report)):
                parts = []
                for mode in MODES:
                    final, frames = scores(features, results[mode], subjects, first_only=apex_first)
                    parts.append(f'{mode} {final:.4f} ({frames:.4f})')
                what = 'apex first, first showing' if apex_first else 'meeting, every showing'
                print(f'    {what:26s} {name:20s} ' + ', '.join(parts), flush=True)


if __name__ == '__main__':
    main()
