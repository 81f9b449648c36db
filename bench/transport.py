"""The graph as a robot runs it, for the graph benchmark and the soak: the installed runner, the
launch file and video_camera as their own processes (with a robot's environment: no thread-pool
variables), and a probe node that watches what comes out."""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from fer3d_ros.msg import EmotionArray  # noqa: E402
from fer3d_ros.nodes.qos import RELIABLE_QOS  # noqa: E402
from fer3d_ros.tools.sample_data import pyfeat_media  # noqa: E402

EXECUTABLES = Path(sys.prefix) / 'lib' / 'fer3d_ros'
TESTS = Path(__file__).resolve().parents[1] / 'test'
CLIP = pyfeat_media('WolfgangLanger_Pexels.mp4')
# face_node's frame account on /diagnostics (fer3d_ros/nodes/image_input.py)
ACCOUNT = ('frames_received', 'frames_skipped_busy', 'frames_lost_in_transport', 'frames_before_first')


@functools.cache
def _launch_environment(folder: Path) -> dict:
    return _test_processes().launch_environment(folder)


def _test_processes():
    """test/processes.py: a robot's environment, and the launch system where no ROS 2 install has one."""
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))
    import processes
    return processes


def _popen(command: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """`command` in its own process with a robot's environment, output to `log`, stopped by SIGINT as
    from a terminal (a shell that started this script in the background made it ignore SIGINT)."""
    with open(log, 'a') as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                env=_test_processes().robot_environment(env),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def start(executable: str, log: Path, *ros_arguments: str, env: dict | None = None) -> subprocess.Popen:
    """An installed executable (`ros2 run fer3d_ros <executable> --ros-args ...`)."""
    return _popen([str(EXECUTABLES / executable), '--ros-args', *ros_arguments], log, env)


def dds_defaults_environment(folder: Path) -> dict:
    """A process on Fast DDS's defaults (a camera driver given no profile): test/processes.py."""
    return _test_processes().dds_defaults_environment(folder)


def start_launch(log: Path, folder: Path, *arguments: str, hri_msgs: bool = False) -> subprocess.Popen:
    """`ros2 launch fer3d_ros fer3d.launch.py <arguments>` (the launch system, and with `hri_msgs`
    REP-155's messages, are built into `folder` if this machine has none)."""
    processes = _test_processes()
    launch_file = Path(sys.prefix) / 'share' / 'fer3d_ros' / 'launch' / 'fer3d.launch.py'
    environments = [_launch_environment(folder)]
    if hri_msgs:
        (folder / 'hri_msgs').mkdir(exist_ok=True)
        environments.append(processes.hri_environment(folder / 'hri_msgs'))
    return _popen([sys.executable, '-c', processes.RUN_LAUNCH_FILE, str(launch_file), *arguments], log,
                  processes.merged(*environments))


def start_camera(log: Path, width: int, height: int, rate: float, frames: int, *, copies: int = 1,
                 closed_loop: bool = False, env: dict | None = None, reliability: str = 'reliable',
                 depth: int = 5) -> subprocess.Popen:
    """video_camera: the clip as a camera (`copies` faces; reliable, depth 5 unless said), `frames`
    frames once a subscriber is connected; with `closed_loop`, each frame once the last one's emotions
    came back."""
    return start('video_camera', log, '-p', f'video:={CLIP}', '-p', f'width:={width}', '-p', f'height:={height}',
                 '-p', f'rate:={rate}', '-p', f'frames:={frames}', '-p', f'reliability:={reliability}',
                 '-p', f'depth:={depth}', '-p', f'copies:={copies}',
                 '-p', f'closed_loop:={str(closed_loop).lower()}', env=env)


def stop(process: subprocess.Popen, timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            print(f'{process.args[0]} did not stop within {timeout:g} s of SIGINT: killed')
    return process.returncode


class Probe:
    """A node in its own context: end-to-end latency of each EmotionArray (arrival minus the image's
    stamp) and the latest diagnostics of each node."""

    def __init__(self, name: str = 'fer3d_probe') -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.latencies: list[float] = []
        self.stamps: list[float] = []  # the images' stamps (seconds)
        self.arrivals: list[float] = []  # monotonic seconds
        self.faces: list[int] = []  # emotions per array
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.node.create_subscription(EmotionArray, 'emotions', self._on_emotions, RELIABLE_QOS)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 100)

    def _on_emotions(self, msg: EmotionArray) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.latencies.append(self.node.get_clock().now().nanoseconds * 1e-9 - stamp)
        self.stamps.append(stamp)
        self.arrivals.append(time.monotonic())
        self.faces.append(len(msg.emotions))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def face_account(self) -> dict[str, int]:
        """face_node's frame account, whichever namespace it runs in."""
        figures = next((values for name, values in self.diagnostics.items() if name.endswith('/face_node')), {})
        return {key: int(figures[key]) for key in ACCOUNT if figures.get(key, '').isdigit()}

    def spin_until(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def wait_for_graph(self, process: subprocess.Popen, timeout: float = 60.0) -> bool:
        """Until face_node reports on /diagnostics and emotions can reach us (False if `process` died)."""
        return self.spin_until(lambda: process.poll() is not None or (
            self.face_account() and self.node.count_publishers('emotions') > 0), timeout) and process.poll() is None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
