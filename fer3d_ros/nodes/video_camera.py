"""video_camera: a video file played as a camera driver would publish it, to try the graph without one.

    ros2 run fer3d_ros video_camera --ros-args -p video:=session.mp4 -p width:=1280 -p height:=720 \
        -p rate:=30.0 -r image:=/camera/image_raw

Frames are resized to width x height, stamped with the node's clock at publication and published
on `image` (bgr8) or, with `compressed`, on `image/compressed` (jpeg), at `rate` frames/s with the
chosen reliability and depth (5 by default, like camera drivers), from the moment a first subscriber is connected
(`wait_for_subscribers`). Its first 90 frames loop. With `frames` it ends 2 s after that many, so the
soak and the benchmarks know exactly what was sent; on exit it prints the count. `copies` tiles the
clip 2, 4 or 8 times into each frame (as many moving faces). With `closed_loop` the next frame goes
out as soon as the graph's emotions for the last one arrive (or after a second without them), at
most at `rate`: the graph's own pace, as a benchmark measures it.
"""
from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass

import cv2
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from fer3d_ros.core.image_conversion import numpy_to_image
from fer3d_ros.core.settings import setting
from fer3d_ros.core.video import TILE_COPIES, read_frames, tiled
from fer3d_ros.msg import EmotionArray
from fer3d_ros.nodes.diagnostics import Diagnostics
from fer3d_ros.nodes.image_input import RELIABILITY
from fer3d_ros.nodes.parameters import NodeSettings, declare_process_settings
from fer3d_ros.nodes.process import run_node
from fer3d_ros.nodes.qos import RELIABLE_QOS

LOOP_FRAMES = 90
LINGER = 2.0  # seconds between the last frame and the end
# Seconds between seeing a subscriber and the first frame: the subscriber may not know us yet, and
# a reliable reader drops samples from a writer it has not matched.
DISCOVERY_SETTLE = 1.0
ANSWER_TIMEOUT = 1.0  # closed loop: seconds without emotions after which the next frame goes anyway


@dataclass(frozen=True)
class VideoCameraSettings:
    video: str = setting('', 'Video file to play (any format OpenCV reads); required.')
    width: int = setting(640, 'Width of the published frames (pixels).', minimum=16, maximum=8192)
    height: int = setting(480, 'Height of the published frames (pixels).', minimum=16, maximum=8192)
    rate: float = setting(30.0, 'Frames per second (closed loop: at most).', minimum=0.1, maximum=1000.0)
    reliability: str = setting('reliable', 'QoS reliability: reliable or best_effort.', choices=tuple(RELIABILITY))
    depth: int = setting(5, 'QoS history depth of the publisher (camera drivers use 5 or 10).', minimum=1, maximum=100)
    compressed: bool = setting(False, 'Publish jpeg on image/compressed instead of image.')
    frames: int = setting(0, 'Frames to publish before stopping; 0 = until shut down.', minimum=0, maximum=2**31 - 1)
    frame_id: str = setting('camera_optical_frame', 'frame_id of the published headers.')
    copies: int = setting(1, 'Copies of the clip tiled into each frame: as many moving faces.',
                          choices=tuple(TILE_COPIES))
    closed_loop: bool = setting(False, 'Send the next frame as soon as the emotions of the last one arrive on '
                                f'`emotions` (or {ANSWER_TIMEOUT:g} s without them), at most at `rate`: the '
                                "graph's own pace.")
    wait_for_subscribers: int = setting(1, 'Start publishing once this many subscribers have been connected for '
                                        f'{DISCOVERY_SETTLE:g} s (measurements then count from a connected graph); '
                                        '0: publish from the start.', minimum=0, maximum=100)


class VideoCamera(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('video_camera', **kwargs)
        declare_process_settings(self)
        self.published = None  # set once the node is ready
        settings = NodeSettings(self, VideoCameraSettings).value
        if not settings.video:
            raise ValueError('no video to play: set the parameter video (-p video:=/path/to/clip.mp4)')
        video, width, height, rate, reliability = (settings.video, settings.width, settings.height, settings.rate,
                                                   settings.reliability)
        self.compressed, self.max_frames, self.frame_id = settings.compressed, settings.frames, settings.frame_id
        self.copies, closed_loop, self.wait_for_subscribers = (settings.copies, settings.closed_loop,
                                                               settings.wait_for_subscribers)
        # The first seconds, decoded once and looped: decoding stays out of the measurements, and
        # memory stays small at any output size (frames are resized as they are published).
        self.size = (width, height)
        self.next_frame = itertools.cycle(list(read_frames(video, max_frames=LOOP_FRAMES)))
        self._connected_since: float | None = None
        qos = QoSProfile(depth=settings.depth, reliability=RELIABILITY[reliability])
        self.publisher = self.create_publisher(CompressedImage if self.compressed else Image,
                                               'image/compressed' if self.compressed else 'image', qos)
        self.diagnostics = Diagnostics(self)
        self.published = 0
        self.answered = 0
        self._last_stamp = None  # closed loop: the stamp of the frame awaiting its emotions
        self._last_sent = 0.0
        if closed_loop:
            self.create_subscription(EmotionArray, 'emotions', self.on_emotions, RELIABLE_QOS)
        self.min_period = 1.0 / rate
        self.closed_loop = closed_loop
        self.create_timer(min(self.min_period, 0.005) if closed_loop else self.min_period, self.publish_frame)
        self.get_logger().info(f'publishing {video} at {width}x{height}, {rate:g} frames/s, {reliability}, '
                               f'on {self.publisher.topic_name}')

    def on_emotions(self, msg: EmotionArray) -> None:
        if self._last_stamp is not None and msg.header.stamp == self._last_stamp:
            self.answered += 1
            self._last_stamp = None
            self.publish_frame()

    def _due(self) -> bool:
        """Closed loop: the last frame was answered (or timed out) and `rate` allows the next."""
        since = time.monotonic() - self._last_sent
        return since >= self.min_period and (self._last_stamp is None or since >= ANSWER_TIMEOUT)

    def publish_frame(self) -> None:
        if self.max_frames and self.published >= self.max_frames:
            return
        if self.wait_for_subscribers and not self.published and not self._subscribers_settled():
            return
        if self.closed_loop and not self._due():
            return
        start = time.perf_counter()
        frame = tiled(next(self.next_frame), self.size, self.copies)
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        self._last_stamp, self._last_sent = header.stamp, time.monotonic()
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
        if self.closed_loop:
            self.diagnostics.extra['frames_answered'] = str(self.answered)
        self.diagnostics.record(time.perf_counter() - start)

    def _subscribers_settled(self) -> bool:
        """wait_for_subscribers subscribers have been connected for DISCOVERY_SETTLE s (discovery has
        finished both ways)."""
        now = time.monotonic()
        if self.publisher.get_subscription_count() < self.wait_for_subscribers:
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
