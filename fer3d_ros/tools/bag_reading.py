"""Reading rosbag2 bags for evaluation: the image topic, its frames as face_node decodes them, the
labels a bag may carry, and the storage of a bag rosbags cannot open (tools/bag_salvage.py). Shared by
`fer3d-bag eval` (tools/bag.py) and the fleet's workers (tools/fleet.py)."""
from __future__ import annotations

import sys
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from fer3d_ros.core.image_conversion import ImageConversionError, message_to_bgr8
from fer3d_ros.tools.bag_salvage import SalvagedBag

IMAGE_TYPES = {'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CompressedImage': CompressedImage}
LABELS_TOPIC = '/labels'


class BagError(RuntimeError):
    """A bag, video, folder or labels file that cannot be used; the message says why and what to do."""


class Labels:
    """Piecewise-constant labels: each holds from its start (seconds from the first frame or frame
    index) until the next; '' means unlabelled."""

    def __init__(self, starts: Sequence[float], labels: Sequence[str], by_frame: bool) -> None:
        order = np.argsort(starts, kind='stable')
        self.starts = [float(starts[i]) for i in order]
        self.labels = [labels[i] for i in order]
        self.by_frame = by_frame

    def at(self, frame: int, seconds: float) -> str:
        index = bisect_right(self.starts, frame if self.by_frame else seconds + 1e-6) - 1
        return self.labels[index] if index >= 0 else ''


def open_reader(path: Path):
    """rosbags' reader; for a bag it cannot open (cut short, no metadata.yaml), what its storage still holds."""
    from rosbags.highlevel import AnyReader
    if not path.exists():
        raise BagError(f'bag {path} does not exist')
    try:
        reader = AnyReader([path])
        reader.open()
        return reader
    except Exception as error:  # noqa: BLE001 - rosbags raises several types for unreadable bags
        salvaged = SalvagedBag(path)
        if not salvaged.connections:
            raise BagError(f'cannot read bag {path}: {error} (expected a rosbag2 folder with metadata.yaml, '
                           'sqlite3 or MCAP storage)') from error
        print(f'note: rosbags cannot open {path} ({error}): read its storage directly', file=sys.stderr)
        return salvaged


def image_connection(reader, topic: str | None):
    images = [c for c in reader.connections if c.msgtype in IMAGE_TYPES and (topic is None or c.topic == topic)]
    if len(images) != 1:
        found = ', '.join(f'{c.topic} ({c.msgtype})' for c in reader.connections) or 'no topics'
        wanted = f'topic {topic}' if topic else 'exactly one sensor_msgs Image or CompressedImage topic'
        raise BagError(f'{wanted} needed; the bag holds: {found} (choose one with --topic)')
    return images[0]


def bag_labels(reader, first_ns: int) -> Labels | None:
    connections = [c for c in reader.connections if c.topic == LABELS_TOPIC and c.msgtype == 'std_msgs/msg/String']
    rows = [((timestamp - first_ns) * 1e-9, deserialize_message(raw, String).data)
            for _, timestamp, raw in readable_messages(reader, connections, damage=[])] if connections else []
    return Labels([t for t, _ in rows], [label for _, label in rows], by_frame=False) if rows else None


def readable_messages(reader, connections, damage: list[str]) -> Iterator[tuple]:
    """The connections' messages until the bag ends or breaks; why it broke is appended to `damage`
    (a bag cut short is evaluated up to the break; errors of the replay itself are not caught here)."""
    try:
        yield from reader.messages(connections=connections)
    except Exception as error:  # noqa: BLE001 - rosbags raises several types for damaged storage
        damage.append(f'{type(error).__name__}: {error}')


def decode_frame(rawdata: bytes, msgtype: str):
    """The image message and its pixels as face_node converts them; ImageConversionError where it cannot."""
    try:
        msg = deserialize_message(rawdata, IMAGE_TYPES[msgtype])
    except RuntimeError as error:  # rclpy's RMWError: truncated or malformed CDR
        raise ImageConversionError(f'cannot deserialise the {msgtype}: {error}') from error
    return msg, message_to_bgr8(msg)
