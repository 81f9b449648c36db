"""fer3d-bag: turn a video into a rosbag2, and evaluate the whole pipeline on a bag.

    fer3d-bag record clip.mp4 clip_bag [--labels labels.csv] [--storage mcap|sqlite3] [--compressed]
    fer3d-bag eval clip_bag [--labels labels.csv] [--video annotated.mp4] [--ros-args -p ...]
    fer3d-bag fleet bags/ --output fleet_reports [--workers 2 | --scheduler tcp://host:8786]

`eval` replays the bag frame by frame through the nodes of fer3d_pipeline in this process, waiting
for each frame's emotions before sending the next (deterministic, nothing dropped), records every
output topic into a new bag and prints a report (latency per stage, faces, ids, emotion accuracy
when labels exist, stress over time) with a timeline PNG and a JSON copy of the numbers. `fleet`
evaluates many bags in parallel on Dask, each through the same stages in a worker process (no DDS),
into one report per bag and a merged one (fer3d_ros/tools/fleet.py).

Labels (CSV with a header): `time,label` (seconds from the first frame) or `frame,label`; a label
holds from its row until the next one; an empty label ends a labelled segment. Labels are one of
neutral, happy, sad, surprise, fear, disgust, anger.

Outputs are written to <output>.incomplete/ and moved into place when the run completes; an
existing complete output is kept unless --overwrite is given. Exit status: 0 done; 2 nothing done
(the line says why); 3 the input is cut short or damaged, the outputs cover the part before the
break; 130 / 143 interrupted by SIGINT / SIGTERM, what was written so far stays, readable, in
<output>.incomplete/ until the next run.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import serialize_message
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from fer3d_ros.core.affect.emotion import EMOTIONS
from fer3d_ros.core.drawing import annotate
from fer3d_ros.core.files import share_dirs
from fer3d_ros.core.image_conversion import ImageConversionError, numpy_to_compressed, numpy_to_image
from fer3d_ros.core.overlay import face_annotations, stamp_key
from fer3d_ros.msg import EmotionArray, ExpressionArray, FaceArray, StressArray
from fer3d_ros.nodes.pipeline import config_arguments, create_nodes, stages
from fer3d_ros.nodes.qos import RELIABLE_QOS
from fer3d_ros.tools.bag_reading import (
    LABELS_TOPIC,
    BagError,
    Labels,
    bag_labels,
    decode_frame,
    image_connection,
    open_reader,
    readable_messages,
)
from fer3d_ros.tools.run_report import FaceResult, FrameRecord, StressRecord, format_report, plot_timeline, summarize

OUTPUTS = {'faces': FaceArray, 'expressions': ExpressionArray, 'emotions': EmotionArray, 'stress': StressArray}
IMAGE_SUFFIXES = {'.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp'}


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised between frames so that every output is closed properly (a
    BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it)."""

    def __init__(self, signum: int, frame: int, total: int | None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.frame, self.total = signum, frame, total
        self.outputs: Path | None = None  # what the run had written, kept for a look


class StopSignals:
    """While entered, SIGINT and SIGTERM only note the signal; the loops report their progress
    between frames and stop there (a signal handler that raised could cut a bag write in half)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.frame, self.total = 0, None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        self.received, self.frame, self.total = None, 0, None
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self.note)
        return self

    def __exit__(self, *_) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def note(self, signum: int, _frame) -> None:
        self.received = signum

    def progress(self, frame: int, total: int | None) -> None:
        """The loop is at `frame` (frames done) of `total`; stops here if a signal arrived."""
        self.frame, self.total = frame, total
        self.check()

    def check(self) -> None:
        if self.received is not None:
            raise Interrupted(self.received, self.frame, self.total)


STOP = StopSignals()


@contextmanager
def staged_output(output: Path, overwrite: bool) -> Iterator[Path]:
    """Where a run writes `output`: <output>.incomplete/<name>, moved to `output` when the run completes.

    A failed run leaves nothing; an interrupted one leaves what it wrote (closed properly) there, and
    the next run replaces it. A complete earlier result is replaced only when `overwrite` is given."""
    if output.exists() and not overwrite:
        raise BagError(f'{output} exists: remove it, choose another output or add --overwrite')
    if output.exists() and not (output / 'metadata.yaml').is_file():
        raise BagError(f'{output} exists and is not a bag: not overwriting it')
    staging = output.with_name(output.name + '.incomplete')
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
    staging.mkdir(parents=True)
    try:
        yield staging / output.name
    except Interrupted as stop:
        stop.outputs = staging / output.name if (staging / output.name).exists() else None
        if stop.outputs is None:
            staging.rmdir()
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if output.exists():
        shutil.rmtree(output)
    (staging / output.name).rename(output)
    staging.rmdir()


# ---------------------------------------------------------------- labels

def read_labels(path: Path) -> Labels:
    try:
        with open(path, newline='') as file:
            rows = list(csv.DictReader(file))
    except OSError as error:
        raise BagError(f'cannot read labels {path}: {error}') from error
    columns = set(rows[0]) if rows else set()
    key = 'time' if 'time' in columns else 'frame' if 'frame' in columns else None
    if key is None or 'label' not in columns:
        raise BagError(f'{path}: expected a header "time,label" or "frame,label", got {sorted(columns) or "no rows"}')
    starts, labels = [], []
    for line, row in enumerate(rows, start=2):
        label = (row['label'] or '').strip().lower()
        if label and label not in EMOTIONS:
            raise BagError(f'{path} line {line}: unknown label {label!r}; use one of {", ".join(EMOTIONS)} or empty')
        try:
            starts.append(float(row[key]))
        except (TypeError, ValueError) as error:
            raise BagError(f'{path} line {line}: {key} {row[key]!r} is not a number') from error
        labels.append(label)
    return Labels(starts, labels, by_frame=key == 'frame')


# ---------------------------------------------------------------- record

def source_frames(source: Path) -> tuple[Iterator[np.ndarray], float | None, int | None]:
    """Frames of a video file or of the images of a folder (sorted by name), the video's rate and
    the number of frames (as the video's header says; None when it does not)."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BagError(f'{source} holds no image ({", ".join(sorted(IMAGE_SUFFIXES))})')

        def images() -> Iterator[np.ndarray]:
            for file in files:
                image = cv2.imread(str(file), cv2.IMREAD_COLOR)
                if image is None:
                    raise BagError(f'cannot read image {file} (corrupt or not an image)')
                yield image
        return images(), None, len(files)
    if not source.exists():
        raise BagError(f'{source} does not exist: give a video file or a folder of images')
    capture = cv2.VideoCapture(str(source))
    fps, count = (capture.get(cv2.CAP_PROP_FPS), capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() \
        else (0.0, 0.0)
    capture.release()
    from fer3d_ros.core.video import read_frames
    return (read_frames(source), fps if fps and np.isfinite(fps) and fps > 0 else None,
            int(count) if count and np.isfinite(count) and count > 0 else None)


def open_writer(path: Path, storage: str):
    from rosbags.rosbag2 import StoragePlugin, Writer
    if path.exists():
        raise BagError(f'{path} exists: remove it or choose another output')
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    return Writer(path, version=9, storage_plugin=plugin)


def fer3d_typestore():
    """rosbags' Kilted types plus fer3d_ros's messages (from the package's msg/ files)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    typestore = get_typestore(Stores.ROS2_KILTED)
    folder = next((d for d in share_dirs('msg') if d.is_dir()), None)
    if folder is None:
        raise BagError(f'fer3d_ros message definitions not found in {share_dirs("msg")}: rebuild (make build)')
    types = {}
    for file in sorted(folder.glob('*.msg')):
        types.update(get_types_from_msg(file.read_text(), f'fer3d_ros/msg/{file.stem}'))
    typestore.register(types)
    return typestore


class Recorded(NamedTuple):
    frames: int  # written
    announced: int | None  # what the video's header or the folder announces, up to max_frames


def record(source: Path, output: Path, *, topic: str = '/camera/image_raw', frame_id: str = 'camera',
           fps: float | None = None, labels: Labels | None = None, storage: str = 'mcap',
           compressed: bool = False, max_frames: int | None = None, start_time: float | None = None) -> Recorded:
    """Write the frames of `source` to a new bag as sensor_msgs/Image (or CompressedImage jpeg);
    with labels, also std_msgs/String on /labels whenever the label changes."""
    frames, video_fps, total = source_frames(source)
    total = min(total, max_frames) if total and max_frames else total or max_frames
    try:
        frames = itertools.chain([next(frames)], frames)  # an unreadable source fails before the bag exists
    except (OSError, StopIteration) as error:
        raise BagError(str(error) or f'{source} holds no frame') from error
    fps = fps or video_fps or 30.0
    start_ns = round((time.time() if start_time is None else start_time) * 1e9)
    message_type = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
    typestore = fer3d_typestore()
    count, label = 0, None
    writer = open_writer(output, storage)
    writer.open()
    try:
        images = writer.add_connection(topic + ('/compressed' if compressed else ''), message_type,
                                       typestore=typestore)
        label_connection = writer.add_connection(LABELS_TOPIC, 'std_msgs/msg/String', typestore=typestore) \
            if labels else None
        for index, frame in enumerate(itertools.islice(frames, max_frames)):
            STOP.progress(index, total)
            stamp_ns = start_ns + round(index * 1e9 / fps)
            msg = numpy_to_compressed(frame, 'bgr8', 'jpeg') if compressed else numpy_to_image(frame, 'bgr8')
            msg.header.frame_id = frame_id
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
            writer.write(images, stamp_ns, serialize_message(msg))
            if labels is not None and (current := labels.at(index, index / fps)) != label:
                writer.write(label_connection, stamp_ns, serialize_message(String(data=current)))
                label = current
            count += 1
    except Exception:
        writer.abort()
        shutil.rmtree(output, ignore_errors=True)  # no half-written bag left behind
        raise
    except Interrupted:
        writer.close()  # the frames written so far stay a readable bag
        raise
    writer.close()
    return Recorded(count, total)


# ---------------------------------------------------------------- eval

class Recorder:
    """Subscribes to every output of the pipeline; notes arrival times and writes each to the output bag."""

    def __init__(self, node: Node, writer, typestore, frames: dict[int, FrameRecord]) -> None:
        self.frames, self.writer = frames, writer
        self.stress: list[StressRecord] = []
        self.latest_stress: dict[str, StressRecord] = {}  # face id -> its latest estimate
        self.latest: dict[str, dict[int, object]] = {topic: {} for topic in OUTPUTS}
        self.connections = {}
        for topic, kind in OUTPUTS.items():
            subscription = node.create_subscription(kind, topic, self._callback(topic), RELIABLE_QOS)
            self.connections[topic] = writer.add_connection(
                subscription.topic_name, f'fer3d_ros/msg/{kind.__name__}', typestore=typestore)

    def _callback(self, topic: str):
        def callback(msg, info) -> None:
            # When the stage published (DDS source timestamp), not when this callback happened to run:
            # in one executor, other nodes' callbacks may run first.
            published, key = info['source_timestamp'] * 1e-9, stamp_key(msg.header)
            self.writer.write(self.connections[topic], key, serialize_message(msg))
            if topic == 'stress':
                for stress in msg.stresses:
                    self.stress.append(record := StressRecord(key * 1e-9, stress.id, stress.probability))
                    self.latest_stress[stress.id] = record
                return
            frame = self.frames.get(key)
            if frame is None:
                return
            frame.published.setdefault(topic, published)
            self.latest[topic][key] = msg
            if topic == 'faces':
                frame.faces = [FaceResult(f.id, f.width * f.height) for f in msg.faces]
            elif topic == 'emotions':
                by_id = {e.id: e for e in msg.emotions}
                for face in frame.faces:
                    if (emotion := by_id.get(face.id)) is not None:
                        face.emotion, face.confidence = emotion.label, emotion.confidence
                        face.frame_emotion = emotion.frame_label
                        face.probabilities = np.asarray(emotion.probabilities)
        return callback


class Replay:
    """The pipeline's nodes and a player node in one context; frames go in one at a time."""

    def __init__(self, ros_arguments: Sequence[str], compressed: bool, stress: bool, timeout: float) -> None:
        # The replay is private to this process: keep discovery on this machine unless told otherwise.
        os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        self.context = rclpy.Context()
        names = stages(stress=stress)
        arguments = [*config_arguments(names), *ros_arguments]
        if compressed:
            arguments += ['-p', 'face_node:use_compressed:=true']
        rclpy.init(args=['fer3d-bag', *arguments], context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes = create_nodes(self.context, names)
        self.player = Node('fer3d_bag_player', context=self.context)
        self.nodes.append(self.player)
        for node in self.nodes:
            self.executor.add_node(node)
        kind = CompressedImage if compressed else Image
        self.publisher = self.player.create_publisher(kind, 'image/compressed' if compressed else 'image',
                                                      qos_profile_sensor_data)
        self.timeout = timeout

    def wait_for(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            STOP.check()
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.01)
        return True

    def close(self) -> None:
        self.executor.shutdown()
        for node in self.nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def evaluate(bag: Path, output: Path, *, topic: str | None = None, labels: Labels | None = None,
             video: Path | None = None, plot: Path | None = None, storage: str = 'mcap', stress: bool = True,
             max_frames: int | None = None, timeout: float = 10.0, print_every: float = 0.0,
             ros_arguments: Sequence[str] = ()) -> dict:
    """Replay `bag` through the pipeline; write the outputs to the bag `output`; return the summary."""
    reader = open_reader(bag)
    connection = image_connection(reader, topic)
    compressed = connection.msgtype == 'sensor_msgs/msg/CompressedImage'
    output.parent.mkdir(parents=True, exist_ok=True)
    typestore = fer3d_typestore()
    try:
        writer = open_writer(output, storage)
        writer.open()
    except BaseException:
        reader.close()
        raise
    replay = Replay(ros_arguments, compressed, stress, timeout)
    frames: dict[int, FrameRecord] = {}
    recorder = Recorder(replay.player, writer, typestore, frames)
    video_writer = None
    try:
        if not replay.wait_for(lambda: replay.publisher.get_subscription_count() > 0, 10.0):
            raise BagError('face_node did not subscribe within 10 s (is ROS discovery blocked?)')
        fps = bag_rate(reader, connection)
        start, overhead, first_ns, index, next_print, seconds_in = time.perf_counter(), 0.0, None, 0, 0.0, 0.0
        damage: list[str] = []
        undecodable: list[str] = []  # why each frame could not be sent
        for _, timestamp, rawdata in readable_messages(reader, [connection], damage):
            if max_frames is not None and index >= max_frames:
                break
            STOP.progress(index, min(connection.msgcount, max_frames or connection.msgcount))
            begin = time.perf_counter()
            first_ns = timestamp if first_ns is None else first_ns
            seconds_in = (timestamp - first_ns) * 1e-9
            if labels is None and index == 0:
                labels = bag_labels(reader, first_ns)
            index += 1
            try:
                msg, image = decode_frame(rawdata, connection.msgtype)
            except ImageConversionError as error:  # face_node would drop it: no answer to wait for
                undecodable.append(f'frame {index - 1} (t={seconds_in:.2f} s): {error}')
                continue
            key = stamp_key(msg.header)
            frame = frames[key] = FrameRecord(time=key * 1e-9, sent=time.time_ns() * 1e-9,
                                              label=(labels.at(index - 1, seconds_in) or None) if labels else None)
            replay.publisher.publish(rawdata)
            overhead += time.perf_counter() - begin
            replay.wait_for(lambda: 'emotions' in frame.published, timeout)  # noqa: B023 - this frame's
            if video is not None:
                video_writer = write_video_frame(video_writer, video, fps, image, recorder, key)
            if print_every and seconds_in >= next_print:
                print(f'  t={seconds_in:5.1f} s  {describe_frame(recorder, key)}', flush=True)
                next_print += print_every
            for messages in recorder.latest.values():  # this frame is done: keep memory bounded
                messages.pop(key, None)
        seconds = time.perf_counter() - start
        replay.wait_for(lambda: False, 0.3)  # the last frames' stress estimates
    finally:
        writer.close()
        reader.close()
        if video_writer is not None:
            video_writer.release()
        replay.close()
    if undecodable and not frames:
        raise BagError(f'{bag}: none of the {len(undecodable)} images on {connection.topic} can be decoded; '
                       f'first: {undecodable[0]}')
    if not frames:
        raise BagError(f'{bag}: no image on {connection.topic}' + (f' before it breaks: {damage[0]}' if damage else ''))
    records = list(frames.values())
    summary = summarize(records, recorder.stress, seconds, overhead, undecodable)
    summary.update(bag=str(bag), output=str(output), image_topic=connection.topic,
                   cut_short={'frames': index, 'time_s': seconds_in, 'reason': damage[0]} if damage else None)
    if plot is not None:
        summary['plot'] = str(plot_or_skip(records, recorder.stress, plot))
    if video is not None:
        summary['video'] = str(video)
    return summary


def bag_rate(reader, connection) -> float:
    """Frames per second of the image topic (30 where the bag is too short to tell)."""
    span = (reader.end_time - reader.start_time) * 1e-9
    return (connection.msgcount - 1) / span if connection.msgcount > 1 and span > 0 else 30.0


def describe_frame(recorder: Recorder, key: int, count: int = 3) -> str:
    """One line per frame for the console: each face's emotion, strongest coefficients, latest stress."""
    emotions, expressions = recorder.latest['emotions'].get(key), recorder.latest['expressions'].get(key)
    if emotions is None or expressions is None:
        return 'no answer'
    stress_of = recorder.latest_stress
    parts = []
    for emotion, expression in zip(emotions.emotions, expressions.expressions):
        values = np.asarray(expression.coefficients)
        strongest = ', '.join(f'{expressions.names[k]} {values[k]:.2f}' for k in np.argsort(-values)[:count])
        stress = f'{stress_of[emotion.id].probability:.2f}' if emotion.id in stress_of else 'window filling'
        parts.append(f'{emotion.id}: {emotion.label} {emotion.confidence:.2f} | {strongest} | stress {stress}')
    return '; '.join(parts) or 'no face'


def write_video_frame(video_writer, path: Path, fps: float, image: np.ndarray, recorder: Recorder, key: int):
    """Annotate one frame with its own faces and emotions and the latest stress; append it to the MP4."""
    image = image.copy()  # may be a view of the message's buffer
    faces = recorder.latest['faces'].get(key)
    if faces is not None:
        emotions = recorder.latest['emotions'].get(key)
        emotion_of = {e.id: e for e in emotions.emotions} if emotions else {}
        annotate(image, face_annotations(faces, emotion_of, recorder.latest_stress))
    if video_writer is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        video_writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                                       (image.shape[1], image.shape[0]))
        if not video_writer.isOpened():
            raise BagError(f'OpenCV cannot write {path} (mp4v)')
    video_writer.write(image)
    return video_writer


def plot_or_skip(records: list[FrameRecord], stress: list[StressRecord], path: Path) -> Path | str:
    try:
        return plot_timeline(records, stress, path)
    except ImportError:
        return 'skipped: the timeline plot needs matplotlib (pip install matplotlib)'


# ---------------------------------------------------------------- command line

def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='fer3d-bag', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    commands = parser.add_subparsers(dest='command', required=True)
    rec = commands.add_parser('record', help='a video file or image folder -> rosbag2 of images')
    rec.add_argument('source', type=Path, help='video file, or folder of images (sorted by name)')
    rec.add_argument('output', type=Path, help='bag folder to create')
    rec.add_argument('--topic', default='/camera/image_raw', help='image topic (default %(default)s)')
    rec.add_argument('--frame-id', default='camera', help='header frame_id (default %(default)s)')
    rec.add_argument('--fps', type=float, help="frame rate; default the video's, 30 for a folder")
    rec.add_argument('--start-time', type=float, help='stamp of the first frame, Unix seconds (default now)')
    rec.add_argument('--compressed', action='store_true', help='store jpeg CompressedImage on <topic>/compressed')
    rec.add_argument('--max-frames', type=int)
    add_common(rec)
    ev = commands.add_parser('eval', help='replay a bag through the pipeline, record outputs, report')
    ev.add_argument('bag', type=Path)
    ev.add_argument('--output', type=Path, help='bag folder for the outputs (default <bag>_fer3d)')
    ev.add_argument('--topic', help='image topic (default: the only Image/CompressedImage topic)')
    ev.add_argument('--video', type=Path, help='also write the annotated frames to this MP4')
    ev.add_argument('--plot', type=Path, help='timeline PNG (default <output>/timeline.png)')
    ev.add_argument('--no-stress', action='store_true', help='do not run stress_node')
    ev.add_argument('--max-frames', type=int)
    ev.add_argument('--timeout', type=float, default=10.0, help='seconds to wait for one frame (default 10)')
    ev.add_argument('--print-every', type=float, default=0.0, metavar='SECONDS',
                    help='print each face\'s emotion and stress every SECONDS of bag time')
    add_common(ev)
    fleet = commands.add_parser('fleet', help='many bags in parallel on Dask, in process (no DDS), one merged report')
    fleet.add_argument('bags', type=Path, nargs='+', help='bag folders, or folders of bags')
    fleet.add_argument('--output', type=Path, required=True,
                       help='folder of the reports: one per bag (done bags are skipped next time), report.json')
    fleet.add_argument('--workers', type=int, help='local worker processes (default: one per core)')
    fleet.add_argument('--scheduler', help='a Dask scheduler address (tcp://host:8786) instead of local workers')
    fleet.add_argument('--topic', help='image topic (default: the only Image/CompressedImage topic of each bag)')
    fleet.add_argument('--max-frames', type=int)
    fleet.set_defaults(labels=None)
    return parser.parse_args(argv)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--labels', type=Path, help='CSV with time,label or frame,label (see above)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='bag storage plugin (default %(default)s)')
    parser.add_argument('--overwrite', action='store_true', help='replace the output bag of an earlier complete run')


def positive(value: float | None, name: str) -> None:
    if value is not None and not value > 0:
        raise BagError(f'{name} must be positive, got {value}')


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    user_arguments = remove_ros_args(argv)[1:]
    ros_arguments = argv[1 + len(user_arguments):] if '--ros-args' in argv else []
    options = parse_arguments(user_arguments)
    try:
        with STOP:
            positive(options.max_frames, '--max-frames')
            labels = read_labels(options.labels) if options.labels else None
            if options.command == 'record':
                return run_record(options, labels)
            if options.command == 'fleet':
                return run_fleet(options)
            return run_eval(options, labels, ros_arguments)
    except BagError as error:
        print(f'fer3d-bag {options.command}: {error}', file=sys.stderr)
        return 2
    except Interrupted as stop:
        kept = f'what it wrote (closed properly) is in {stop.outputs}, replaced by the next run' if stop.outputs \
            else 'nothing was written'
        print(f'fer3d-bag {options.command}: interrupted by {stop} at frame {stop.frame} of {stop.total or "?"}; '
              f'{kept}', file=sys.stderr)
        return 128 + stop.signum


def run_record(options: argparse.Namespace, labels: Labels | None) -> int:
    positive(options.fps, '--fps')
    print(f'recording {options.source} into {options.output}', flush=True)
    with staged_output(options.output, options.overwrite) as bag:
        recorded = record(options.source, bag, topic=options.topic, frame_id=options.frame_id, fps=options.fps,
                          labels=labels, storage=options.storage, compressed=options.compressed,
                          max_frames=options.max_frames, start_time=options.start_time)
    print(f'wrote {recorded.frames} frames to {options.output}')
    if recorded.announced and recorded.frames < recorded.announced - 1:  # a header's estimate may be one off
        print(f'fer3d-bag record: {options.source} ends after {recorded.frames} of the {recorded.announced} frames '
              'its header announces (cut short or damaged); the bag holds those (exit status 3)', file=sys.stderr)
        return 3
    return 0


def run_fleet(options: argparse.Namespace) -> int:
    from fer3d_ros.tools.fleet import format_fleet
    from fer3d_ros.tools.fleet import run_fleet as evaluate_fleet
    positive(options.workers, '--workers')
    try:
        report = evaluate_fleet(options.bags, options.output, workers=options.workers, scheduler=options.scheduler,
                                topic=options.topic, max_frames=options.max_frames)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise BagError(str(error)) from None
    print(format_fleet(report))
    print(f'reports: {options.output} (one per bag, report.json)')
    return 1 if report['failures'] else 0


def run_eval(options: argparse.Namespace, labels: Labels | None, ros_arguments: Sequence[str]) -> int:
    positive(options.timeout, '--timeout')
    output = options.output or options.bag.with_name(options.bag.name + '_fer3d')
    with staged_output(output, options.overwrite) as staging:
        summary = evaluate(options.bag, staging, topic=options.topic, labels=labels, video=options.video,
                           plot=options.plot or staging / 'timeline.png', storage=options.storage,
                           stress=not options.no_stress, max_frames=options.max_frames, timeout=options.timeout,
                           print_every=options.print_every, ros_arguments=ros_arguments)
        summary['output'] = str(output)
        if options.plot is None and Path(summary['plot']).parent == staging:
            summary['plot'] = str(output / 'timeline.png')
        (staging / 'report.json').write_text(json.dumps(summary, indent=1))
    print(format_report(summary))
    print(f'outputs: {output} (bag, report.json, {Path(summary["plot"]).name if "plot" in summary else "no plot"})'
          + (f'; annotated video: {summary["video"]}' if 'video' in summary else ''))
    if (cut := summary['cut_short']) is not None:
        print(f"fer3d-bag eval: the bag is cut short after frame {cut['frames']} (t={cut['time_s']:.2f} s): "
              f"{cut['reason']}; the report covers those frames (exit status 3). The storage is damaged past "
              "that point: `mcap recover` or sqlite3's `.recover` can rewrite its readable part as an intact file.",
              file=sys.stderr)
        return 3
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
