"""Nodes and launch files as separate processes, the way a robot runs them.

The ROS 2 launch system is not on any registry these machines reach: where `launch`
does not import, it is installed from ../shared/vendor/ros2_launch into a temporary prefix (its
wheels, and composition_interfaces built like our own messages), once per test session.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python

ROOT = Path(__file__).resolve().parents[1]
INSTALL = Path(sys.prefix)
EXECUTABLES = INSTALL / 'lib' / 'fer3d_ros'
VENDOR = ROOT.parent / 'shared' / 'vendor' / 'ros2_launch'
HRI_VENDOR = ROOT.parent / 'shared' / 'vendor' / 'ros4hri'
RUN_LAUNCH_FILE = ('import sys; from ros2launch.api import launch_a_launch_file; '
                   'sys.exit(launch_a_launch_file(launch_file_path=sys.argv[1], launch_file_arguments=sys.argv[2:], '
                   'noninteractive=True))')


# Variables that size the numerical libraries' thread pools. A robot's shell sets none of them, so
# no process a test starts gets them (the nodes must limit their own pools: core/threads.py).
THREAD_VARIABLES = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS', 'BLIS_NUM_THREADS',
                    'VECLIB_MAXIMUM_THREADS', 'NUMEXPR_NUM_THREADS')


def robot_environment(extra: dict | None = None) -> dict:
    """This process's environment as a robot's shell has it: no thread-pool variables."""
    environment = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    return {**environment, **(extra or {})}


class Process:
    """A child process whose output goes to a file (a full pipe would block it), stopped by SIGINT.
    It runs with a robot's environment (no thread-pool variables)."""

    def __init__(self, command: list[str], log: Path, env: dict | None = None, new_session: bool = False) -> None:
        self.log = log
        with open(log, 'w') as output:  # new_session: its own process group, as a terminal gives a command
            self.popen = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True,
                                          env=robot_environment(env), start_new_session=new_session)

    @property
    def output(self) -> str:
        return self.log.read_text(errors='replace')

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (Ctrl-C), as a user stops ros2 launch; SIGKILL if it does not end in `timeout` s."""
        if self.running():
            self.popen.send_signal(signal.SIGINT)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                pytest.fail(f'{self.popen.args[0]} did not stop within {timeout} s of SIGINT:\n{self.output}')
        return self.popen.returncode


def start_node(executable: str, log: Path, *ros_arguments: str, env: dict | None = None) -> Process:
    """An installed executable (lib/fer3d_ros/<executable>) run as `ros2 run` would."""
    return Process([str(EXECUTABLES / executable), '--ros-args', *ros_arguments], log, env)


def dds_defaults_environment(folder: Path) -> dict:
    """The environment of a process whose DDS participant keeps Fast DDS's defaults (a camera driver
    given no profile): a profile file that sets nothing, instead of fer3d_ros's."""
    empty = folder / 'fastdds_defaults.xml'
    empty.write_text('<?xml version="1.0" encoding="UTF-8" ?>\n<dds xmlns="http://www.eprosima.com"><profiles>'
                     '<participant profile_name="unused"/></profiles></dds>\n')  # no default profile
    return {'FASTDDS_DEFAULT_PROFILES_FILE': str(empty)}


def launch_environment(folder: Path) -> dict:
    """Environment variables under which `import launch, launch_ros` works; builds it in `folder` if needed."""
    try:
        import launch  # noqa: F401 - a ROS 2 install has its own
        import launch_ros  # noqa: F401
        return {}
    except ImportError:
        pass
    if not VENDOR.is_dir():
        pytest.skip(f'the ROS 2 launch system is not installed and {VENDOR} is missing (source a ROS 2 install)')
    site = folder / 'site'
    result = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps', '--target', str(site),
                             *map(str, sorted((VENDOR / 'wheels').glob('*.whl')))], capture_output=True, text=True)
    assert result.returncode == 0, f'pip install of the launch wheels failed:\n{result.stdout}{result.stderr}'
    return merged(interfaces_environment(VENDOR / 'src' / 'composition_interfaces', folder),
                  {'PYTHONPATH': str(site), 'AMENT_PREFIX_PATH': str(site)})


def hri_environment(folder: Path) -> dict:
    """Environment variables under which `import hri_msgs` works (REP-155's messages); builds
    ../shared/vendor/ros4hri's source in `folder` if it does not import."""
    try:
        import hri_msgs  # noqa: F401 - a ROS 2 install with ros-<distro>-hri-msgs
        return {}
    except ImportError:
        pass
    source = HRI_VENDOR / 'src' / 'hri_msgs'
    if not source.is_dir():
        pytest.skip(f'hri_msgs is not installed and {source} is missing (apt install ros-$ROS_DISTRO-hri-msgs)')
    return interfaces_environment(source, folder)


def interfaces_environment(source: Path, folder: Path) -> dict:
    """A ROS 2 interface package built from `source` (rosidl + CMake, as our own messages) into
    folder/prefix, and the environment under which it imports."""
    prefix, build = folder / 'prefix', folder / 'build'
    prefix_env = {'PATH': f'{INSTALL / "bin"}:{os.environ["PATH"]}', 'AMENT_PREFIX_PATH': str(INSTALL),
                  'CMAKE_PREFIX_PATH': str(INSTALL)}
    steps = [
        ['cmake', '-S', str(source), '-B', str(build), '-Wno-dev',
         f'-DCMAKE_INSTALL_PREFIX={prefix}', f'-DPython3_EXECUTABLE={sys.executable}', '-DBUILD_TESTING=OFF',
         f'-DCMAKE_PROJECT_INCLUDE={ROOT / "cmake" / "drop_missing_include_dirs.cmake"}'],
        ['cmake', '--build', str(build), '-j', '2'],
        ['cmake', '--install', str(build)],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, env={**os.environ, **prefix_env})
        assert result.returncode == 0, f'{" ".join(step)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}'
    python_version = f'python{sys.version_info.major}.{sys.version_info.minor}'
    return {'PYTHONPATH': str(prefix / 'lib' / python_version / 'site-packages'),
            'LD_LIBRARY_PATH': str(prefix / 'lib'), 'AMENT_PREFIX_PATH': str(prefix)}


# Search paths that environments from here add to; merged() joins them with this process's.
PATHS = ('PYTHONPATH', 'LD_LIBRARY_PATH', 'AMENT_PREFIX_PATH')


def merged(*environments: dict) -> dict:
    """Several environments from here in one: their search paths joined, and this process's after
    them (the installed package's prefix first in AMENT_PREFIX_PATH). No empty entry: it would put
    the current directory (a source checkout) before the installed package."""
    if not any(environments):
        return {}
    joined = {}
    for name in PATHS:
        parts = [environment.get(name, '') for environment in environments]
        parts = [str(INSTALL), *parts] if name == 'AMENT_PREFIX_PATH' else [*parts, os.environ.get(name, '')]
        joined[name] = os.pathsep.join(filter(None, parts))
    return joined


def start_launch_file(environment: dict, log: Path, launch_file: str, *arguments: str,
                      new_session: bool = False) -> Process:
    """`ros2 launch fer3d_ros <launch_file> <arguments>` through the code path behind it."""
    path = INSTALL / 'share' / 'fer3d_ros' / 'launch' / launch_file
    return Process([sys.executable, '-c', RUN_LAUNCH_FILE, str(path), *arguments], log, environment, new_session)


def node_parameters(ros, client_node, node_name: str, names: list[str], timeout: float = 10.0) -> dict:
    """The values a running node holds (rcl_interfaces/GetParameters on <node>/get_parameters)."""
    client = client_node.create_client(GetParameters, f'{node_name}/get_parameters')
    assert ros.spin_until(client.service_is_ready, timeout), f'{node_name} offers no parameter service'
    future = client.call_async(GetParameters.Request(names=names))
    assert ros.spin_until(future.done, timeout), f'{node_name} did not answer get_parameters'
    return {name: parameter_value_to_python(value) for name, value in zip(names, future.result().values)}


def running_nodes(node) -> set[str]:
    """Fully qualified names of the nodes in the graph, as `node` sees it."""
    return {f'{namespace.rstrip("/")}/{name}' for name, namespace in node.get_node_names_and_namespaces()}


def wait_for_nodes(ros, watcher, names: set[str], process: Process, timeout: float = 60.0) -> None:
    """Until every fully qualified node name in `names` is in the graph; fails early if `process` ends."""
    ros.spin_until(lambda: not process.running() or names <= running_nodes(watcher), timeout)
    assert process.running() and names <= running_nodes(watcher), \
        f'nodes {sorted(names - running_nodes(watcher))} did not start:\n{process.output[-5000:]}'
