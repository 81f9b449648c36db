"""The soak's camera (bench/soak.py), a process of its own: 30 frames/s of scenes a robot meets.

Each scene lasts 2-6 s at 640x480 or, one in four, 1280x720: a stretch of one of the project's clips
(one moving face), an empty room, or 1-8 people standing still (their photos on a grey wall, each
swaying a few pixels). People come from a pool of distinct people (../shared/data/facial_expressions:
one photo each of LFW/IMFDB people): half of each scene's people were seen in the last scenes (people
who come back), the rest are new, so that over an hour the camera shows far more people than face_node
keeps (person.max_people). Frames go out reliable, depth 5, stamped now; at the end the process
prints `published N` (every frame it sent).
Usage: bench/soak_camera.py --seconds S [--seed 0] [--rate 30]
"""
from __future__ import annotations

import argparse
import random
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fer3d_ros.core.image_conversion import numpy_to_image
from fer3d_ros.core.video import read_frames

SHARED = Path(__file__).resolve().parents[2] / 'shared' / 'data'
SIZES = ((640, 480), (640, 480), (640, 480), (1280, 720))
GROUPS = (0, 1, 1, 2, 3, 4, 6, 8)  # people in a scene of photos
RECENT = 12  # people who may come back


def people_pool() -> list[Path]:
    """One photo per distinct person (LFW-style names: First_Last_0001.jpg)."""
    first: dict[str, Path] = {}
    for path in sorted((SHARED / 'facial_expressions' / 'images').glob('*.jpg')):
        first.setdefault(path.stem.rsplit('_', 1)[0], path)
    return list(first.values())


class Scenes:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.pool = people_pool()
        self.rng.shuffle(self.pool)
        self.next_new = 0
        self.recent: deque[Path] = deque(maxlen=RECENT)
        self.clips = sorted((SHARED / 'videos').glob('*.mp4'))
        self.people_shown = 0

    def people(self, count: int) -> list[Path]:
        chosen: list[Path] = []
        while len(chosen) < count:
            if self.recent and self.rng.random() < 0.5:
                person = self.rng.choice(list(self.recent))
            else:
                person = self.pool[self.next_new % len(self.pool)]
                self.next_new += 1
            if person not in chosen:
                chosen.append(person)
        self.recent.extend(chosen)
        return chosen

    def frames(self, rate: float):
        """Endless frames, scene after scene."""
        while True:
            size = self.rng.choice(SIZES)
            count = int(self.rng.uniform(2.0, 6.0) * rate)
            if self.rng.random() < 0.3 and self.clips:
                yield from self.clip(size, count)
            else:
                yield from self.photos(size, count, self.rng.choice(GROUPS))

    def clip(self, size: tuple[int, int], count: int):
        clip = self.rng.choice(self.clips)
        frames = list(read_frames(clip, max_frames=count))
        for frame in frames:
            yield cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    def photos(self, size: tuple[int, int], count: int, people: int):
        width, height = size
        wall = np.full((height, width, 3), 110, np.uint8)
        columns = max(1, int(np.ceil(np.sqrt(people * width / height))))
        rows = max(1, int(np.ceil(people / columns)))
        side = min(width // columns, height // rows)
        tiles = [cv2.resize(cv2.imread(str(path)), (side, side), interpolation=cv2.INTER_AREA)
                 for path in self.people(people)]
        self.people_shown += people
        for index in range(count):
            frame = wall.copy()
            for k, tile in enumerate(tiles):
                sway = int(3 * np.sin(index / 9.0 + k))
                x, y = (k % columns) * side + 2 + sway, (k // columns) * side + 2
                x, y = min(max(x, 0), width - side), min(max(y, 0), height - side)
                frame[y:y + side, x:x + side] = tile
            yield frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--rate', type=float, default=30.0)
    options = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node('soak_camera')
    publisher = node.create_publisher(Image, 'image', QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    scenes, published = Scenes(options.seed), 0
    start = time.monotonic()
    try:
        for frame in scenes.frames(options.rate):
            due = start + published / options.rate
            if due > start + options.seconds:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            msg = numpy_to_image(frame, 'bgr8')
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = 'soak_camera'
            publisher.publish(msg)
            published += 1
    finally:
        print(f'published {published} people_shown {scenes.people_shown} distinct_people {scenes.next_new}',
              flush=True)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
