"""video_camera: a video file played as a camera driver would publish it, to try the graph without one.

    ros2 run fer3d_ros video_camera --ros-args -p video:=session.mp4 -p width:=1280 -p height:=720 \
        -p rate:=30.0 -r image:=/camera/image_raw

Frames are resized to width x height, stamped with the node's clock at publication and published
on `image` (bgr8) or, with `compressed`, on `image/compressed` (jpeg), at `rate` frames/s with the
chosen reliability (depth 5, like camera drivers), from the moment a first subscriber is connected
(`wait_for_subscriber`). Its first 90 frames loop. With `frames` it ends 2 s after that many, so the
soak and the transport benchmark know exactly what was sent; on exit it prints the count.
"""
from __future__ import annotations

import itertools
import sys
import time

import cv2
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from fer3d_ros.core.image_conversion import numpy_to_image
from fer3d_ros.core.video import read_frames
from fer3d_ros.nodes.common import Diagnostics, declare, declare_library_threads, run_node
from fer3d_ros.nodes.image_input import RELIABILITY

LOOP_FRAMES = 90
LINGER = 2.0  # seconds between the last frame and the end
# Seconds between seeing a subscriber and the first frame: the subscriber may not know us yet, and
# a reliable reader drops samples from a writer it has not matched.
DISCOVERY_SETTLE = 1.0


class VideoCamera(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('video_camera', **kwargs)
        declare_library_threads(self)
        self.published = None  # set once the node is ready
        video = declare(self, 'video', '', 'Video file to play (any format OpenCV reads); required.')
        if not video:
            raise ValueError('no video to play: set the parameter video (-p video:=/path/to/clip.mp4)')
        width = declare(self, 'width', 640, 'Width of the published frames (pixels).', minimum=16, maximum=8192)
        height = declare(self, 'height', 480, 'Height of the published frames (pixels).', minimum=16, maximum=8192)
        rate = declare(self, 'rate', 30.0, 'Frames per second.', minimum=0.1, maximum=1000.0)
        reliability = declare(self, 'reliability', 'reliable', 'QoS reliability: reliable or best_effort.')
        if reliability not in RELIABILITY:
            raise ValueError(f'reliability must be reliable or best_effort, got {reliability!r}')
        self.compressed = declare(self, 'compressed', False, 'Publish jpeg on image/compressed instead of image.')
        self.max_frames = declare(self, 'frames', 0, 'Frames to publish before stopping; 0 = until shut down.',
                                  minimum=0, maximum=2**31 - 1)
        self.frame_id = declare(self, 'frame_id', 'camera_optical_frame', 'frame_id of the published headers.')
        self.wait_for_subscriber = declare(self, 'wait_for_subscriber', True,
                                           'Start publishing once a subscriber is connected (measurements then '
                                           'count from a connected graph); false: publish from the start.')
        # The first seconds, decoded once and looped: decoding stays out of the measurements, and
        # memory stays small at any output size (frames are resized as they are published).
        self.size = (width, height)
        self.next_frame = itertools.cycle(list(read_frames(video, max_frames=LOOP_FRAMES)))
        self._connected_since: float | None = None
        qos = QoSProfile(depth=5, reliability=RELIABILITY[reliability])
        self.publisher = self.create_publisher(CompressedImage if self.compressed else Image,
                                               'image/compressed' if self.compressed else 'image', qos)
        self.diagnostics = Diagnostics(self)
        self.published = 0
        self.create_timer(1.0 / rate, self.publish_frame)
        self.get_logger().info(f'publishing {video} at {width}x{height}, {rate:g} frames/s, {reliability}, '
                               f'on {self.publisher.topic_name}')

    def publish_frame(self) -> None:
        if self.max_frames and self.published >= self.max_frames:
            return
        if self.wait_for_subscriber and not self.published and not self._subscriber_settled():
            return
        start = time.perf_counter()
        frame = cv2.resize(next(self.next_frame), self.size, interpolation=cv2.INTER_LINEAR)
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        if self.compressed:
            msg = CompressedImage(header=header, format='jpeg', data=cv2.imencode('.jpg', frame)[1].tobytes())
        else:
            msg = numpy_to_image(frame, 'bgr8', header)
        self.publisher.publish(msg)
        self.published += 1
        if self.published == self.max_frames:  # done: the reliable transport gets time to deliver the last ones
            self.get_logger().info(f'published {self.published} frames: stopping in {LINGER:g} s')
            self.create_timer(LINGER, self.context.try_shutdown)
        self.diagnostics.extra['frames_published'] = str(self.published)
        self.diagnostics.record(time.perf_counter() - start)

    def _subscriber_settled(self) -> bool:
        """A subscriber has been connected for DISCOVERY_SETTLE s (discovery has finished both ways)."""
        now = time.monotonic()
        if not self.publisher.get_subscription_count():
            self._connected_since = None
        elif self._connected_since is None:
            self._connected_since = now
        return self._connected_since is not None and now - self._connected_since >= DISCOVERY_SETTLE

    def destroy_node(self) -> None:
        # Printed, not logged: on Ctrl-C the context (and the log's /rosout publisher) is already gone.
        if self.published is not None:
            print(f'[video_camera] published {self.published} frames', file=sys.stderr)
            self.published = None  # rclpy may destroy a node twice (at shutdown, then in run_node)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(VideoCamera, args)


if __name__ == '__main__':
    raise SystemExit(main())
