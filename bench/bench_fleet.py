"""A fleet's recordings on a cluster: `fer3d-bag fleet` over 20 bags with 1 and with 2 local Dask
workers (one process each, one thread each: each limits its own pools), answered frames/s and the
speed-up, and whether both runs give every bag the same results.

The bags are recorded here from real clips (../shared/data/videos, 60 frames each, cycling through
the clips, with labels) into a temporary folder; nothing in the environment sizes thread pools.
Goal (issue 27): 2 workers >= 1.7x as fast as 1.
Usage: bench/bench_fleet.py [--bags 20] [--frames 60]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from fer3d_ros.tools.bag import main as fer3d_bag
from fer3d_ros.tools.fleet import RESULT_KEYS, run_fleet

CLIPS = sorted((Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'videos').glob('*.mp4'))
GOAL = 1.7


def record_bags(folder: Path, count: int, frames: int) -> None:
    labels = folder / 'labels.csv'
    labels.write_text('frame,label\n0,neutral\n')
    for index in range(count):
        clip = CLIPS[index % len(CLIPS)]
        assert fer3d_bag(['fer3d-bag', 'record', str(clip), str(folder / 'bags' / f'{index:02d}_{clip.stem}'),
                          '--labels', str(labels), '--max-frames', str(frames), '--start-time', '1000']) == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bags', type=int, default=20)
    parser.add_argument('--frames', type=int, default=60)
    args = parser.parse_args()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    folder = Path(tempfile.mkdtemp(prefix='fer3d_bench_fleet_'))
    record_bags(folder, args.bags, args.frames)
    results, seconds = {}, {}
    for workers in (1, 2):
        start = time.perf_counter()
        report = run_fleet([folder / 'bags'], folder / f'out_{workers}', workers=workers)
        seconds[workers] = time.perf_counter() - start
        results[workers] = report
        frames = report['total']['frames']
        print(f'{workers} worker(s): {report["total"]["reported"]} bags, {frames} frames in {seconds[workers]:.1f} s '
              f'(cluster start included): {frames / seconds[workers]:.1f} frames/s', flush=True)
    same = all({key: report[key] for key in RESULT_KEYS} == {key: results[2]['bags'][name][key] for key in RESULT_KEYS}
               for name, report in results[1]['bags'].items())
    speedup = seconds[1] / seconds[2]
    print(f'speed-up with 2 workers: {speedup:.2f}x (goal >= {GOAL}: {"met" if speedup >= GOAL else "MISSED"}); '
          f'same per-bag results with 1 and 2 workers: {same}; bags and reports in {folder}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
