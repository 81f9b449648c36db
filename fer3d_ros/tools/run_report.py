"""What a replayed run measured, frame by frame, and its report: latency per stage, faces, ids,
how often the main face's label changes, emotion accuracy against labels, stress over time
(ROS-free: filled by fer3d_ros.tools.bag)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer3d_ros.core.affect.emotion import EMOTIONS
from fer3d_ros.core.frontend.tracking import id_switches

# Output topics in data-flow order; a stage's latency runs from the previous stage's output.
STAGE_TOPICS = ('faces', 'expressions', 'emotions')


@dataclass
class FaceResult:
    id: str
    area: float
    emotion: str | None = None
    confidence: float | None = None
    probabilities: np.ndarray | None = None
    frame_emotion: str | None = None  # the frame's own reading (Emotion.frame_label)


@dataclass
class FrameRecord:
    """One input image: its stamp, when it was sent and when each stage published its output
    (system clock, seconds)."""
    time: float
    sent: float
    published: dict[str, float] = field(default_factory=dict)
    faces: list[FaceResult] = field(default_factory=list)
    label: str | None = None

    def main_face(self) -> FaceResult | None:
        """The largest face: the one a frame's label is about."""
        return max(self.faces, key=lambda face: face.area, default=None)


@dataclass
class StressRecord:
    time: float
    id: str
    probability: float


def percentiles_ms(values: list[float]) -> dict[str, float]:
    array = np.asarray(values) * 1e3
    return {'median_ms': float(np.median(array)), 'p95_ms': float(np.percentile(array, 95)), 'count': len(array)} \
        if len(array) else {'median_ms': float('nan'), 'p95_ms': float('nan'), 'count': 0}


def stage_latencies(frames: list[FrameRecord]) -> dict[str, dict[str, float]]:
    """Median/p95 of each stage (its output's publication minus the previous one's) and of the chain."""
    latencies: dict[str, list[float]] = {topic: [] for topic in (*STAGE_TOPICS, 'end_to_end')}
    for frame in frames:
        previous = frame.sent
        for topic in STAGE_TOPICS:
            if topic not in frame.published:
                break
            latencies[topic].append(frame.published[topic] - previous)
            previous = frame.published[topic]
        else:
            latencies['end_to_end'].append(previous - frame.sent)
    return {topic: percentiles_ms(values) for topic, values in latencies.items()}


def emotion_scores(frames: list[FrameRecord]) -> dict | None:
    """Accuracy, balanced accuracy and confusion of the main face's label on labelled frames.

    A labelled frame without a face counts as wrong (column 'no face' of the confusion)."""
    labelled = [frame for frame in frames if frame.label]
    if not labelled:
        return None
    columns = [*EMOTIONS, 'no face']
    confusion = np.zeros((len(EMOTIONS), len(columns)), int)
    for frame in labelled:
        face = frame.main_face()
        predicted = face.emotion if face is not None and face.emotion in EMOTIONS else 'no face'
        confusion[EMOTIONS.index(frame.label), columns.index(predicted)] += 1
    support = confusion.sum(axis=1)
    recall = np.divide(np.diag(confusion), support, out=np.zeros(len(EMOTIONS)), where=support > 0)
    return {'frames': len(labelled), 'accuracy': float(np.trace(confusion) / len(labelled)),
            'balanced_accuracy': float(recall[support > 0].mean()), 'columns': columns,
            'confusion': confusion.tolist(), 'recall': dict(zip(EMOTIONS, recall.round(3).tolist()))}


def label_changes(frames: list[FrameRecord]) -> dict[str, float] | None:
    """How often the main face's label changes a minute, published and frame by frame (consecutive
    answered frames with the same main face id; None when no face has two)."""
    changes, frame_changes, seconds = 0, 0, 0.0
    previous = None
    for frame in frames:
        face = frame.main_face()
        if face is None or face.emotion is None:
            continue
        if previous is not None and previous[1].id == face.id:
            changes += face.emotion != previous[1].emotion
            frame_changes += face.frame_emotion != previous[1].frame_emotion
            seconds += frame.time - previous[0]
        previous = (frame.time, face)
    if seconds <= 0:
        return None
    return {'seconds': seconds, 'per_minute': changes / seconds * 60, 'frame_per_minute': frame_changes / seconds * 60}


def stress_summary(stress: list[StressRecord]) -> dict[str, dict[str, float]]:
    summary = {}
    for face_id in sorted({record.id for record in stress}):
        times = [r.time for r in stress if r.id == face_id]
        values = np.array([r.probability for r in stress if r.id == face_id])
        summary[face_id] = {'estimates': len(values), 'first_s': times[0], 'last_s': times[-1],
                            'mean': float(values.mean()), 'min': float(values.min()), 'max': float(values.max())}
    return summary


def summarize(frames: list[FrameRecord], stress: list[StressRecord], seconds: float,
              overhead_seconds: float, undecodable: list[str] = ()) -> dict:
    """Everything the report prints, as plain data (also written as JSON); `undecodable`: why each
    image that could not be decoded was not sent."""
    answered = [frame for frame in frames if 'emotions' in frame.published]
    counts = np.array([len(frame.faces) for frame in answered]) if answered else np.zeros(1, int)
    start = frames[0].time if frames else 0.0
    main_ids = [face.id if (face := frame.main_face()) else None for frame in answered]
    return {
        'frames': len(frames), 'answered': len(answered), 'unanswered': len(frames) - len(answered),
        'undecodable_frames': len(undecodable), 'first_undecodable': undecodable[0] if undecodable else None,
        'seconds': seconds, 'frames_per_second': len(frames) / seconds if seconds > 0 else float('nan'),
        'bag_overhead_frames_per_second': len(frames) / overhead_seconds if overhead_seconds > 0 else float('inf'),
        'latency': stage_latencies(frames),
        'faces_per_frame': {'mean': float(counts.mean()),
                            'histogram': {str(n): int((counts == n).sum()) for n in range(int(counts.max()) + 1)}},
        'ids': sorted({face.id for frame in answered for face in frame.faces}),
        'id_switches': id_switches(main_ids),
        'emotion': emotion_scores(frames),
        'label_changes': label_changes(answered),
        'stress': stress_summary([StressRecord(r.time - start, r.id, r.probability) for r in stress]),
    }


def format_report(summary: dict) -> str:
    lines = [f"frames: {summary['frames']} ({summary['answered']} answered, {summary['unanswered']} without an "
             f"answer) in {summary['seconds']:.1f} s: {summary['frames_per_second']:.1f} frames/s through the "
             f"pipeline; bag reading, decoding + publishing alone: {summary['bag_overhead_frames_per_second']:.0f} "
             'frames/s']
    if summary['undecodable_frames']:
        lines.append(f"  and {summary['undecodable_frames']} undecodable (not sent; first: "
                     f"{summary['first_undecodable']})")
    lines.append('latency per stage (median / p95 ms):')
    for topic, value in summary['latency'].items():
        lines.append(f"  {topic:12s} {value['median_ms']:7.1f} / {value['p95_ms']:7.1f}  ({value['count']} frames)")
    faces = summary['faces_per_frame']
    histogram = ', '.join(f'{n} face(s): {count}' for n, count in faces['histogram'].items())
    lines.append(f"faces per frame: mean {faces['mean']:.2f} ({histogram})")
    lines.append(f"ids: {len(summary['ids'])} ({', '.join(summary['ids'][:10])}); "
                 f"id switches of the main face: {summary['id_switches']}")
    changes = summary['label_changes']
    if changes:
        lines.append(f"main face's emotion label: {changes['per_minute']:.1f} changes a minute over "
                     f"{changes['seconds']:.1f} s (its frames alone, Emotion.frame_label: "
                     f"{changes['frame_per_minute']:.1f})")
    emotion = summary['emotion']
    if emotion:
        lines.append(f"emotion vs labels ({emotion['frames']} labelled frames): accuracy {emotion['accuracy']:.3f}, "
                     f"balanced {emotion['balanced_accuracy']:.3f}")
        lines.append('  confusion (rows: label, columns: predicted): ' + ' '.join(c[:4] for c in emotion['columns']))
        for label, row in zip(EMOTIONS, emotion['confusion']):
            if sum(row):
                lines.append(f"    {label:9s}" + ''.join(f'{count:5d}' for count in row))
    else:
        lines.append('emotion vs labels: no labels (record with --labels, or eval --labels CSV)')
    for face_id, value in summary['stress'].items() or {}:
        lines.append(f"stress {face_id}: {value['estimates']} estimates from t={value['first_s']:.1f} s, "
                     f"mean {value['mean']:.2f} (min {value['min']:.2f}, max {value['max']:.2f})")
    if not summary['stress']:
        lines.append('stress: no full window (a face must be seen for most of a window; see stress.yaml)')
    return '\n'.join(lines)


def plot_timeline(frames: list[FrameRecord], stress: list[StressRecord], path: Path) -> Path:
    """PNG: the main face's emotion probabilities (and labels) over time above stress per face."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    start = frames[0].time if frames else 0.0
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=(2, 1))
    rows = [(frame.time - start, face) for frame in frames if (face := frame.main_face()) is not None
            and face.probabilities is not None]
    if rows:
        times = np.array([t for t, _ in rows])
        probabilities = np.array([face.probabilities for _, face in rows])
        top.stackplot(times, probabilities.T, labels=EMOTIONS, alpha=0.85)
    for frame in frames:
        if frame.label:
            top.plot(frame.time - start, 1.03, '|', color=f'C{EMOTIONS.index(frame.label)}', markersize=8)
    top.set(ylim=(0, 1.06), ylabel='emotion probability\n(main face)')
    top.legend(loc='upper left', bbox_to_anchor=(1.0, 1.0), fontsize=8)
    for face_id in sorted({record.id for record in stress}):
        points = [(r.time - start, r.probability) for r in stress if r.id == face_id]
        bottom.plot(*zip(*points), marker='.', label=face_id)
    bottom.axhline(0.5, color='grey', linewidth=0.8, linestyle='--')
    bottom.set(ylim=(0, 1), xlabel='time (s)', ylabel='stress probability')
    if stress:
        bottom.legend(loc='upper left', bbox_to_anchor=(1.0, 1.0), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
