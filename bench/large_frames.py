"""Large camera frames through DDS with no fer3d_ros code: where do they go?

A camera process (plain rclpy, Fast DDS's defaults: 512 KiB shared-memory segments) publishes
random bgr8 frames at 30 frames/s; a subscriber process (plain rclpy, doing nothing) counts what
arrives. What the subscriber's participant is given is the question:
  --reader defaults     Fast DDS's defaults (frames through the camera's shared-memory segments)
  --reader fer3d        config/fastdds.xml (readers on UDP, 16 MiB buffers; what fer3d_ros runs)
  --reader udp:BYTES    readers on UDP with that receive buffer (212992: a stock Linux kernel's cap)
Printed: frames received per 10 s, gaps in the sequence numbers, latency median and p95 (arrival
minus stamp). With --closed-loop N the camera sends each of N frames once the last one was
acknowledged (4 s at most) and prints the time per frame for each 300. `--pcap FILE` reads a
capture of the loopback interface (tshark -i lo -s 160 -f udp -w FILE -F pcap; readers on UDP) and
prints the RTPS traffic per 10 s: samples begun, fragments sent and sent again, heartbeats,
acknowledgements and fragment NACKs.
Usage: bench/large_frames.py [--size 1280x720] [--seconds 60] [--reader defaults] [--reader-depth 2]
       [--camera-depth 10] [--best-effort] [--closed-loop 1500]   |   bench/large_frames.py --pcap FILE
"""
from __future__ import annotations

import argparse
import array
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')
PROFILE = Path(__file__).resolve().parents[1] / 'config' / 'fastdds.xml'
EMPTY = '<participant profile_name="unused"/>'  # no default profile: Fast DDS's defaults
UDP_READERS = ('<transport_descriptors><transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type>'
               '<receiveBufferSize>{bytes}</receiveBufferSize></transport_descriptor></transport_descriptors>'
               '<participant profile_name="p" is_default_profile="true"><rtps><defaultUnicastLocatorList><locator>'
               '<udpv4/></locator></defaultUnicastLocatorList><useBuiltinTransports>false</useBuiltinTransports>'
               '<userTransports><transport_id>udp</transport_id></userTransports></rtps></participant>')
RATE = 30.0


def profile_file(reader: str, folder: Path) -> str:
    if reader == 'fer3d':
        return str(PROFILE)
    body = EMPTY if reader == 'defaults' else UDP_READERS.format(bytes=int(reader.split(':')[1]))
    path = folder / f'{reader.replace(":", "_")}.xml'
    path.write_text(f'<?xml version="1.0"?><dds xmlns="http://www.eprosima.com"><profiles>{body}</profiles></dds>')
    return str(path)


def qos(depth: int, best_effort: bool):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT if best_effort
                      else ReliabilityPolicy.RELIABLE)


def camera(args) -> None:
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import UInt32
    width, height = (int(v) for v in args.size.split('x'))
    rclpy.init()
    node = rclpy.create_node('large_frames_camera')
    publisher = node.create_publisher(Image, 'image', qos(args.camera_depth, args.best_effort))
    acknowledged = [0]
    node.create_subscription(UInt32, 'ack', lambda m: acknowledged.__setitem__(0, m.data), 10)
    frames = [array.array('B', np.random.default_rng(i).integers(0, 255, (height, width, 3), np.uint8).tobytes())
              for i in range(4)]
    while publisher.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.1)
    time.sleep(1.0)  # discovery settles both ways
    count = args.closed_loop or int(args.seconds * RATE)
    start, times = time.monotonic(), []
    for n in range(1, count + 1):
        if not args.closed_loop:
            time.sleep(max(0.0, start + (n - 1) / RATE - time.monotonic()))
        msg = Image(width=width, height=height, encoding='bgr8', step=3 * width)
        msg.header.stamp, msg.header.frame_id, msg.data = node.get_clock().now().to_msg(), str(n), frames[n % 4]
        sent = time.monotonic()
        publisher.publish(msg)
        if args.closed_loop:
            while acknowledged[0] < n and time.monotonic() - sent < 4.0:
                rclpy.spin_once(node, timeout_sec=0.01)
            times.append(time.monotonic() - sent)
            if n % 300 == 0:
                block = np.array(times[-300:]) * 1e3
                print(f'frames {n - 299}-{n}: per frame median {np.median(block):.0f} ms, p95 '
                      f'{np.percentile(block, 95):.0f} ms, max {block.max():.0f} ms; {block.sum() / 1e3:.1f} s in all',
                      flush=True)
    time.sleep(2.0)


def reader(args) -> None:
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import UInt32
    rclpy.init()
    node = rclpy.create_node('large_frames_reader')
    acknowledge = node.create_publisher(UInt32, 'ack', 10)
    arrivals, latencies, gaps, last = [], [], [0], [None]

    def on_image(msg, info) -> None:
        arrivals.append(time.monotonic())
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        latencies.append(node.get_clock().now().nanoseconds * 1e-9 - stamp)
        sequence = info['publication_sequence_number']
        gaps[0] += sequence - last[0] - 1 if last[0] is not None and sequence > last[0] + 1 else 0
        last[0] = sequence
        acknowledge.publish(UInt32(data=int(msg.header.frame_id)))
    node.create_subscription(Image, 'image', on_image, qos(args.reader_depth, args.best_effort))
    deadline = time.monotonic() + (args.closed_loop * 4.0 or args.seconds) + 15
    while time.monotonic() < deadline and (not arrivals or time.monotonic() - arrivals[-1] < 5.0):
        rclpy.spin_once(node, timeout_sec=0.1)
    if args.closed_loop or not arrivals:
        print(f'received {len(arrivals)}')
        return
    offsets = np.array(arrivals) - arrivals[0]
    windows = [int(((offsets >= k) & (offsets < k + 10)).sum()) for k in range(0, int(args.seconds), 10)]
    latency = np.array(latencies) * 1e3
    print(f'received per 10 s {windows}, {len(arrivals)} in all, {gaps[0]} never arrived; latency median '
          f'{np.median(latency):.1f} ms, p95 {np.percentile(latency, 95):.1f} ms')


def run(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix='fer3d_large_frames_'))
    roles = ['--size', args.size, '--seconds', str(args.seconds), '--reader-depth', str(args.reader_depth),
             '--camera-depth', str(args.camera_depth), '--closed-loop', str(args.closed_loop),
             *(['--best-effort'] if args.best_effort else [])]
    environment = {**os.environ, 'FASTDDS_DEFAULT_PROFILES_FILE': profile_file(args.reader, folder)}
    subscriber = subprocess.Popen([sys.executable, __file__, '--role', 'reader', *roles], env=environment)
    time.sleep(2.0)
    environment['FASTDDS_DEFAULT_PROFILES_FILE'] = profile_file('defaults', folder)
    print(f'{args.size}, camera {"best effort" if args.best_effort else "reliable"} depth {args.camera_depth} on '
          f"Fast DDS's defaults; reader {args.reader}, depth {args.reader_depth}", flush=True)
    subprocess.run([sys.executable, __file__, '--role', 'camera', *roles], env=environment, check=True)
    subscriber.wait(timeout=60)


def rtps_submessages(path: Path):
    """(time, submessage id, flags, body) of each RTPS submessage in a classic pcap of loopback UDP."""
    with open(path, 'rb') as capture:
        header = capture.read(24)
        order = '<' if struct.unpack('<I', header[:4])[0] in (0xa1b2c3d4, 0xa1b23c4d) else '>'
        nanoseconds = struct.unpack(order + 'I', header[:4])[0] in (0xa1b23c4d, 0x4d3cb2a1)
        link = struct.unpack(order + 'I', header[20:24])[0]
        while len(record := capture.read(16)) == 16:
            seconds, fraction, length, _ = struct.unpack(order + 'IIII', record)
            packet = capture.read(length)
            ip = packet[{1: 14, 113: 16}.get(link, 0):]
            rtps = ip[(ip[0] & 15) * 4 + 8:]
            if rtps[:4] != b'RTPS':
                continue
            at, i = seconds + fraction * (1e-9 if nanoseconds else 1e-6), 20
            while i + 4 <= len(rtps):
                kind, flags = rtps[i], rtps[i + 1]
                size = struct.unpack('<H' if flags & 1 else '>H', rtps[i + 2:i + 4])[0]
                yield at, kind, flags, rtps[i + 4:i + 4 + size] if size else rtps[i + 4:]
                if not size:
                    break
                i += 4 + size


def pcap_report(path: Path) -> None:
    """The user data writer's traffic per 10 s (entity kinds 0x02/0x03: application writers)."""
    data_frag, heartbeat, acknack, nack_frag, gap = 0x16, 0x07, 0x06, 0x12, 0x08
    names = {data_frag: 'fragments', heartbeat: 'heartbeats', acknack: 'acknacks', nack_frag: 'fragment NACKs',
             gap: 'gaps'}
    windows, seen, first = defaultdict(Counter), set(), None
    for at, kind, flags, body in rtps_submessages(path):
        writer = body[8:12] if kind == data_frag else body[4:8]
        if kind not in names or len(writer) < 4 or writer[3] not in (0x02, 0x03):
            continue
        first = at if first is None else first
        window = windows[int((at - first) // 10)]
        window[names[kind]] += 1
        if kind == data_frag and len(body) >= 24:
            order = '<' if flags & 1 else '>'
            high, low, fragment = struct.unpack(order + 'iII', body[12:24])
            key = ((high << 32) | low, fragment)
            window['fragments sent again'] += key in seen
            window['samples begun'] += fragment == 1 and key not in seen
            seen.add(key)
    columns = ['samples begun', 'fragments', 'fragments sent again', 'heartbeats', 'acknacks', 'fragment NACKs', 'gaps']
    print('from s  ' + '  '.join(f'{c:>20s}' for c in columns))
    for index in sorted(windows):
        print(f'{index * 10:6d}  ' + '  '.join(f'{windows[index][c]:20d}' for c in columns))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', default='1280x720')
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--reader', default='defaults', help='defaults, fer3d or udp:BYTES')
    parser.add_argument('--reader-depth', type=int, default=2)
    parser.add_argument('--camera-depth', type=int, default=10)
    parser.add_argument('--best-effort', action='store_true')
    parser.add_argument('--closed-loop', type=int, default=0, metavar='N')
    parser.add_argument('--pcap', type=Path)
    parser.add_argument('--role', choices=('camera', 'reader'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pcap:
        pcap_report(args.pcap)
    elif args.role:
        (camera if args.role == 'camera' else reader)(args)
    else:
        run(args)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
