"""Metric head pose (core/frontend/metric_pose.py): exact on clean projections, REP-155's axes, clear errors."""
import numpy as np
import pytest

from fer3d_ros.core.expression.morphable_model import load_landmark_model
from fer3d_ros.core.frontend.face_template import load_face_template
from fer3d_ros.core.frontend.metric_pose import SELLION, Intrinsics, solve_head_pose
from fer3d_ros.core.frontend.pose import rotation_from_euler
from training.eval_head_pose import INTRINSICS, hri_face_detect_pose, project, rotation_error

MODEL = load_landmark_model()
RIGID = load_face_template().rigid_landmarks


@pytest.mark.parametrize('yaw, distance', [(0.0, 0.5), (40.0, 1.2), (-60.0, 2.5)])
def test_a_pose_is_recovered_exactly_from_clean_landmarks_of_the_same_face(yaw, distance):
    points = MODEL.landmarks(np.random.default_rng(1).standard_normal(MODEL.n_identity))
    rotation = rotation_from_euler(np.radians(5), np.radians(-10), np.radians(yaw))
    translation = np.array([0.05, -0.02, distance]) - rotation @ points[SELLION] * 0.01
    pose = solve_head_pose(project(points, rotation, translation), points, INTRINSICS, RIGID)
    assert np.allclose(pose.rotation, rotation, atol=1e-6) and np.allclose(pose.translation, translation, atol=1e-6)
    assert np.isclose(pose.distance, np.linalg.norm([0.05, -0.02, distance]), atol=1e-6)
    assert pose.reprojection_px < 1e-6


def test_a_face_looking_at_the_camera_has_rep155_axes():
    """Face frame: x out of the face (toward the camera: -z optical), z toward the scalp (-y optical);
    gaze frame: z along the gaze (toward the camera), x the face's right (the image's left), y down."""
    points = MODEL.landmarks()
    translation = np.array([0.0, 0.0, 1.0])
    pose = solve_head_pose(project(points, np.eye(3), translation), points, INTRINSICS)
    face, gaze = pose.face_rotation(), pose.gaze_rotation()
    assert np.allclose(face[:, 0], [0, 0, -1], atol=1e-6) and np.allclose(face[:, 2], [0, -1, 0], atol=1e-6)
    assert np.allclose(face[:, 1], [1, 0, 0], atol=1e-6)  # the face's left is the image's right
    assert np.allclose(gaze[:, 2], face[:, 0]) and np.allclose(gaze[:, 0], [-1, 0, 0], atol=1e-6)
    assert np.isclose(np.linalg.det(face), 1.0) and np.isclose(np.linalg.det(gaze), 1.0)


def test_the_person_s_own_face_places_them_better_than_a_fixed_average_head():
    rng = np.random.default_rng(3)
    points = MODEL.landmarks(rng.standard_normal(MODEL.n_identity))
    translation = np.array([0.0, 0.0, 1.0]) - points[SELLION] * 0.01
    landmarks = project(points, np.eye(3), translation) + rng.normal(0, 0.5, (68, 2))
    own = solve_head_pose(landmarks, points, INTRINSICS, RIGID)
    hri_rotation, hri_position = hri_face_detect_pose(landmarks)
    truth = np.array([0.0, 0.0, 1.0])
    assert np.linalg.norm(own.sellion - truth) < 0.03  # metres, at 1 m
    assert np.linalg.norm(own.sellion - truth) < np.linalg.norm(hri_position - truth)
    assert rotation_error(own.face_rotation(), np.eye(3) @ np.array([[0, 1, 0], [0, 0, -1], [-1, 0, 0]])) < 3.0


def test_a_field_of_view_gives_a_centred_camera_and_bad_points_a_clear_error():
    camera = Intrinsics.from_field_of_view(640, 480, 90.0)
    assert np.isclose(camera.matrix[0, 0], 320.0) and np.isclose(camera.matrix[0, 2], 319.5)
    landmarks = np.full((68, 2), np.nan)
    with pytest.raises(ValueError, match='finite'):
        solve_head_pose(landmarks, MODEL.landmarks(), camera)
