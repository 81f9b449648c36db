"""Front end pieces: registration, head pose, tracking, and the whole chain on real images."""
import time

import cv2
import numpy as np
import pytest

from fer3d_ros.core.frontend.alignment import align_face, apply_transform, similarity_transform
from fer3d_ros.core.frontend.detection import default_detector
from fer3d_ros.core.frontend.face_template import load_face_template
from fer3d_ros.core.frontend.front_end import FaceFrontEnd, FrontEndSettings
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera, fit_camera, rotation_from_euler
from fer3d_ros.core.frontend.tracking import FaceTracker
from fer3d_ros.core.settings import build
from training.landmark_sets import load_landmark_sets, normalised_mean_error

TEMPLATE = load_face_template()


def front_end_with(detector=None, tracker=None, **settings) -> FaceFrontEnd:
    """A front end with face_node's settings but those given (dotted names as keywords, '__' for '.')."""
    values = {name.replace('__', '.'): value for name, value in settings.items()}
    return FaceFrontEnd(build(FrontEndSettings, values), detector=detector, tracker=tracker, template=TEMPLATE)


@pytest.fixture(scope='module')
def front_end():
    return front_end_with()


def test_the_front_end_built_without_arguments_is_face_nodes():
    front_end = FaceFrontEnd()
    assert (front_end.detect_every, front_end.background_detection, front_end.crop_size) == (5, True, 224)
    assert front_end.detector.max_size == 640 and front_end.detector.top_k == 10


def _similarity(angle_deg, scale, shift):
    angle = np.radians(angle_deg)
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([linear, np.asarray(shift, float)[:, None]])


def test_similarity_transform_recovers_a_known_transform():
    points = TEMPLATE.frontal_points(224)
    known = _similarity(23.0, 1.7, (40.0, -12.0))
    np.testing.assert_allclose(similarity_transform(points, apply_transform(known, points)), known, atol=1e-9)


def test_alignment_puts_landmarks_on_the_template_for_a_rotated_scaled_copy():
    item = next(i for i in load_landmark_sets() if i.name.endswith('takeo.ppm'))
    image = cv2.imread(str(item.image_path))
    warp = _similarity(-30.0, 1.6, (60.0, 20.0))
    warped = cv2.warpAffine(image, warp, (400, 420))
    moved = apply_transform(warp, item.landmarks)
    template = TEMPLATE.frontal_points(224)
    crop, transform = align_face(warped, moved, template, 224)
    assert crop.shape == (224, 224, 3)
    residual = np.linalg.norm(apply_transform(transform, moved) - template, axis=1)
    # Same result as aligning the original image: only the person's shape differs from the template.
    _, direct = align_face(image, item.landmarks, template, 224)
    np.testing.assert_allclose(apply_transform(transform, moved), apply_transform(direct, item.landmarks), atol=1e-6)
    assert np.median(residual) < 6.0, f'landmarks {np.median(residual):.1f} px from the template'


def test_frontal_template_is_upright_and_inside_the_crop():
    points = TEMPLATE.frontal_points(224)
    assert points.min() > 0 and points.max() < 224
    assert points[8, 1] > points[30, 1] > points[19, 1]  # chin below nose tip below brows
    assert points[36, 0] < points[45, 0]  # subject's right eye on the image's left


@pytest.mark.parametrize('roll, pitch, yaw', [(0, 0, 0), (0.2, -0.1, 0.4), (-0.3, 0.25, -0.5)])
def test_head_pose_is_recovered_from_noisy_projected_landmarks(roll, pitch, yaw):
    # 10 px/cm: a face 150 px wide; 1 px noise gives a median angle error of ~0.025 rad here.
    truth = ScaledOrthographicCamera(10.0, rotation_from_euler(roll, pitch, yaw), np.array([320.0, 240.0]))
    points = truth.project(TEMPLATE.landmarks_3d)
    noisy = points + np.random.default_rng(1).normal(0, 1.0, points.shape)
    rigid = TEMPLATE.rigid_landmarks
    camera = fit_camera(noisy[rigid], TEMPLATE.landmarks_3d[rigid])
    np.testing.assert_allclose(camera.euler(), (roll, pitch, yaw), atol=0.1)
    assert camera.scale == pytest.approx(10.0, rel=0.06)
    reprojection = np.linalg.norm(camera.project(TEMPLATE.landmarks_3d[rigid]) - points[rigid], axis=1)
    assert reprojection.mean() < 1.5  # ~the noise itself (mean norm 1.25 px), not pose error


def test_head_pose_signs_follow_the_message_convention():
    """Nodding down moves the nose tip down; positive yaw moves it to the image's left."""
    nose = TEMPLATE.landmarks_3d[30]
    frontal = ScaledOrthographicCamera(1.0, np.eye(3), np.zeros(2)).project(nose[None])[0]
    down = ScaledOrthographicCamera(1.0, rotation_from_euler(0, 0.3, 0), np.zeros(2)).project(nose[None])[0]
    left = ScaledOrthographicCamera(1.0, rotation_from_euler(0, 0, 0.3), np.zeros(2)).project(nose[None])[0]
    assert down[1] > frontal[1] and left[0] < frontal[0]


def _face_at(x, y, size=100.0):
    box = np.array([x, y, x + size, y + size])
    landmarks = TEMPLATE.frontal_points(int(size)) + (x, y)
    return box, landmarks


def test_tracker_keeps_id_through_short_dropout():
    tracker = FaceTracker(confirm_frames=3, max_misses=6)
    ids = []
    for frame in range(20):
        if 8 <= frame < 13:  # a 5-frame dropout, shorter than max_misses
            tracker.update(np.empty((0, 4)), np.empty((0, 68, 2)))
            continue
        box, landmarks = _face_at(100 + 2 * frame, 80)
        (track,) = tracker.update(box[None], landmarks[None])
        ids.append((track.id, track.confirmed))
    assert {i for i, _ in ids} == {'f0001'}
    assert [confirmed for _, confirmed in ids[:3]] == [False, False, True]


def test_tracker_drops_a_track_after_max_misses_and_never_reuses_ids():
    tracker = FaceTracker(confirm_frames=1, max_misses=2)
    box, landmarks = _face_at(100, 80)
    assert tracker.update(box[None], landmarks[None])[0].id == 'f0001'
    for _ in range(3):
        tracker.update(np.empty((0, 4)), np.empty((0, 68, 2)))
    assert tracker.update(box[None], landmarks[None])[0].id == 'f0002'


def test_tracker_keeps_two_crossing_faces_apart():
    tracker = FaceTracker(confirm_frames=1)
    history = {}
    for frame in range(10):
        faces = [_face_at(50 + 20 * frame, 100), _face_at(400 - 20 * frame, 300)]
        order = [1, 0] if frame % 2 else [0, 1]  # detector order changes from frame to frame
        tracks = tracker.update(np.array([faces[i][0] for i in order]), np.array([faces[i][1] for i in order]))
        for i, track in zip(order, tracks):
            history.setdefault(i, set()).add(track.id)
    assert history == {0: {'f0001'}, 1: {'f0002'}}


def test_front_end_finds_landmarks_crop_and_pose_on_a_real_image(front_end):
    item = next(i for i in load_landmark_sets() if i.name.endswith('takeo.ppm'))
    result = front_end.process(cv2.imread(str(item.image_path)))
    (face,) = result.faces
    assert normalised_mean_error(face.landmarks, item.landmarks) < 0.05
    assert face.crop.shape == (224, 224, 3) and face.id == 'f0001'
    assert abs(face.pose.euler()[0]) < 0.3  # an upright face
    assert set(result.seconds) == {'detect', 'landmarks', 'track', 'align', 'pose'}


def test_front_end_returns_nothing_for_a_frame_without_faces(front_end):
    assert front_end.process(np.full((480, 640, 3), 127, np.uint8)).faces == []


class CountingDetector:
    """The real detector, with a count of the frames it ran on."""

    def __init__(self, detector) -> None:
        self.detector, self.calls = detector, 0

    def detect(self, image):
        self.calls += 1
        return self.detector.detect(image)


def _clip(frames: int):
    from fer3d_ros.core.video import read_frames
    from fer3d_ros.tools.sample_data import pyfeat_media
    return list(read_frames(pyfeat_media('WolfgangLanger_Pexels.mp4'), max_frames=frames))


def test_faces_are_followed_between_detections_with_the_same_id_and_landmarks():
    frames = _clip(30)
    every_frame = front_end_with(tracking__detect_every=1)
    detector = CountingDetector(default_detector())
    scheduled = front_end_with(detector, tracking__detect_every=5, tracking__detect_in_background=False)
    errors, ids = [], set()
    for frame in frames:
        (reference,), (followed,) = every_frame.process(frame).faces, scheduled.process(frame).faces
        size = np.linalg.norm(reference.box[2:] - reference.box[:2])
        errors.append(np.linalg.norm(followed.landmarks - reference.landmarks, axis=1).mean() / size)
        ids.add(followed.id)
        assert followed.score > 0.5  # the score of its last detection
    assert detector.calls == 6 and ids == {'f0001'}
    assert np.median(errors) < 0.01 and max(errors) < 0.03  # fractions of the face diagonal


def test_a_face_that_leaves_is_dropped_at_once_and_one_that_walks_in_is_found_within_detect_every_frames():
    frame = _clip(1)[0]
    alone, together = (np.hstack([frame, other]) for other in (np.zeros_like(frame), frame))
    detector = CountingDetector(default_detector())
    front_end = front_end_with(detector, tracking__max_misses=0, tracking__detect_every=4,
                               tracking__detect_in_background=False)
    assert len(front_end.process(together).faces) == 2
    assert len(front_end.process(alone).faces) == 1  # the right one left: no longer like itself, detect
    assert detector.calls == 2
    counts = [len(front_end.process(together).faces) for _ in range(4)]  # it walks in again
    assert counts == [1, 1, 1, 2] and detector.calls == 3  # found at the next scheduled detection
    assert len(front_end.process(np.zeros_like(together)).faces) == 0  # both leave: gone at once


def test_with_background_detection_followed_faces_wait_for_no_detector_and_new_faces_join_after_it():
    frame = _clip(1)[0]
    alone, together = np.hstack([frame, np.zeros_like(frame)]), np.hstack([frame, frame])
    detector = CountingDetector(default_detector())
    front_end = front_end_with(detector, tracking__detect_every=3, tracking__detect_in_background=True)
    try:
        (first,) = front_end.process(alone).faces  # nothing to follow yet: detected on the frame's path
        counts, detect_seconds = [], []
        for _ in range(8):  # a second face walks in
            result = front_end.process(together)
            counts.append(len(result.faces))
            detect_seconds.append(result.seconds['detect'])
            time.sleep(0.05)  # the camera's next frame: the background detection finishes meanwhile
        assert counts[:2] == [1, 1] and counts[-1] == 2, counts
        assert counts.index(2) <= 3  # scheduled on the 3rd frame, joined on the next
        assert max(detect_seconds) == 0.0  # the detector never ran on these frames' path
        assert result.faces[0].id == first.id and {f.id for f in result.faces} == {first.id, 'f0002'}
        assert all(face.score > 0.5 for face in result.faces)
        counts = [len(front_end.process(alone).faces) for _ in range(2)]  # it leaves: unlike itself, detect
        assert counts == [1, 1]
    finally:
        front_end.close()
