"""Windowed stress features, the per-track estimator, the prior, and training on a synthetic labelled set."""
import csv

import numpy as np
import pytest

from fer3d_ros.core.affect.stress import (
    PRIOR_FEATURES,
    StressEstimator,
    StressModel,
    default_stress_model,
    window_features,
)
from fer3d_ros.core.expression.regressor import default_regressor
from fer3d_ros.core.files import ModelFileError
from training import train_stress

NAMES = default_regressor(backend='onnxruntime').card.expression_names
FPS = 15.0


def synthetic_window(seconds=10.0, blinks_per_minute=15.0, head_speed=5.0, mouth=0.02, brow=0.05, seed=0):
    """Per-frame coefficients and head angles with known blink, head, mouth and brow behaviour."""
    rng = np.random.default_rng(seed)
    times = np.arange(0, seconds, 1 / FPS)
    coefficients = np.clip(0.05 + 0.01 * rng.standard_normal((len(times), len(NAMES))), 0, 1)
    blink = [NAMES.index('eyeBlink_L'), NAMES.index('eyeBlink_R')]
    period = 60.0 / blinks_per_minute
    closed = (times % period) < 0.2   # 0.2 s blinks
    coefficients[np.ix_(closed, blink)] = 0.6
    mouth_columns = [k for k, n in enumerate(NAMES) if n.startswith(('jaw', 'mouth'))]
    coefficients[:, mouth_columns] += mouth * np.sin(2 * np.pi * 2 * times)[:, None]
    coefficients[:, [NAMES.index('browDown_L'), NAMES.index('browDown_R')]] = brow
    yaw = np.radians(head_speed) * np.abs(((times * 0.5) % 2) - 1) * 2  # triangle wave, |dyaw/dt| = speed
    angles = np.stack([np.zeros_like(times), np.zeros_like(times), yaw], axis=1)
    return times, np.clip(coefficients, 0, 1), angles


def test_features_measure_what_they_name():
    times, coefficients, angles = synthetic_window(blinks_per_minute=18, head_speed=8.0, brow=0.3)
    features = window_features(times, coefficients, angles, NAMES)
    assert features['blink_rate'] == pytest.approx(18, abs=6.1)        # 3 blinks +- one edge blink in 10 s
    assert features['blink_duration'] == pytest.approx(0.2, abs=0.07)
    assert features['head_speed'] == pytest.approx(8.0, rel=0.15)
    assert features['brow_down'] == pytest.approx(0.3, abs=0.01)
    assert features['jawOpen_mean'] > 0 and 'mouthSmile_L_slope' in features
    still = window_features(*synthetic_window(head_speed=0.0, mouth=0.0), NAMES)
    assert still['head_speed'] < 1e-9 and still['mouth_activity'] < features['mouth_activity']
    no_pose = window_features(times, coefficients, np.full_like(angles, np.nan), NAMES)
    assert np.isnan(no_pose['head_speed'])


def test_prior_is_documented_and_raises_with_each_feature():
    prior = default_stress_model()
    assert prior.feature_names == tuple(PRIOR_FEATURES) and (prior.coef > 0).all()
    assert 'references from' in prior.notes
    typical = dict(zip(prior.feature_names, prior.mean))
    assert prior.probability(typical) == pytest.approx(1 / (1 + np.e), abs=1e-6)
    for name, scale in zip(prior.feature_names, prior.scale):
        assert prior.probability({**typical, name: typical[name] + 3 * scale}) > prior.probability(typical)
    assert prior.probability({**typical, 'head_speed': np.nan}) == pytest.approx(prior.probability(typical))


def test_estimator_reports_after_min_fill_then_every_hop():
    estimator = StressEstimator(default_stress_model(), NAMES, window=4.0, hop=1.0, min_fill=0.75)
    times, coefficients, angles = synthetic_window(seconds=8.0)
    reports = []
    for t, e, a in zip(times, coefficients, angles):
        update = estimator.update(t, [('f1', e, a)])
        reports += [(t, s) for s in update.estimates]
    assert reports[0][0] == pytest.approx(3.0, abs=1.5 / FPS)
    assert np.allclose(np.diff([t for t, _ in reports]), 1.0, atol=1.5 / FPS)
    assert all(s.window_seconds <= 4.0 and s.num_samples <= 4 * FPS + 1 and 0 < s.probability < 1 for _, s in reports)


def test_estimator_rejects_bad_samples_keeps_ids_apart_and_resets_on_time_going_back():
    estimator = StressEstimator(default_stress_model(), NAMES, window=2.0, hop=0.5, min_fill=0.5, max_rate=20)
    good = np.full(len(NAMES), 0.1)
    update = estimator.update(0.0, [('f1', good, None), ('f2', good[:10], None), ('f3', good * np.nan, None)])
    assert len(update.rejected) == 2 and set(estimator.tracks) == {'f1'}
    for t in np.arange(0.05, 3.0, 0.01):  # 100 Hz: more than max_rate
        estimator.update(t, [('f1', good, None)])
    assert len(estimator.tracks.get('f1').samples) <= 40
    assert estimator.update(3.0, [('f2', good, None)]).estimates == []  # a new id starts from nothing
    assert estimator.update(6.0, [('f2', good, None)]) and 'f1' not in estimator.tracks  # forgotten
    assert estimator.update(1.0, [('f2', good, None)]).reset and len(estimator.tracks.get('f2').samples) == 1
    with pytest.raises(ValueError, match='lack eyeBlink_L, .* which stress model stress-prior-v1 reads'):
        estimator.set_names(NAMES[:5])
    assert estimator.names == tuple(NAMES) and estimator.tracks  # nothing changed


def test_samples_outside_the_coefficient_range_are_refused_and_leave_the_window_as_it_was():
    """Coefficients lie in [0, 1]; one absurd sample must not make every estimate of a window 1.0."""
    times, coefficients, angles = synthetic_window(seconds=6.0)
    clean = StressEstimator(default_stress_model(), NAMES, window=4.0, hop=1.0)
    fuzzed = StressEstimator(default_stress_model(), NAMES, window=4.0, hop=1.0)
    expected, got, rejected = [], [], []
    for frame, (t, e, a) in enumerate(zip(times, coefficients, angles)):
        expected += clean.update(t, [('f1', e, a)]).estimates
        if frame in (20, 40):
            absurd = e.copy()
            absurd[NAMES.index('jawOpen' if frame == 20 else 'cheekPuff_L')] = 1e30 if frame == 20 else -3.0
            rejected += fuzzed.update(t - 0.5 / FPS, [('f1', absurd, a)]).rejected
        got += fuzzed.update(t, [('f1', e, a)]).estimates
    assert len(got) >= 3 and got == expected
    assert [problem.split(';')[0] for problem in rejected] == ['f1: coefficients outside [-0.5, 1.5] (jawOpen = 1e+30)',
                                                              'f1: coefficients outside [-0.5, 1.5] (cheekPuff_L = -3)']
    assert all(problem.endswith('expression coefficients lie in [0, 1]') for problem in rejected)


def test_windows_follow_coefficients_by_name_whatever_their_order():
    """A regressor that gives the same names in another order continues every window, unchanged."""
    times, coefficients, angles = synthetic_window(seconds=6.0)
    steady = StressEstimator(default_stress_model(), NAMES, window=4.0, hop=1.0)
    switched = StressEstimator(default_stress_model(), NAMES, window=4.0, hop=1.0)
    order = np.random.default_rng(1).permutation(len(NAMES))
    expected, got = [], []
    for t, e, a in zip(times, coefficients, angles):
        expected += steady.update(t, [('f1', e, a)]).estimates
        if t >= 3.0 and switched.set_names([NAMES[k] for k in order]):
            assert t < 3.0 + 1.5 / FPS  # once
        got += switched.update(t, [('f1', e[order] if t >= 3.0 else e, a)]).estimates
    assert len(got) == len(expected) >= 3 and got == expected
    with pytest.raises(ValueError, match=r'lack jawOpen, which .* \(unknown names: JawOpen\)'):
        switched.set_names(['JawOpen' if name == 'jawOpen' else name for name in NAMES])


def test_unreadable_stress_model_is_refused(tmp_path):
    (tmp_path / 'bad.json').write_text('{"model_id": 1}')
    with pytest.raises(ModelFileError, match='train_stress'):
        StressModel.load(tmp_path / 'bad.json')


def write_synthetic_recordings(path, subjects=6, seconds=40.0):
    """Each subject: one calm and one stressed recording, with subject-specific baselines."""
    rng = np.random.default_rng(1)
    with open(path, 'w', newline='') as file:
        writer = csv.writer(file)
        writer.writerow(['subject', 'recording', 'time', 'label', 'roll', 'pitch', 'yaw', *NAMES])
        for subject in range(subjects):
            base_blink, base_speed = rng.uniform(10, 16), rng.uniform(2, 5)
            for stressed in (False, True):
                times, coefficients, angles = synthetic_window(
                    seconds, blinks_per_minute=base_blink * (2.2 if stressed else 1.0),
                    head_speed=base_speed * (2.5 if stressed else 1.0), mouth=0.05 if stressed else 0.02,
                    brow=0.2 if stressed else 0.05, seed=subject * 2 + stressed)
                for t, e, a in zip(times, coefficients, angles):
                    writer.writerow([f's{subject}', f's{subject}-{int(stressed)}', f'{t:.4f}',
                                     'stressed' if stressed else 'not_stressed', *a, *e])


def test_train_stress_end_to_end_on_a_synthetic_labelled_set(tmp_path):
    frames = tmp_path / 'frames.csv'
    write_synthetic_recordings(frames)
    out = tmp_path / 'model.json'
    scores = train_stress.main([str(frames), '--out', str(out), '--features', 'prior', '--folds', '3'])
    assert scores['accuracy'] >= 0.9 and scores['auc'] >= 0.95
    assert scores['prior_auc'] >= 0.9   # the prior's directions agree with the synthetic truth
    model = default_stress_model(out)
    estimator = StressEstimator(model, NAMES, window=10.0)
    for seed, stressed in ((50, False), (51, True)):
        estimator.reset()
        times, coefficients, angles = synthetic_window(
            12.0, blinks_per_minute=30 if stressed else 13, head_speed=9 if stressed else 3,
            mouth=0.05 if stressed else 0.02, brow=0.2 if stressed else 0.05, seed=seed)
        last = [s for t, e, a in zip(times, coefficients, angles) for s in estimator.update(t, [('f', e, a)]).estimates]
        assert (last[-1].probability >= 0.5) == stressed


def test_train_stress_explains_a_bad_csv(tmp_path):
    frames = tmp_path / 'frames.csv'
    frames.write_text('subject,time,label,jawOpen\ns1,0.0,maybe,0.1\n')
    with pytest.raises(ValueError, match="label 'maybe'"):
        train_stress.main([str(frames), '--out', str(tmp_path / 'm.json')])
