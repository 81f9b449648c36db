"""The graph split across two hosts: a robot (camera + face_node) and an edge box (expression_node,
emotion_node), each a network namespace made here with a veth link between them (addresses
10.77.0.1 and .2, torn down afterwards), each started by the launch file with the start_*
arguments. DDS discovery stays on that link: a namespace has no other interface. On one machine
Fast DDS would carry the messages through shared memory and bypass the link, so every process here
gets a UDP-only profile, as two real hosts use. Printed: answered frames/s, latency and the bytes/s
crossing the link, plain and with a Wi-Fi-like link (tc netem: 20 ms delay, 50 Mbit/s) carrying
96 px crops (face_node crop_size:=96, the size the regressor reads).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from processes import EXECUTABLES, INSTALL, RUN_LAUNCH_FILE, Process, launch_environment, merged

from fer3d_ros.tools.sample_data import pyfeat_media

HERE = Path(__file__).resolve().parent
CLIP = pyfeat_media('WolfgangLanger_Pexels.mp4')
FRAMES, RATE = 90, 15.0
UDP_ONLY = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com"><profiles>
  <transport_descriptors><transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type>
  </transport_descriptor></transport_descriptors>
  <participant profile_name="udp_only" is_default_profile="true"><rtps>
    <useBuiltinTransports>false</useBuiltinTransports><userTransports><transport_id>udp</transport_id></userTransports>
  </rtps></participant>
</profiles></dds>
"""


def ip(*arguments: str) -> str:
    return subprocess.run(['ip', *arguments], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope='module')
def hosts():
    """(robot namespace, its link end, edge namespace, its link end), made and removed here."""
    if os.geteuid() != 0:
        pytest.skip('network namespaces need root (ip netns); run as root or in a privileged container')
    tag = str(os.getpid() % 100000)
    robot, edge, robot_link, edge_link = f'fer3d_robot{tag}', f'fer3d_edge{tag}', f'vr{tag}', f've{tag}'
    try:
        ip('netns', 'add', robot)
        ip('netns', 'add', edge)
        ip('link', 'add', robot_link, 'type', 'veth', 'peer', 'name', edge_link)
        for namespace, link, address in ((robot, robot_link, '10.77.0.1/24'), (edge, edge_link, '10.77.0.2/24')):
            ip('link', 'set', link, 'netns', namespace)
            ip('-n', namespace, 'addr', 'add', address, 'dev', link)
            ip('-n', namespace, 'link', 'set', 'lo', 'up')
            ip('-n', namespace, 'link', 'set', link, 'up')
            ip('-n', namespace, 'route', 'add', '224.0.0.0/4', 'dev', link)  # DDS discovery's multicast
        yield robot, robot_link, edge, edge_link
    finally:
        for namespace in (robot, edge):
            subprocess.run(['ip', 'netns', 'del', namespace], capture_output=True)


def link_bytes(namespace: str, link: str) -> int:
    """Bytes this end of the link has sent."""
    (device,) = json.loads(ip('-n', namespace, '-s', '-j', 'link', 'show', 'dev', link))
    return int(device['stats64']['tx']['bytes'])


def in_namespace(namespace: str, command: list[str], log: Path, env: dict) -> Process:
    return Process(['ip', 'netns', 'exec', namespace, *command], log, env)


def launch(namespace: str, env: dict, log: Path, *arguments: str) -> Process:
    launch_file = INSTALL / 'share' / 'fer3d_ros' / 'launch' / 'fer3d.launch.py'
    return in_namespace(namespace, [sys.executable, '-c', RUN_LAUNCH_FILE, str(launch_file), *arguments], log, env)


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def run(hosts, env: dict, folder: Path, name: str, robot_arguments: tuple[str, ...] = ()) -> dict:
    robot, robot_link, edge, edge_link = hosts
    processes, tag = [], ''.join(c if c.isalnum() else '_' for c in name)
    try:
        processes.append(launch(robot, env, folder / f'{tag}_robot.log', 'start_expression:=false',
                                'start_emotion:=false', 'start_stress:=false', *robot_arguments))
        processes.append(launch(edge, env, folder / f'{tag}_edge.log', 'start_face:=false', 'start_stress:=false',
                                'backend:=onnxruntime'))
        out = folder / f'{tag}.json'
        probe = in_namespace(edge, [sys.executable, str(HERE / 'link_probe.py'), str(out)],
                             folder / f'{tag}_probe.log', env)
        processes.append(probe)
        assert wait_for(lambda: processes[0].output.count('ready:') >= 1 and processes[1].output.count('ready:') >= 2
                        and 'ready' in probe.output, 90), [p.output[-2000:] for p in processes]
        time.sleep(5.0)  # discovery across the link
        sent = link_bytes(robot, robot_link), link_bytes(edge, edge_link)
        camera = in_namespace(robot, [str(EXECUTABLES / 'video_camera'), '--ros-args', '-p', f'video:={CLIP}',
                                      '-p', f'rate:={RATE}', '-p', f'frames:={FRAMES}'], folder / f'{tag}_camera.log',
                              env)
        processes.append(camera)
        assert wait_for(lambda: not camera.running(), 60), camera.output
        time.sleep(1.0)
        crossed = link_bytes(robot, robot_link) - sent[0], link_bytes(edge, edge_link) - sent[1]
        out.with_suffix('.stop').touch()
        assert probe.wait(timeout=30) == 0, probe.output
    finally:
        for process in reversed(processes):
            process.stop()
    arrivals = np.array(json.loads(out.read_text())).reshape(-1, 3)
    latencies = (arrivals[:, 1] - arrivals[:, 0]) * 1e3
    span = arrivals[-1, 1] - arrivals[0, 1] if len(arrivals) > 1 else float('nan')
    result = {'answered': len(arrivals), 'rate': (len(arrivals) - 1) / span, 'median_ms': float(np.median(latencies)),
              'p95_ms': float(np.percentile(latencies, 95)), 'robot_to_edge': crossed[0] / (FRAMES / RATE),
              'edge_to_robot': crossed[1] / (FRAMES / RATE), 'faces': float(arrivals[:, 2].mean())}
    print(f"{name}: {result['answered']}/{FRAMES} frames answered across the link, {result['rate']:.1f}/s, latency "
          f"{result['median_ms']:.1f} ms median, {result['p95_ms']:.1f} p95; link {result['robot_to_edge'] / 1e6:.2f} "
          f"MB/s robot -> edge, {result['edge_to_robot'] / 1e6:.3f} MB/s back")
    return result


@pytest.fixture(scope='module')
def environment(hosts, tmp_path_factory):
    folder = tmp_path_factory.mktemp('two_hosts')
    (folder / 'udp_only.xml').write_text(UDP_ONLY)
    return folder, {**merged(launch_environment(folder / 'launch')), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET',
                    'ROS_LOCALHOST_ONLY': '0', 'FASTDDS_DEFAULT_PROFILES_FILE': str(folder / 'udp_only.xml')}


def test_a_graph_split_across_two_hosts_answers_a_15_fps_camera(hosts, environment):
    folder, env = environment
    plain = run(hosts, env, folder, 'plain link')
    assert plain['answered'] >= FRAMES - 2 and plain['faces'] >= 1
    assert plain['robot_to_edge'] > 100_000  # the faces, crops included, cross the link


def shape_link(namespace: str, link: str) -> bool:
    """A Wi-Fi-like link: 20 ms delay and 50 Mbit/s (netem); where the kernel has no netem, 50 Mbit/s
    alone (tbf). True when the delay is there."""
    netem = subprocess.run(['tc', '-n', namespace, 'qdisc', 'replace', 'dev', link, 'root', 'netem', 'delay', '20ms',
                            'rate', '50mbit'], capture_output=True, text=True)
    if netem.returncode == 0:
        return True
    subprocess.run(['tc', '-n', namespace, 'qdisc', 'replace', 'dev', link, 'root', 'tbf', 'rate', '50mbit', 'burst',
                    '32kbit', 'latency', '400ms'], check=True)
    return False


def test_over_a_wifi_like_link_with_96_px_crops_it_still_answers_frame_for_frame(hosts, environment):
    folder, env = environment
    robot, robot_link, edge, edge_link = hosts
    delayed = all([shape_link(robot, robot_link), shape_link(edge, edge_link)])
    if not delayed:
        print('this kernel has no netem (tc qdisc netem): the link is limited to 50 Mbit/s, without the 20 ms delay')
    try:
        small_crops = folder / 'small_crops.yaml'
        small_crops.write_text('/**/face_node:\n  ros__parameters:\n    crop_size: 96\n')
        wifi = run(hosts, env, folder, f'50 Mbit/s{" + 20 ms" if delayed else ""} link, 96 px crops',
                   (f'params_file:={small_crops}',))
    finally:
        for namespace, link in ((robot, robot_link), (edge, edge_link)):
            subprocess.run(['tc', '-n', namespace, 'qdisc', 'del', 'dev', link, 'root'], capture_output=True)
    assert wifi['answered'] >= FRAMES - 2
    assert wifi['median_ms'] >= 20 or not delayed  # the delay is there, and no frame lost
    assert wifi['robot_to_edge'] < 50e6 / 8  # what crosses fits the link
