"""Photos of varied sizes, closed loop, as a robot's network has it (issue 35, item 1).

face_node and expression_node run as `ros2 run` starts them, in a network namespace of their own
made here (loopback with multicast, so DDS discovery behaves as on a robot: the default discovery
range, not the LOCALHOST that every test sets and that hid the stall). A sender process on Fast DDS's
defaults (a camera driver nobody configured: reliable, depth 10) sends each photo 30 times, the next
frame when the last one's `expressions` came back (4 s at most), and 40 small blank frames between
photos. The photos are real (frames of the project's clips and the annotated images), their longest
side drawn in 800..--max-side px, portrait and landscape alternating, as a replayed set of recordings
or a camera switching resolution gives.
Printed: seconds per photo (median, max, the slowest), frames unanswered within 4 s, the whole run.
--profile FILE gives the nodes another Fast DDS profile than config/fastdds.xml (`git show
1b7bc21:config/fastdds.xml` is the one before issue 36, whose readers took a default camera's frames
through shared memory); `--profile none` leaves them on Fast DDS's defaults. Needs root (ip netns).
Usage: bench/photo_stall.py [--photos 61] [--max-side 1280] [--profile FILE|none]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / 'shared' / 'data'
REPEATS, BLANKS, WAIT = 30, 40, 4.0


def photos(count: int, max_side: int, seed: int = 0) -> list:
    """`count` real pictures, longest side in [min(800, max_side), max_side], portrait/landscape alternating."""
    import cv2
    import numpy as np

    from fer3d_ros.core.video import read_frames
    rng = np.random.default_rng(seed)
    sources = [next(iter(read_frames(clip, max_frames=1))) for clip in sorted((SHARED / 'videos').glob('*.mp4'))]
    sources += [cv2.imread(str(path)) for path in sorted((SHARED / 'landmarks68').rglob('*.jpg'))[:40]]
    result = []
    for index in range(count):
        image = sources[index % len(sources)]
        height, width = image.shape[:2]
        if index % 2:  # portrait: the middle 3:4 of the picture
            keep = min(width, int(height * 3 / 4))
            image = image[:, (width - keep) // 2:(width + keep) // 2]
        side = int(rng.uniform(min(800, max_side), max_side))
        scale = side / max(image.shape[:2])
        result.append(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    return result


def sender(out: Path, count: int, max_side: int) -> None:
    """The closed-loop sender (runs inside the namespace): writes seconds per photo and misses to `out`."""
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from fer3d_ros.core.image_conversion import numpy_to_image
    from fer3d_ros.msg import ExpressionArray
    rclpy.init()
    node = rclpy.create_node('photo_sender')
    publisher = node.create_publisher(Image, 'image', QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    answered: set[tuple[int, int]] = set()
    node.create_subscription(ExpressionArray, 'expressions',
                             lambda msg: answered.add((msg.header.stamp.sec, msg.header.stamp.nanosec)),
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + 60
    while (publisher.get_subscription_count() < 1 or node.count_publishers('expressions') < 1) \
            and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    blank = np.zeros((120, 160, 3), np.uint8)
    per_photo, misses = [], 0

    def send(image) -> bool:
        msg = numpy_to_image(image, 'bgr8')
        msg.header.stamp = node.get_clock().now().to_msg()
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        publisher.publish(msg)
        until = time.monotonic() + WAIT
        while key not in answered and time.monotonic() < until:
            rclpy.spin_once(node, timeout_sec=0.01)
        return key in answered
    start = time.monotonic()
    for photo in photos(count, max_side):
        began = time.monotonic()
        misses += sum(not send(photo) for _ in range(REPEATS))
        per_photo.append(time.monotonic() - began)
        misses += sum(not send(blank) for _ in range(BLANKS))
    out.write_text(json.dumps({'per_photo': per_photo, 'misses': misses, 'seconds': time.monotonic() - start,
                               'frames': count * (REPEATS + BLANKS)}))
    node.destroy_node()
    rclpy.try_shutdown()


def namespace() -> str:
    name = f'fer3d_photos{os.getpid() % 100000}'
    for command in (['netns', 'add', name], ['-n', name, 'link', 'set', 'lo', 'up'],
                    ['-n', name, 'link', 'set', 'lo', 'multicast', 'on'],
                    ['-n', name, 'route', 'add', '224.0.0.0/4', 'dev', 'lo']):
        subprocess.run(['ip', *command], check=True, capture_output=True)
    return name


def run(count: int, max_side: int, profile: str, folder: Path) -> dict:
    sys.path.append(str(HERE.parent / 'test'))
    import processes
    robot = {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET', 'ROS_LOCALHOST_ONLY': '0'}  # a robot's, inside the namespace
    defaults = processes.dds_defaults_environment(folder)
    chosen = {'': {}, 'none': defaults}.get(profile, {'FASTDDS_DEFAULT_PROFILES_FILE': str(Path(profile).resolve())})
    nodes_env = {**robot, **chosen}
    name = namespace()
    started = []
    try:
        for executable, arguments in (('face_node', ()), ('expression_node', ('-p', 'backend:=onnxruntime'))):
            started.append(processes.Process(['ip', 'netns', 'exec', name, str(processes.EXECUTABLES / executable),
                                              '--ros-args', *arguments], folder / f'{executable}.log', nodes_env))
        out = folder / 'sender.json'
        sender_process = processes.Process(['ip', 'netns', 'exec', name, sys.executable, __file__, '--sender', str(out),
                                            '--photos', str(count), '--max-side', str(max_side)],
                                           folder / 'sender.log', {**robot, **defaults})
        started.append(sender_process)
        sender_process.wait(timeout=count * (REPEATS + BLANKS) * WAIT + 120)
        return json.loads(out.read_text()) if out.is_file() else {'error': sender_process.output[-3000:]}
    finally:
        for process in reversed(started):
            process.stop()
        subprocess.run(['ip', 'netns', 'del', name], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--photos', type=int, default=61)
    parser.add_argument('--max-side', type=int, default=1280)
    parser.add_argument('--profile', default='', help="the nodes' Fast DDS profile (default: config/fastdds.xml)")
    parser.add_argument('--sender', type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.sender:
        sender(options.sender, options.photos, options.max_side)
        return 0
    if os.geteuid() != 0:
        print('needs root (ip netns)')
        return 2
    result = run(options.photos, options.max_side, options.profile, Path(tempfile.mkdtemp(prefix='fer3d_photos_')))
    if 'error' in result:
        print(result['error'])
        return 1
    per_photo = sorted(result['per_photo'])
    profile = options.profile or 'config/fastdds.xml'
    print(f'{options.photos} photos up to {options.max_side} px, nodes on {profile}: {result["seconds"]:.0f} s '
          f'for {result["frames"]} frames; per photo median {per_photo[len(per_photo) // 2]:.2f} s, max '
          f'{per_photo[-1]:.2f} s; unanswered within {WAIT:g} s: {result["misses"]}')
    return 0 if result['misses'] == 0 else 1


if __name__ == '__main__':
    raise SystemExit(main())
