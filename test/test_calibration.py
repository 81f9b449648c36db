"""Per-track calibration: synthetic tracks with a known identity and neutral offset, id separation."""
import numpy as np
import pytest

from fer3d_ros.core.expression.calibration import CalibrationSettings, Calibrator
from fer3d_ros.core.expression.morphable_model import load_landmark_model
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera, rotation_from_euler

MODEL = load_landmark_model()
N_COEFFICIENTS = 55


class SyntheticPerson:
    """Landmarks of a known identity (mostly at rest, sometimes expressive, turning the head) and the
    regressor's coefficients = this person's resting offset + the expression + noise."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.identity = self.rng.normal(0, 0.7, MODEL.n_identity)
        self.offset = self.rng.uniform(0.0, 0.25, N_COEFFICIENTS)
        # Shapes that move the inner landmarks clearly (DESIGN 5: what a landmark fit sees).
        self.visible = [MODEL.expression_names.index(name) for name in (
            'mouthSmile_L', 'mouthSmile_R', 'jawOpen', 'browInnerUp_L', 'browDown_L', 'browDown_R',
            'mouthFrown_L', 'mouthFrown_R', 'noseSneer_L', 'mouthFunnel')]

    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        expression = np.zeros(MODEL.n_expression)
        expressive = self.rng.random() < 0.3
        if expressive:
            chosen = self.rng.choice(self.visible, 3, replace=False)
            expression[chosen] = self.rng.uniform(0.4, 0.9, 3)
        angles = self.rng.uniform(-0.3, 0.3, 3)
        camera = ScaledOrthographicCamera(12.0, rotation_from_euler(*angles), np.array([320.0, 240.0]))
        points = camera.project(MODEL.landmarks(self.identity, expression)) + self.rng.normal(0, 0.5, (68, 2))
        coefficients = np.clip(self.offset + 0.6 * expression[:N_COEFFICIENTS] + self.rng.normal(0, 0.02, 55), 0, 1)
        return points, coefficients, angles, expressive


def shape_error_cm(identity: np.ndarray, truth: np.ndarray) -> float:
    """RMS distance between the 68 3D landmarks of two identities after the best similarity
    transform (cm): landmarks in a scaled-orthographic camera fix a face only up to one."""
    estimate, target = (points - points.mean(axis=0) for points in (MODEL.landmarks(identity), MODEL.landmarks(truth)))
    u, singular, vt = np.linalg.svd(estimate.T @ target)
    aligned = singular.sum() / (estimate ** 2).sum() * estimate @ u @ vt
    return float(np.sqrt(((aligned - target) ** 2).sum(axis=1).mean()))


def feed(calibrator: Calibrator, people: dict[str, SyntheticPerson], frames: int, start: float = 0.0) -> dict:
    results = {}
    for index in range(frames):
        calibrator.new_frame(start + index / 30)
        for face_id, person in people.items():
            results[face_id] = calibrator.update(face_id, *person.frame()[:3])
    return results


def test_a_synthetic_track_converges_to_its_identity_and_neutral_offset():
    person = SyntheticPerson(1)
    calibrator = Calibrator(N_COEFFICIENTS)
    first = feed(calibrator, {'f1': person}, 1)['f1']
    assert first.confidence < 0.1
    start_error = shape_error_cm(calibrator.tracks.get('f1').identity.identity, person.identity)
    result = feed(calibrator, {'f1': person}, 300, start=1.0)['f1']
    track = calibrator.tracks.get('f1')
    error = shape_error_cm(track.identity.identity, person.identity)
    mean_face_error = shape_error_cm(np.zeros(MODEL.n_identity), person.identity)
    assert error < 0.1 and error < 0.6 * start_error and error < 0.5 * mean_face_error, (start_error, error)
    assert np.abs(track.baseline.neutral - person.offset).max() < 0.03
    assert result.confidence > 0.9
    _, coefficients, angles, _ = person.frame()
    assert result.coefficients is not None and result.coefficients.min() >= -1 and result.coefficients.max() <= 1


def test_only_calm_frontal_frames_become_neutral_evidence():
    person = SyntheticPerson(2)
    calibrator = Calibrator(N_COEFFICIENTS)
    feed(calibrator, {'f1': person}, 150)
    calm, expressive = [], []
    for index in range(150):
        points, coefficients, angles, is_expressive = person.frame()
        calibrator.new_frame(10.0 + index / 30)
        (expressive if is_expressive else calm).append(calibrator.update('f1', points, coefficients, angles))
    assert np.mean([r.neutral_candidate for r in calm]) > 0.8
    assert np.mean([r.neutral_candidate for r in expressive]) < 0.2
    assert np.median([r.activity_mm for r in expressive]) > 3 * np.median([r.activity_mm for r in calm])
    turned = calibrator.update('f1', *person.frame()[:2], np.array([0.0, 0.0, np.radians(40)]))
    assert not turned.neutral_candidate


def test_a_face_the_raw_classifier_does_not_call_neutral_is_no_neutral_evidence():
    person = SyntheticPerson(3)
    calibrator = Calibrator(N_COEFFICIENTS, CalibrationSettings(min_neutral_probability=0.3))
    for index in range(60):  # calm and frontal, but read as a held expression
        points, coefficients, _, _ = person.frame()
        calibrator.new_frame(index / 30)
        held = calibrator.update('f1', points, coefficients, np.zeros(3), neutral_probability=0.1)
        assert not held.neutral_candidate
    assert held.coefficients is None and held.confidence == 0.0
    calm = [calibrator.update('f1', *person.frame()[:2], np.zeros(3), neutral_probability=0.8) for _ in range(30)]
    assert np.mean([r.neutral_candidate for r in calm]) > 0.6
    ungated = calibrator.update('f1', *person.frame()[:2], np.zeros(3))  # probability not known: not gated
    assert ungated.coefficients is not None


def test_calibration_never_crosses_between_ids_and_new_tracks_start_fresh():
    people = {'f1': SyntheticPerson(3), 'f2': SyntheticPerson(4)}
    calibrator = Calibrator(N_COEFFICIENTS, CalibrationSettings(forget_after=1.0))
    feed(calibrator, people, 200)
    for face_id, person in people.items():
        track = calibrator.tracks.get(face_id)
        other = people['f2' if face_id == 'f1' else 'f1']
        assert np.abs(track.baseline.neutral - person.offset).max() < 0.03
        assert shape_error_cm(track.identity.identity, person.identity) < \
            0.5 * shape_error_cm(track.identity.identity, other.identity)
    # f2 leaves; a new track f3 (the same person as f1) starts from nothing, f1 keeps its state.
    results = feed(calibrator, {'f1': people['f1'], 'f3': people['f1']}, 40, start=200 / 30)
    assert 'f2' not in calibrator.tracks and len(calibrator) == 2
    assert results['f1'].confidence > 0.99 and results['f3'].confidence < results['f1'].confidence
    assert calibrator.tracks.get('f3').baseline.count <= 40
    # An id that comes back after being forgotten starts fresh too; so does every id after a reset.
    calibrator.new_frame(100.0)
    assert calibrator.update('f2', *people['f2'].frame()[:3]).confidence < 0.1
    calibrator.reset()
    assert len(calibrator) == 0
    assert calibrator.new_frame(0.0) is False


def test_time_jumping_back_restarts_every_track_but_a_frame_out_of_order_does_not():
    calibrator = Calibrator(N_COEFFICIENTS)
    feed(calibrator, {'f1': SyntheticPerson(5)}, 30, start=10.0)
    assert not calibrator.new_frame(10.5) and len(calibrator) == 1  # 30 ms before the latest frame
    assert calibrator.new_frame(0.0) and len(calibrator) == 0  # a replay started again


def test_memory_per_track_is_bounded():
    settings = CalibrationSettings(window=50)
    calibrator = Calibrator(N_COEFFICIENTS, settings)
    feed(calibrator, {'f1': SyntheticPerson(6)}, 200)
    track = calibrator.tracks.get('f1')
    assert track.baseline.count == 50 and track.baseline._coefficients.shape == (50, N_COEFFICIENTS)


def test_at_most_max_tracks_are_calibrated_the_least_recently_seen_dropped_first():
    calibrator = Calibrator(N_COEFFICIENTS, max_tracks=3)
    people = {face_id: SyntheticPerson(seed) for seed, face_id in enumerate(('a', 'b', 'c', 'd'))}
    feed(calibrator, {face_id: people[face_id] for face_id in 'abc'}, 2)
    feed(calibrator, {'a': people['a']}, 1, start=0.1)
    feed(calibrator, {'d': people['d']}, 1, start=0.2)
    assert sorted(calibrator.tracks) == ['a', 'c', 'd']


def test_bad_input_is_refused_with_the_reason():
    calibrator = Calibrator(N_COEFFICIENTS)
    calibrator.new_frame(0.0)
    points, coefficients, angles, _ = SyntheticPerson(7).frame()
    with pytest.raises(ValueError, match=r'expected 68 \(x, y\) landmarks, got 20 values'):
        calibrator.update('f1', points[:10], coefficients)
    with pytest.raises(ValueError, match='non-finite landmarks'):
        calibrator.update('f1', np.where(np.arange(68)[:, None] == 30, np.nan, points), coefficients)
    with pytest.raises(ValueError, match='less than 2 px'):
        calibrator.update('f1', np.zeros((68, 2)), coefficients)
    with pytest.raises(ValueError, match='55 finite coefficients'):
        calibrator.update('f1', points, coefficients * np.nan)
    assert len(calibrator) == 0  # nothing half-made for a refused face
    with pytest.raises(ValueError, match='calm_fraction'):
        Calibrator(N_COEFFICIENTS, CalibrationSettings(calm_fraction=0.0))
