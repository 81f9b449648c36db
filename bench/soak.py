"""Soak run (`make soak`): the all-in-one runner fed a real clip at 30 frames/s for 10 minutes.

The installed fer3d_pipeline runs as its own process; this script publishes the clip's frames
(looped) on `image` at a fixed rate, plus one malformed input every 20 s (huge image, wrong encoding,
truncated data, empty image, NaN pixels, NaN coefficients), and samples the runner's resident
memory (VmRSS) every 10 s. It prints RSS over time, its growth over the second half, how many
frames were answered, and the runner's log line for each malformed input.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from itertools import cycle
from pathlib import Path

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from benchlib import clip_frames  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from fer3d_ros.core.expression import MODEL_FILE, load_card  # noqa: E402
from fer3d_ros.core.image_conversion import numpy_to_image  # noqa: E402
from fer3d_ros.core.models import find_model  # noqa: E402
from fer3d_ros.msg import EmotionArray, Expression, ExpressionArray  # noqa: E402
from fer3d_ros.nodes.common import RELIABLE_QOS  # noqa: E402

RUNNER = Path(sys.prefix) / 'lib' / 'fer3d_ros' / 'fer3d_pipeline'


def malformed_inputs() -> list[tuple[str, str, object]]:
    """(what, topic, message) for each kind of bad input the graph must survive."""
    def image(pixels, encoding, **fields):
        msg = numpy_to_image(pixels, 'bgr8' if encoding in ('yuv422', 'bgr8') else encoding)
        msg.encoding = encoding
        for name, value in fields.items():
            setattr(msg, name, value)
        return msg
    frame = np.zeros((480, 640, 3), np.uint8)
    truncated = image(frame, 'bgr8')
    truncated.data = truncated.data[:1000]
    names = list(load_card(find_model(MODEL_FILE)).expression_names)
    nan_coefficients = ExpressionArray(names=names, model_id='soak', expressions=[
        Expression(id='f9999', coefficients=np.full(55, np.nan, np.float32))])
    return [('huge image (4000x3000)', 'image', image(np.zeros((3000, 4000, 3), np.uint8), 'bgr8')),
            ('wrong encoding (yuv422)', 'image', image(frame, 'yuv422')),
            ('truncated data', 'image', truncated),
            ('empty image (0x0)', 'image', Image(encoding='bgr8')),
            ('NaN pixels (32FC1)', 'image', image(np.full((480, 640), np.nan, np.float32), '32FC1')),
            ('NaN coefficients', 'expressions', nan_coefficients)]


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f'no VmRSS for process {pid}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--fps', type=float, default=30.0)
    options = parser.parse_args()
    log = tempfile.NamedTemporaryFile('w+', suffix='.log', prefix='fer3d_soak_', delete=False)
    # A shell starting this script in the background ignores SIGINT in it (and so in the runner):
    # give the runner the default disposition, as a terminal or ros2 launch would.
    runner = subprocess.Popen([sys.executable, str(RUNNER), '--ros-args', '-p', 'expression_node:backend:=onnxruntime'],
                              stdout=log, stderr=subprocess.STDOUT,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('soak_camera', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    images = node.create_publisher(Image, 'image', qos_profile_sensor_data)
    expressions = node.create_publisher(ExpressionArray, 'expressions', RELIABLE_QOS)
    answered = []
    node.create_subscription(EmotionArray, 'emotions', lambda msg: answered.append(len(msg.emotions)), RELIABLE_QOS)
    frames = cycle([numpy_to_image(frame, 'bgr8') for frame in clip_frames(300)])
    bad_inputs = malformed_inputs()
    deadline = time.monotonic() + 30
    while images.get_subscription_count() == 0 and time.monotonic() < deadline and runner.poll() is None:
        executor.spin_once(timeout_sec=0.1)
    if images.get_subscription_count() == 0:
        runner.kill()
        print(f'the runner did not start; its log: {log.name}\n{Path(log.name).read_text()[-2000:]}')
        return 1

    print(f'soak: fer3d_pipeline (pid {runner.pid}) fed at {options.fps:.0f} frames/s for {options.minutes:g} min; '
          f'log {log.name}')
    print(f'{"t (s)":>6s} {"RSS (MB)":>9s} {"answered/s":>10s} {"faces/answer":>12s}  event')
    start = time.monotonic()
    samples, sent, next_frame, next_sample, next_bad, last_count = [], 0, start, start, start + 20, 0
    injected = []
    while (now := time.monotonic()) < start + options.minutes * 60:
        if now >= next_frame:
            msg = next(frames)
            msg.header.frame_id = 'camera'
            msg.header.stamp = node.get_clock().now().to_msg()
            images.publish(msg)
            sent += 1
            next_frame += 1 / options.fps
        event = ''
        if now >= next_bad:
            what, topic, msg = bad_inputs[len(injected) % len(bad_inputs)]
            (images if topic == 'image' else expressions).publish(msg)
            injected.append(what)
            event, next_bad = f'sent {what}', next_bad + 20
            next_frame = now + 0.5  # let it be the newest image: sensor-data QoS keeps only the last few
        if now >= next_sample or event:
            samples.append((now - start, rss_mb(runner.pid)))
            window = answered[last_count:]
            rate = len(window) / 10 if now >= next_sample else float('nan')
            print(f'{now - start:6.0f} {samples[-1][1]:9.1f} {rate:10.1f} '
                  f'{np.mean(window) if window else 0:12.2f}  {event}', flush=True)
            if now >= next_sample:
                last_count, next_sample = len(answered), next_sample + 10
        executor.spin_once(timeout_sec=max(0.0, min(next_frame, next_sample) - time.monotonic()))
    alive = runner.poll() is None
    runner.send_signal(signal.SIGINT)
    try:
        runner.wait(timeout=30)
    except subprocess.TimeoutExpired:
        runner.kill()
        runner.wait()
        print('the runner did not stop within 30 s of SIGINT: killed')
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)

    times, rss = np.array(samples).T
    second_half = times >= times[-1] / 2
    slope = np.polyfit(times[second_half], rss[second_half], 1)[0] * 60
    text = Path(log.name).read_text()
    complaints = [line for line in text.splitlines() if 'skipped' in line or 'failed on a message' in line]
    print(f'frames sent {sent}, answered {len(answered)} ({len(answered) / (times[-1] or 1):.1f}/s); '
          f'runner alive at the end: {alive}, exit code {runner.returncode}')
    print(f'RSS: start {rss[0]:.1f} MB, max {rss.max():.1f} MB, end {rss[-1]:.1f} MB; growth over the second half '
          f'{slope:+.2f} MB/min ({"no growth" if abs(slope) < 0.5 else "GROWING"})')
    print(f'malformed inputs sent: {len(injected)}; runner log lines about bad input: {len(complaints)}')
    for line in dict.fromkeys(line.split(']: ', 1)[-1][:150] for line in complaints):
        print(f'  {line}')
    return 0 if alive and abs(slope) < 0.5 else 1


if __name__ == '__main__':
    raise SystemExit(main())
