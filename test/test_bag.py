"""fer3d-bag: recording real frames into rosbag2 (sqlite3 and MCAP), replaying them through the
pipeline, the report, and bad bags/labels/sources."""
import json
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from processes import robot_environment
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image

from fer3d_ros.core.image_conversion import numpy_to_image
from fer3d_ros.core.video import read_frames
from fer3d_ros.tools.bag import Labels, fer3d_typestore, main, open_writer, read_labels
from fer3d_ros.tools.sample_data import pyfeat_media

CLIP = pyfeat_media('WolfgangLanger_Pexels.mp4')
FRAMES = 40


def topic_counts(bag) -> dict[str, int]:
    with AnyReader([bag]) as reader:
        return {c.topic: c.msgcount for c in reader.connections}


@pytest.fixture(scope='module')
def clip_bag(tmp_path_factory):
    """40 frames of a real clip in a sqlite3 bag, with labels (frame,label)."""
    folder = tmp_path_factory.mktemp('bag')
    labels = folder / 'labels.csv'
    labels.write_text('frame,label\n0,neutral\n20,happy\n30,\n')
    assert main(['fer3d-bag', 'record', str(CLIP), str(folder / 'clip'), '--labels', str(labels),
                 '--storage', 'sqlite3', '--max-frames', str(FRAMES), '--start-time', '1000']) == 0
    return folder / 'clip'


def test_record_writes_images_and_label_changes(clip_bag):
    assert topic_counts(clip_bag) == {'/camera/image_raw': FRAMES, '/labels': 3}
    with AnyReader([clip_bag]) as reader:
        (images,) = [c for c in reader.connections if c.topic == '/camera/image_raw']
        headers = [deserialize_message(raw, Image).header for _, _, raw in reader.messages(connections=[images])]
        _, timestamp, raw = next(reader.messages(connections=[images]))
    first = deserialize_message(raw, Image)
    assert (first.width, first.height, first.encoding, first.header.frame_id) == (640, 360, 'bgr8', 'camera')
    stamps = [header.stamp.sec * 10**9 + header.stamp.nanosec for header in headers]
    assert stamps[0] == timestamp == 1000 * 10**9 and np.all(np.diff(stamps) > 0)
    assert np.array_equal(np.frombuffer(bytes(first.data), np.uint8).reshape(360, 640, 3), next(read_frames(CLIP)))


def test_eval_replays_every_frame_records_outputs_and_reports(clip_bag, tmp_path, capsys):
    output, video = tmp_path / 'out', tmp_path / 'annotated.mp4'
    assert main(['fer3d-bag', 'eval', str(clip_bag), '--output', str(output), '--video', str(video),
                 '--ros-args', '-p', 'expression_node:backend:=onnxruntime']) == 0
    printed = capsys.readouterr().out
    report = json.loads((output / 'report.json').read_text())
    assert report['frames'] == report['answered'] == FRAMES
    assert report['faces_per_frame']['histogram'] == {'0': 0, '1': FRAMES} and report['id_switches'] == 0
    assert report['emotion']['frames'] == 30  # frames 0-29 labelled, 30-39 not
    assert np.sum(report['emotion']['confusion']) == 30
    for stage in ('faces', 'expressions', 'emotions', 'end_to_end'):
        assert report['latency'][stage]['count'] == FRAMES and report['latency'][stage]['median_ms'] > 0
    assert report['bag_overhead_frames_per_second'] > report['frames_per_second']
    counts = topic_counts(output)
    assert counts['/faces'] == counts['/expressions'] == counts['/emotions'] == FRAMES
    assert (output / 'timeline.png').stat().st_size > 10_000
    capture = cv2.VideoCapture(str(video))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == FRAMES and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 640
    assert 'emotion vs labels (30 labelled frames)' in printed and 'id switches of the main face: 0' in printed
    changes = report['label_changes']  # the temporal model holds what the frames alone change
    assert changes['seconds'] > 1.0 and changes['per_minute'] <= changes['frame_per_minute']
    assert "main face's emotion label" in printed


def test_image_folder_to_compressed_mcap_and_back(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    for index, frame in enumerate(read_frames(CLIP, max_frames=8)):
        cv2.imwrite(str(folder / f'{index:04d}.png'), frame)
    bag = tmp_path / 'compressed'
    assert main(['fer3d-bag', 'record', str(folder), str(bag), '--compressed', '--fps', '10']) == 0
    assert topic_counts(bag) == {'/camera/image_raw/compressed': 8}
    assert main(['fer3d-bag', 'eval', str(bag), '--no-stress', '--ros-args', '-p',
                 'expression_node:backend:=onnxruntime']) == 0
    report = json.loads((tmp_path / 'compressed_fer3d' / 'report.json').read_text())
    assert report['answered'] == 8 and report['faces_per_frame']['mean'] == 1.0 and report['emotion'] is None


@pytest.fixture(scope='module')
def mcap_bag(tmp_path_factory):
    """The same 40 frames and labels in an MCAP bag."""
    folder = tmp_path_factory.mktemp('mcap')
    labels = folder / 'labels.csv'
    labels.write_text('frame,label\n0,neutral\n20,happy\n30,\n')
    assert main(['fer3d-bag', 'record', str(CLIP), str(folder / 'clip'), '--labels', str(labels),
                 '--max-frames', str(FRAMES), '--start-time', '1000']) == 0
    return folder / 'clip'


def cut_in_half(bag, tmp_path):
    """A copy of `bag` whose storage file ends halfway, as after a crash or a full disk."""
    broken = tmp_path / 'broken'
    shutil.copytree(bag, broken)
    (storage,) = [f for f in broken.iterdir() if f.suffix in ('.mcap', '.db3')]
    storage.write_bytes(storage.read_bytes()[:storage.stat().st_size // 2])
    return broken


@pytest.mark.parametrize('bag_fixture', ['clip_bag', 'mcap_bag'])
def test_a_bag_cut_short_is_evaluated_up_to_the_break(bag_fixture, request, tmp_path, capsys):
    broken = cut_in_half(request.getfixturevalue(bag_fixture), tmp_path)
    code = main(['fer3d-bag', 'eval', str(broken), '--no-stress', '--ros-args', '-p',
                 'expression_node:backend:=onnxruntime'])
    printed = capsys.readouterr()
    report = json.loads((tmp_path / 'broken_fer3d' / 'report.json').read_text())
    assert code == 3  # evaluated partially
    assert FRAMES // 2 - 5 <= report['frames'] == report['answered'] < FRAMES  # a chunk or a page may be lost
    assert report['cut_short']['frames'] == report['frames'] and report['cut_short']['time_s'] > 0
    assert report['emotion']['frames'] == report['frames']  # the labels before the break were read too
    assert f"cut short after frame {report['frames']}" in printed.err and 'Traceback' not in printed.err
    assert topic_counts(tmp_path / 'broken_fer3d')['/emotions'] == report['frames']


def test_a_bag_without_metadata_yaml_is_read_from_its_storage(mcap_bag, tmp_path, capsys):
    bag = tmp_path / 'unindexed'
    shutil.copytree(mcap_bag, bag)
    (bag / 'metadata.yaml').unlink()  # as a recorder killed before closing the bag leaves it
    assert main(['fer3d-bag', 'eval', str(bag), '--no-stress', '--max-frames', '5', '--ros-args', '-p',
                 'expression_node:backend:=onnxruntime']) == 0
    assert json.loads((tmp_path / 'unindexed_fer3d' / 'report.json').read_text())['answered'] == 5
    assert 'read its storage directly' in capsys.readouterr().err


def write_images(path, serialized_images) -> None:
    """A bag of these serialised sensor_msgs/Image, 10 per second, written with fer3d-bag's own writer."""
    with open_writer(path, 'mcap') as writer:
        connection = writer.add_connection('/camera/image_raw', 'sensor_msgs/msg/Image', typestore=fer3d_typestore())
        for index, rawdata in enumerate(serialized_images):
            writer.write(connection, 1000 * 10**9 + index * 10**8, rawdata)


def test_undecodable_frames_are_counted_and_not_sent(tmp_path, capsys):
    images = [numpy_to_image(frame, 'bgr8') for frame in read_frames(CLIP, max_frames=6)]
    for index, image in enumerate(images):
        image.header.stamp.sec, image.header.stamp.nanosec = 1000, index * 10**8
    images[1].encoding = 'yuv422'  # no node converts it
    images[3].data = images[3].data[:1000]  # pixels cut short
    serialized = [serialize_message(image) for image in images]
    serialized[5] = serialized[5][:200]  # the message itself cut short
    write_images(tmp_path / 'bad', serialized)
    assert main(['fer3d-bag', 'eval', str(tmp_path / 'bad'), '--no-stress', '--ros-args', '-p',
                 'expression_node:backend:=onnxruntime']) == 0
    report = json.loads((tmp_path / 'bad_fer3d' / 'report.json').read_text())
    assert report['undecodable_frames'] == 3 and report['frames'] == report['answered'] == 3
    assert report['first_undecodable'].startswith("frame 1 (t=0.10 s): unsupported image encoding 'yuv422'")
    assert report['seconds'] < 10  # no frame waited out the 10 s timeout for an answer that cannot come
    assert '3 undecodable (not sent; first: frame 1' in capsys.readouterr().out


FAST = ['--no-stress', '--ros-args', '-p', 'expression_node:backend:=onnxruntime']


def test_a_failed_run_leaves_nothing_that_blocks_the_rerun(clip_bag, tmp_path, capsys):
    write_images(tmp_path / 'empty', [])  # an image topic without images: eval fails after opening its outputs
    output = tmp_path / 'out'
    assert main(['fer3d-bag', 'eval', str(tmp_path / 'empty'), '--output', str(output), *FAST]) == 2
    assert 'no image on /camera/image_raw' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / 'empty']
    assert main(['fer3d-bag', 'eval', str(clip_bag), '--output', str(output), '--max-frames', '2', *FAST]) == 0


def test_a_complete_result_is_replaced_only_with_overwrite(clip_bag, tmp_path, capsys):
    output = tmp_path / 'out'
    assert main(['fer3d-bag', 'eval', str(clip_bag), '--output', str(output), '--max-frames', '2', *FAST]) == 0
    assert main(['fer3d-bag', 'eval', str(clip_bag), '--output', str(output), '--max-frames', '3', *FAST]) == 2
    assert 'exists: remove it, choose another output or add --overwrite' in capsys.readouterr().err
    assert json.loads((output / 'report.json').read_text())['frames'] == 2
    assert main(['fer3d-bag', 'eval', str(clip_bag), '--output', str(output), '--max-frames', '3', '--overwrite',
                 *FAST]) == 0
    assert json.loads((output / 'report.json').read_text())['frames'] == 3
    assert topic_counts(output)['/emotions'] == 3 and sorted(p.name for p in tmp_path.iterdir()) == ['out']


def interrupt_after_first_line(arguments: list[str], signum: int, cwd, delay: float = 0.0) -> tuple[int, str, int]:
    """Run fer3d-bag as a user does; send `signum` `delay` s after its first line on stdout.

    Returns the exit status, everything printed and the frame the tool says it was interrupted at."""
    process = subprocess.Popen([sys.executable, '-m', 'fer3d_ros.tools.bag', *arguments], cwd=cwd, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=robot_environment())
    try:
        first = process.stdout.readline()
        time.sleep(delay)
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    frame = re.search(r'interrupted by SIG[A-Z]+ at frame (\d+) of ', err)
    return process.returncode, first + out + err, int(frame[1]) if frame else -1


@pytest.mark.parametrize('signum, status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_eval_stops_cleanly_on_a_signal_and_the_rerun_replaces_its_outputs(clip_bag, tmp_path, signum, status):
    output = tmp_path / 'out'
    code, printed, frame = interrupt_after_first_line(['eval', str(clip_bag), '--output', str(output),
                                                       '--print-every', '0.01', *FAST], signum, cwd=tmp_path)
    assert code == status and 'Traceback' not in printed
    assert f'fer3d-bag eval: interrupted by {signal.Signals(signum).name} at frame {frame} of {FRAMES};' in printed
    assert 1 <= frame < FRAMES and not output.exists()
    assert topic_counts(tmp_path / 'out.incomplete' / 'out')['/emotions'] == frame  # closed properly: readable
    assert main(['fer3d-bag', 'eval', str(clip_bag), '--output', str(output), '--max-frames', '2', *FAST]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']


def test_record_stops_cleanly_on_ctrl_c_and_the_rerun_replaces_its_bag(tmp_path):
    output = tmp_path / 'clip'
    code, printed, frame = interrupt_after_first_line(['record', str(CLIP), str(output), '--compressed'],
                                                      signal.SIGINT, cwd=tmp_path, delay=0.3)
    assert code == 130 and 'Traceback' not in printed and 0 <= frame < 472
    assert f'fer3d-bag record: interrupted by SIGINT at frame {frame} of 472;' in printed
    assert topic_counts(tmp_path / 'clip.incomplete' / 'clip')['/camera/image_raw/compressed'] == frame
    assert main(['fer3d-bag', 'record', str(CLIP), str(output), '--max-frames', '3']) == 0
    assert topic_counts(output) == {'/camera/image_raw': 3} and sorted(p.name for p in tmp_path.iterdir()) == ['clip']


def test_record_of_a_video_cut_short_records_what_it_can_and_says_so(tmp_path, capsys):
    video = tmp_path / 'cut.mp4'
    video.write_bytes(CLIP.read_bytes()[:CLIP.stat().st_size // 2])  # its header still announces 472 frames
    assert main(['fer3d-bag', 'record', str(video), str(tmp_path / 'bag'), '--compressed']) == 3
    frames = topic_counts(tmp_path / 'bag')['/camera/image_raw/compressed']
    assert 100 < frames < 472
    assert f'ends after {frames} of the 472 frames its header announces' in capsys.readouterr().err


@pytest.mark.parametrize('arguments, message', [
    (['record', '/nonexistent/clip.mp4', 'OUT'], 'does not exist'),
    (['record', 'EMPTY_DIR', 'OUT'], 'holds no image'),
    (['record', 'CORRUPT_IMAGE_DIR', 'OUT'], 'cannot read image'),
    (['record', 'NOT_A_VIDEO', 'OUT'], 'cannot open video'),
    (['record', str(CLIP), 'OUT', '--fps', '-5'], '--fps must be positive'),
    (['record', str(CLIP), 'EXISTING'], 'exists: remove it'),
    (['eval', '/nonexistent/bag'], 'does not exist'),
    (['eval', 'EMPTY_DIR'], 'cannot read bag'),
    (['eval', 'NOT_A_VIDEO'], 'cannot read bag'),
])
def test_bad_sources_and_bags_give_one_clear_error(tmp_path, capsys, arguments, message):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'existing').mkdir()
    (tmp_path / 'junk.mp4').write_bytes(b'not a video at all')
    (tmp_path / 'corrupt').mkdir()
    for index, frame in enumerate(read_frames(CLIP, max_frames=3)):
        cv2.imwrite(str(tmp_path / 'corrupt' / f'{2 * index}.png'), frame)
    (tmp_path / 'corrupt' / '3.png').write_bytes(b'not an image')  # between the second and the third frame
    places = {'EMPTY_DIR': tmp_path / 'empty', 'NOT_A_VIDEO': tmp_path / 'junk.mp4', 'OUT': tmp_path / 'out',
              'EXISTING': tmp_path / 'existing', 'CORRUPT_IMAGE_DIR': tmp_path / 'corrupt'}
    assert main(['fer3d-bag', *[str(places.get(a, a)) for a in arguments]]) == 2
    error = capsys.readouterr().err
    assert message in error and 'Traceback' not in error
    assert not (tmp_path / 'out').exists() and not (tmp_path / 'out.incomplete').exists()  # nothing half-written


@pytest.mark.parametrize('text, message', [
    ('time,label\n0,joy\n', "unknown label 'joy'"),
    ('start,emotion\n0,happy\n', 'expected a header'),
    ('time,label\nsoon,happy\n', "time 'soon' is not a number"),
])
def test_bad_labels_are_refused_with_the_line(tmp_path, text, message):
    path = tmp_path / 'labels.csv'
    path.write_text(text)
    with pytest.raises(RuntimeError, match=message):
        read_labels(path)


def test_labels_hold_until_the_next_row():
    labels = Labels([0.0, 2.5, 4.0], ['neutral', 'happy', ''], by_frame=False)
    assert [labels.at(0, t) for t in (0.0, 2.4, 2.5, 3.9, 4.0, 9.0)] == ['neutral', 'neutral', 'happy', 'happy', '', '']
    assert Labels([5], ['sad'], by_frame=True).at(4, 99.0) == ''
