"""`fer3d-bag fleet`: a fleet's recordings evaluated in parallel on Dask, each bag through the
graph's stages in one worker process (core.pipeline.FacePipeline: face_node's, expression_node's,
emotion_node's and stress_node's work, no DDS), frame by frame as `fer3d-bag eval` replays it.

Local cores by default (a LocalCluster, one single-threaded worker process per core: each worker
limits its own thread pools), or `--scheduler tcp://host:8786` for a real cluster (`dask scheduler`,
`dask worker` on the machines; every worker needs fer3d_ros and the bags at the same paths). Each
bag's report goes to <output>/<bag>.json as it finishes, so an interrupted run resumes: bags with a
report are skipped. A bag that fails (unreadable, no image topic, a worker lost) is written to
<output>/<bag>.failed.json with the reason and retried by the next run; the others go on. The
merged report (<output>/report.json, printed) holds every bag's summary and the fleet's totals.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from fer3d_ros.core.affect.emotion import EMOTIONS
from fer3d_ros.core.image_conversion import ImageConversionError
from fer3d_ros.core.overlay import stamp_key
from fer3d_ros.core.threads import limit_library_threads
from fer3d_ros.tools.bag_reading import (
    BagError,
    bag_labels,
    decode_frame,
    image_connection,
    open_reader,
    readable_messages,
)
from fer3d_ros.tools.run_report import FaceResult, FrameRecord, StressRecord, summarize

# What is compared between a bag's in-process result and `fer3d-bag eval`'s (timings differ by nature).
_MODELS = None  # this worker process's loaded models (a FacePipeline kept open)

RESULT_KEYS = ('frames', 'answered', 'undecodable_frames', 'faces_per_frame', 'ids', 'id_switches', 'emotion',
               'label_changes')


def evaluate_in_process(bag: str, topic: str | None = None, max_frames: int | None = None) -> dict:
    """One bag through the four stages in this process: the summary `fer3d-bag eval` prints."""
    from fer3d_ros.core.pipeline import FacePipeline
    global _MODELS
    limit_library_threads(1)  # one worker per core: pools of one, as every node limits its own
    reader = open_reader(Path(bag))
    pipeline = None
    try:
        connection = image_connection(reader, topic)
        _MODELS = _MODELS or FacePipeline()  # loaded once per worker process, kept for its next bags
        pipeline = FacePipeline(models_of=_MODELS)  # every bag starts from nothing, as fer3d-bag eval does
        records, stress, undecodable, damage = [], [], [], []
        labels, first_ns, index, start = None, None, 0, time.perf_counter()
        for _, timestamp, rawdata in readable_messages(reader, [connection], damage):
            if max_frames is not None and index >= max_frames:
                break
            first_ns = timestamp if first_ns is None else first_ns
            seconds_in = (timestamp - first_ns) * 1e-9
            labels = bag_labels(reader, first_ns) if index == 0 else labels
            index += 1
            try:
                msg, image = decode_frame(rawdata, connection.msgtype)
            except ImageConversionError as error:
                undecodable.append(f'frame {index - 1} (t={seconds_in:.2f} s): {error}')
                continue
            key = stamp_key(msg.header)
            out = pipeline.process(image, key * 1e-9)
            records.append(frame_record(key, out, (labels.at(index - 1, seconds_in) or None) if labels else None))
            stress += [StressRecord(key * 1e-9, estimate.id, estimate.probability) for estimate in out.stress.estimates]
        seconds = time.perf_counter() - start
    finally:
        reader.close()
        if pipeline is not None:
            pipeline.close()
    if not records:
        raise BagError(f'{bag}: no image could be read' + (f' ({undecodable[0]})' if undecodable else ''))
    summary = summarize(records, stress, seconds, float('inf'), undecodable)
    summary.update(bag=str(bag), image_topic=connection.topic,
                   cut_short={'frames': index, 'reason': damage[0]} if damage else None)
    return summary


def frame_record(key: int, out, label: str | None) -> FrameRecord:
    """A frame as `fer3d-bag eval` records it, each stage 'published' when its work ended."""
    seconds = out.seconds
    done = {'faces': seconds['front end']}
    done['expressions'] = done['faces'] + seconds['expression']
    done['emotions'] = done['expressions'] + seconds['emotion']
    faces = [FaceResult(face.id, float((face.box[2] - face.box[0]) * (face.box[3] - face.box[1])))
             for face in out.faces]
    emotions = out.emotions
    by_id = {face_id: row for row, face_id in enumerate(emotions.ids)}
    for face in faces:
        if (row := by_id.get(face.id)) is not None:
            label_index = int(emotions.labels[row])
            face.emotion, face.confidence = EMOTIONS[label_index], float(emotions.probabilities[row, label_index])
            face.probabilities = emotions.probabilities[row].astype('float32')
            face.frame_emotion = EMOTIONS[int(emotions.frame_probabilities[row].argmax())]
    return FrameRecord(time=key * 1e-9, sent=0.0, published=done, faces=faces, label=label)


def bag_name(bag: Path) -> str:
    return bag.name or bag.resolve().name


def find_bags(paths: list[Path]) -> list[Path]:
    """The bags named, and every bag folder (a metadata.yaml, .mcap or .db3 inside) under a folder named."""
    bags = []
    for path in paths:
        if is_bag(path):
            bags.append(path)
        elif path.is_dir():
            bags += sorted(child for child in path.iterdir() if is_bag(child))
        else:
            raise FileNotFoundError(f'{path}: neither a bag nor a folder of bags')
    names = [bag_name(bag) for bag in bags]
    if len(set(names)) != len(names):
        raise ValueError('two bags have the same folder name; their reports would collide: rename one')
    return bags


def is_bag(path: Path) -> bool:
    return path.is_dir() and any((path / 'metadata.yaml').is_file() or child.suffix in ('.mcap', '.db3')
                                 for child in path.iterdir())


def run_fleet(paths: list[Path], output: Path, *, workers: int | None = None, scheduler: str | None = None,
              topic: str | None = None, max_frames: int | None = None) -> dict:
    """Evaluate every bag not yet reported in `output`; the merged report (also written there)."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as error:
        raise RuntimeError(f'fer3d-bag fleet runs on Dask ({error}): pip install "distributed"') from None
    bags = find_bags(paths)
    output.mkdir(parents=True, exist_ok=True)
    todo = [bag for bag in bags if not (output / f'{bag_name(bag)}.json').is_file()]
    print(f'{len(bags)} bags, {len(bags) - len(todo)} already reported in {output}, {len(todo)} to evaluate',
          flush=True)
    start = time.perf_counter()
    if todo:
        cluster = None if scheduler else LocalCluster(n_workers=workers or os.cpu_count(), threads_per_worker=1,
                                                      processes=True, dashboard_address=None)
        with Client(scheduler or cluster) as client:
            futures = {client.submit(evaluate_in_process, str(bag.resolve()), topic, max_frames, pure=False): bag
                       for bag in todo}
            for future in as_completed(futures):
                record_result(output, futures[future], future)
        if cluster is not None:
            cluster.close()
    report = merged_report(bags, output, time.perf_counter() - start, len(todo))
    (output / 'report.json').write_text(json.dumps(report, indent=1))
    return report


def record_result(output: Path, bag: Path, future) -> None:
    name = bag_name(bag)
    failed = output / f'{name}.failed.json'
    try:
        summary = future.result()
    except Exception as error:  # noqa: BLE001 - any one bag's failure is reported, the others go on
        failed.write_text(json.dumps({'bag': str(bag), 'error': f'{type(error).__name__}: {error}'}))
        print(f'  {name}: FAILED: {type(error).__name__}: {error}', flush=True)
        return
    failed.unlink(missing_ok=True)
    (output / f'{name}.json').write_text(json.dumps(summary, indent=1))
    print(f'  {name}: {summary["frames"]} frames, {summary["frames_per_second"]:.1f} frames/s in its worker',
          flush=True)


def merged_report(bags: list[Path], output: Path, seconds: float, evaluated: int) -> dict:
    reports, failures = {}, {}
    for bag in bags:
        name = bag_name(bag)
        if (output / f'{name}.json').is_file():
            reports[name] = json.loads((output / f'{name}.json').read_text())
        elif (output / f'{name}.failed.json').is_file():
            failures[name] = json.loads((output / f'{name}.failed.json').read_text())['error']
    frames = sum(report['frames'] for report in reports.values())
    labelled = [report['emotion'] for report in reports.values() if report['emotion']]
    right = sum(emotion['accuracy'] * emotion['frames'] for emotion in labelled)
    total = {'bags': len(bags), 'reported': len(reports), 'failed': len(failures), 'evaluated_now': evaluated,
             'seconds_now': seconds, 'frames': frames,
             'labelled_frames': sum(emotion['frames'] for emotion in labelled),
             'accuracy': right / sum(emotion['frames'] for emotion in labelled) if labelled else None}
    return {'total': total, 'bags': reports, 'failures': failures}


def format_fleet(report: dict) -> str:
    total = report['total']
    lines = [f"{total['reported']} of {total['bags']} bags reported ({total['evaluated_now']} evaluated now in "
             f"{total['seconds_now']:.1f} s), {total['failed']} failed; {total['frames']} frames"]
    if total['accuracy'] is not None:
        lines.append(f"emotion vs labels over {total['labelled_frames']} labelled frames: accuracy "
                     f"{total['accuracy']:.3f}")
    for name, summary in report['bags'].items():
        emotion = summary['emotion']
        lines.append(f"  {name}: {summary['frames']} frames, faces/frame {summary['faces_per_frame']['mean']:.2f}, "
                     f"ids {len(summary['ids'])}" + (f", accuracy {emotion['accuracy']:.3f}" if emotion else ''))
    lines += [f'  {name}: FAILED: {error}' for name, error in report['failures'].items()]
    return '\n'.join(lines)
