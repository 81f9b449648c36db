"""REP-155 (ROS4HRI) output through real topics: the graph started by the launch file with
ros4hri:=true, a 30 fps 640x480 camera, and a consumer written only against REP-155 and hri_msgs
(test/rep155_consumer.py), each in its own process; hri_msgs is built from ../shared/vendor/ros4hri."""
import json
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from harness import RosHarness
from processes import (
    Process,
    hri_environment,
    launch_environment,
    merged,
    start_launch_file,
    start_node,
    wait_for_nodes,
)

from fer3d_ros.core.expression.action_units import ACTION_UNITS
from fer3d_ros.core.video import read_frames
from training.paths import SHARED

HERE = Path(__file__).resolve().parent
EXPRESSIONS = {'neutral', 'happy', 'sad', 'surprised', 'scared', 'disgusted', 'angry'}  # hri_msgs/Expression's
FACE_KINDS = ('roi', 'landmarks', 'expression', 'facs', 'cropped', 'aligned')
# 90 frames, played twice: person A, nobody, person B, nobody (longer than a track survives unseen).
SEGMENTS = (('vr_1', 25), (None, 20), ('vr_2', 25), (None, 20))


@pytest.fixture(scope='module')
def hri_env(tmp_path_factory):
    return hri_environment(tmp_path_factory.mktemp('hri_msgs'))


@pytest.fixture(scope='module')
def launch_env(tmp_path_factory):
    return launch_environment(tmp_path_factory.mktemp('ros2_launch'))


def test_asking_for_ros4hri_without_hri_msgs_names_what_is_missing(tmp_path):
    try:
        import hri_msgs  # noqa: F401
        pytest.skip('hri_msgs is installed here')
    except ImportError:
        pass
    face = start_node('face_node', tmp_path / 'face.log', '-p', 'ros4hri:=true')
    assert face.wait(timeout=60) == 1
    assert 'cannot start' in face.output and 'hri_msgs' in face.output and 'ros4hri false' in face.output, face.output


def comings_and_goings(path: Path) -> Path:
    frames = []
    for clip, count in SEGMENTS:
        frames += [cv2.resize(frame, (512, 512)) for frame in read_frames(SHARED / 'videos' / f'{clip}.mp4',
                                                                          max_frames=count)] if clip else \
            [np.zeros((512, 512, 3), np.uint8)] * count
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 30.0, (512, 512))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope='module')
def consumed(hri_env, launch_env, tmp_path_factory):
    """What the REP-155 consumer received while the camera played two rounds of SEGMENTS."""
    ros = RosHarness()
    try:
        yield play(ros, hri_env, launch_env, tmp_path_factory.mktemp('rep155'))
    finally:
        ros.close()


def play(ros: RosHarness, hri_env: dict, launch_env: dict, folder: Path) -> dict:
    clip, out = comings_and_goings(folder / 'clip.mp4'), folder / 'consumed.json'
    environment = merged(launch_env, hri_env)
    launch = start_launch_file(environment, folder / 'launch.log', 'fer3d.launch.py', 'ros4hri:=true',
                               'backend:=onnxruntime', 'start_stress:=false')
    consumer = camera = None
    try:
        wait_for_nodes(ros, ros.node('watcher'), {'/face_node', '/expression_node', '/emotion_node'},
                       launch)
        consumer = Process([sys.executable, str(HERE / 'rep155_consumer.py'), str(out), '120'],
                           folder / 'consumer.log', merged(hri_env) or None)
        assert ros.spin_until(lambda: 'ready' in consumer.output or not consumer.running(), 60), \
            consumer.output
        # from the first frame, face_node and the consumer both (a late reader misses the first frames)
        camera = start_node('video_camera', folder / 'camera.log', '-p', f'video:={clip}', '-p', 'rate:=30.0',
                            '-p', 'frames:=180', '-p', 'width:=640', '-p', 'height:=480',
                            '-p', 'wait_for_subscribers:=2')
        assert ros.spin_until(lambda: not camera.running(), 90), camera.output
        ros.spin_for(2.0)
        out.with_suffix('.stop').touch()
        assert consumer.wait(timeout=30) == 0, consumer.output
    finally:
        for process in (camera, consumer, launch):
            if process is not None:
                process.stop()
    return json.loads(out.read_text())


def test_the_tracked_list_follows_faces_that_come_and_go_with_the_image_stamps(consumed):
    images = set(consumed['images'])
    tracked = consumed['tracked']
    assert len(images) >= 170 and all(stamp in images for stamp, _ in tracked)
    ids = [face_ids for _, face_ids in tracked]
    assert [] in ids and any(ids), 'faces must come and go'
    seen = sorted({face_id for face_ids in ids for face_id in face_ids})
    assert len(seen) >= 3, seen  # A, B, then A again as a new track (a track never outlives its face)
    assert all(len(face_ids) <= 1 for face_ids in ids)
    assert ids[-1] == []  # the clip ends with nobody


def test_per_face_topics_appear_while_a_face_is_tracked_and_go_when_it_ends(consumed):
    seen = {face_id for _, face_ids in consumed['tracked'] for face_id in face_ids}
    for face_id in seen:
        expected = {f'/humans/faces/{face_id}/{kind}' for kind in FACE_KINDS}
        assert any(expected <= set(sample) for sample in consumed['topics']), face_id
    assert consumed['topics'][-1] == [], consumed['topics'][-1]


def test_every_answered_frame_has_an_expression_and_facs_for_every_tracked_face(consumed):
    tracked = dict((stamp, face_ids) for stamp, face_ids in consumed['tracked'])
    received = {kind: defaultdict(set) for kind in FACE_KINDS}
    for face_id, kinds in consumed['faces'].items():
        for kind, messages in kinds.items():
            for stamp, _ in messages:
                received[kind][face_id].add(stamp)
    answered = [stamp for stamp in consumed['answered'] if tracked.get(stamp)]
    assert len(answered) >= 60, len(answered)  # ~100 frames with a face; expression_node may drop some
    missing = [(stamp, face_id, kind) for stamp in answered for face_id in tracked[stamp]
               for kind in FACE_KINDS if stamp not in received[kind][face_id]]
    assert not missing, missing[:10]
    images = set(consumed['images'])
    assert all(stamp in images for kind in received.values() for stamps in kind.values() for stamp in stamps)


def test_messages_follow_the_rep(consumed):
    numbers = {unit.number for unit in ACTION_UNITS}
    for kinds in consumed['faces'].values():
        for _, roi in kinds['roi']:
            x0, y0, x1, y1 = roi['box']
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and 0 < roi['c'] <= 1
        for _, landmarks in kinds['landmarks']:
            points = np.array(landmarks['points'])
            assert landmarks['size'] == [640, 480] and len(points) == 70
            assert (points[:68, :2] >= 0).all() and (points[:68, :2] <= 1).all() and (points[:68, 2] > 0).all()
            assert (points[68:, 2] == 0).all()  # no pupils: not observed
        for _, expression in kinds['expression']:
            assert expression['expression'] in EXPRESSIONS and 0 < expression['confidence'] <= 1
            assert expression['valence_is_nan']
        for _, facs in kinds['facs']:
            assert set(facs['read']) <= numbers and facs['read']
        for kind in ('cropped', 'aligned'):
            assert all(image['size'] == [128, 128] and image['encoding'] == 'bgr8' for _, image in kinds[kind])


def test_faces_are_matched_with_people_and_unmatched_when_they_end(consumed):
    matches = consumed['matches']
    recognised = [(face, person) for face, face_type, person, person_type, confidence in matches if confidence > 0]
    assert recognised and all(face.startswith('f') and person.startswith('p') for face, person in recognised)
    ended = {face for face, _, _, _, confidence in matches if confidence == 0}
    still = {face_id for face_id in consumed['tracked'][-1][1]}
    assert {face for face, _ in recognised} - still <= ended
