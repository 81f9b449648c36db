"""Dense 3D facial motion: rigid and non-rigid parts of a model face moving between two frames."""
import numpy as np
import pytest

from fer3d_ros.core.expression.motion import HeadPose, MotionTracker, direction_colours, load_motion_model, place
from fer3d_ros.core.frontend.pose import rotation_from_euler

MODEL, VERTICES = load_motion_model()


def pose(yaw=0.0, tx=0.0, ty=0.0, scale=10.0):
    return HeadPose(rotation_from_euler(0.0, 0.0, yaw), scale, np.array([tx, ty]))  # tx, ty from the image centre


def expression(**values):
    e = np.zeros(MODEL.n_expression)
    for name, value in values.items():
        e[list(MODEL.expression_names).index(name)] = value
    return e


def test_the_model_spreads_its_points_over_the_face():
    assert MODEL.mean.shape == (500, 3) and len(np.unique(VERTICES)) == 500
    assert np.ptp(MODEL.mean[:, 0]) > 12.0  # cm: from cheek to cheek


def test_a_head_turn_is_rigid_and_a_jaw_opening_is_not():
    tracker, identity = MotionTracker(MODEL), np.random.default_rng(0).normal(0, 1, MODEL.n_identity)
    tracker.new_frame(0.0)
    assert tracker.update('f1', identity, expression(), pose()) is None  # first frame: nothing to compare
    tracker.new_frame(0.1)
    turn = tracker.update('f1', identity, expression(), pose(yaw=0.1, tx=10.0))
    assert np.abs(turn.nonrigid).max() < 1e-9 and np.abs(turn.rigid).max() > 1.0
    shape = MODEL.landmarks(identity, expression())
    expected = place(shape, pose(yaw=0.1, tx=10.0)) - place(shape, pose())
    assert np.allclose(turn.rigid, expected)
    tracker.new_frame(0.2)
    jaw = tracker.update('f1', identity, expression(jawOpen=0.8), pose(yaw=0.1, tx=10.0))
    assert np.abs(jaw.rigid).max() < 1e-9 and np.linalg.norm(jaw.nonrigid, axis=1).max() > 5.0  # mm
    assert np.allclose(jaw.total, jaw.positions - turn.positions)


def test_a_translation_in_pixels_is_a_motion_in_millimetres():
    tracker = MotionTracker(MODEL)
    tracker.new_frame(0.0)
    tracker.update('f1', None, expression(), pose(tx=0.0))
    tracker.new_frame(0.1)
    moved = tracker.update('f1', None, expression(), pose(tx=10.0))
    assert np.allclose(moved.rigid, [10.0, 0.0, 0.0])  # 10 px at 10 px/cm: 10 mm to the right, every point


def test_a_face_that_comes_closer_does_not_move_in_millimetres():
    tracker = MotionTracker(MODEL)
    tracker.new_frame(0.0)
    tracker.update('f1', None, expression(), pose(scale=10.0, tx=100.0, ty=50.0))
    tracker.new_frame(0.1)
    closer = tracker.update('f1', None, expression(), pose(scale=20.0, tx=200.0, ty=100.0))
    assert np.abs(closer.total).max() == pytest.approx(0.0, abs=1e-9)


def test_colours_follow_direction_and_length():
    colours = direction_colours(np.array([[5.0, 0, 0], [-5.0, 0, 0], [0.5, 0, 0], [0, 0, 5.0]]), full_scale_mm=5.0)
    assert colours.shape == (4, 3) and not np.array_equal(colours[0], colours[1])  # opposite hues
    assert colours[0].max() > 4 * colours[2].max()  # longer is brighter
    assert colours[3].max() - colours[3].min() < 5  # along z: unsaturated (grey)
