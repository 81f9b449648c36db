"""A consumer written only against REP-155 and hri_msgs, as libhri reads faces: it follows
/humans/faces/tracked, subscribes to a face's topics on first seeing its id, and records what
arrives. Run in its own process by test_ros4hri.py (which builds hri_msgs for it):

    python test/rep155_consumer.py out.json seconds

It also records the camera's image stamps (`image`) and fer3d_ros's `emotions` stamps (the frames
the graph answered), the stamps a REP-155 consumer's messages are checked against, and which
per-face topics have a publisher, every 0.25 s. The summary goes to out.json when the time is up
or a file out.stop appears.
"""
import json
import sys
import time
from pathlib import Path

import rclpy
from hri_msgs.msg import Expression, FacialActionUnits, FacialLandmarks, IdsList, IdsMatch, NormalizedRegionOfInterest2D
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fer3d_ros.msg import EmotionArray

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# What libhri asks for plus the history the publisher keeps for late joiners.
FACE = QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
KINDS = {'roi': NormalizedRegionOfInterest2D, 'landmarks': FacialLandmarks, 'expression': Expression,
         'facs': FacialActionUnits, 'cropped': Image, 'aligned': Image}


def stamp(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def summary(kind: str, msg) -> dict:
    if kind == 'roi':
        return {'box': [msg.xmin, msg.ymin, msg.xmax, msg.ymax], 'c': msg.c}
    if kind == 'landmarks':
        points = [(p.x, p.y, p.c) for p in msg.landmarks]
        return {'points': points, 'size': [msg.width, msg.height]}
    if kind == 'expression':
        return {'expression': msg.expression, 'confidence': msg.confidence,
                'valence_is_nan': msg.valence != msg.valence}
    if kind == 'facs':
        return {'read': [k for k in range(99) if msg.intensity[k] != 0 or msg.confidence[k] != 0]}
    return {'size': [msg.width, msg.height], 'encoding': msg.encoding}


def main(out: str, seconds: float) -> None:
    rclpy.init()
    node = rclpy.create_node('rep155_consumer')
    record = {'images': [], 'answered': [], 'tracked': [], 'matches': [], 'faces': {}, 'topics': []}
    subscriptions = {}

    def on_tracked(msg: IdsList) -> None:
        record['tracked'].append([stamp(msg), list(msg.ids)])
        for face_id in msg.ids:
            if face_id in subscriptions:
                continue
            record['faces'][face_id] = {kind: [] for kind in KINDS}
            subscriptions[face_id] = [node.create_subscription(
                message, f'/humans/faces/{face_id}/{kind}',
                lambda m, f=face_id, k=kind: record['faces'][f][k].append([stamp(m), summary(k, m)]), FACE)
                for kind, message in KINDS.items()]

    node.create_subscription(IdsList, '/humans/faces/tracked', on_tracked, RELIABLE)
    node.create_subscription(IdsMatch, '/humans/candidate_matches', lambda m: record['matches'].append(
        [m.id1, m.id1_type, m.id2, m.id2_type, m.confidence]), RELIABLE)
    node.create_subscription(Image, 'image', lambda m: record['images'].append(stamp(m)), RELIABLE)
    node.create_subscription(EmotionArray, 'emotions', lambda m: record['answered'].append(stamp(m)), RELIABLE)
    print('ready', flush=True)
    end, next_look, stop = time.monotonic() + seconds, 0.0, Path(out).with_suffix('.stop')
    while time.monotonic() < end and not stop.exists():
        rclpy.spin_once(node, timeout_sec=0.05)
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + 0.25
            topics = [name for name, _ in node.get_topic_names_and_types()
                      if name.startswith('/humans/faces/') and name != '/humans/faces/tracked'
                      and node.count_publishers(name) > 0]
            record['topics'].append(sorted(topics))
    with open(out, 'w') as file:
        json.dump(record, file)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == '__main__':
    main(sys.argv[1], float(sys.argv[2]))
