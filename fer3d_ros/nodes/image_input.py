"""Camera input whose QoS matches the camera, and an account of every frame that did not arrive.

A best-effort subscription loses most frames of 640x480 and larger from a publisher in another
process (Fast DDS: 640x480 17 of 30 frames, 1920x1080 none); a reliable one cannot hear a
best-effort camera at all. So the reliability is a parameter, `image_reliability`: `auto`
(default) asks for what the publishers on the topic offer, as rosbag2 does, and asks again
whenever a publisher appears or leaves.

The queue holds QUEUE_DEPTH frames and the node always takes the newest of them: a node slower than
its camera works on the newest frame, never on a backlog. One frame deep lost half of a 1280x720
camera's frames to a subscriber that did nothing: a camera with Fast DDS's default 512 KiB
shared-memory segments sends such frames in fragments, and they arrive in pairs.

Frames that never reached the callback are counted from the publishers' sequence numbers:
`lost_in_transport` are those the middleware reports lost (best effort only), `skipped_busy` the
rest of the gaps, frames replaced in the depth-1 queue while the node was working on another.
`before_first` are the frames a publisher had sent before the first one the node took (a camera
started earlier, or frames replaced while the node was starting): no gap shows them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rclpy.event_handler import SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from sensor_msgs.msg import CompressedImage, Image

from fer3d_ros.core.image_conversion import MAX_IMAGE_PIXELS
from fer3d_ros.core.settings import setting
from fer3d_ros.nodes.common import Diagnostics

RELIABILITY = {'reliable': ReliabilityPolicy.RELIABLE, 'best_effort': ReliabilityPolicy.BEST_EFFORT}
RELIABILITY_NAMES = {policy: name for name, policy in RELIABILITY.items()}
AUTO = 'auto'
# Graph changes that the subscription events do not report (a publisher changing its QoS, a
# middleware without the `matched` event) are caught by this slower check.
RECHECK_PERIOD = 1.0
QUEUE_DEPTH = 2
# rclpy passes MessageInfo (sequence numbers) to two-argument callbacks since Jazzy; Humble does not.
HAS_MESSAGE_INFO = hasattr(Subscription, 'CallbackType')


def reliability_to_match(offered: Iterable[ReliabilityPolicy]) -> ReliabilityPolicy | None:
    """The reliability that hears every publisher: reliable when all of them are, else best effort;
    None without publishers (nothing to match)."""
    offered = list(offered)
    if not offered:
        return None
    return ReliabilityPolicy.RELIABLE if all(p == ReliabilityPolicy.RELIABLE for p in offered) \
        else ReliabilityPolicy.BEST_EFFORT


class FrameAccount:
    """Messages received, and the gaps in each publisher's sequence numbers (messages that never came)."""

    def __init__(self, name: str = 'frames') -> None:
        self.name = name  # of the messages, in the figures' keys
        self.received = 0
        self.gaps = 0
        self.lost_in_transport = 0  # reported by the middleware; each is also a gap
        self.before_first = 0
        self.sequenced = True  # False when the middleware gives no sequence numbers
        self._last: dict[bytes, int] = {}

    def record(self, publisher: bytes, sequence: int | None) -> None:
        self.received += 1
        if sequence is None:
            self.sequenced = False
            return
        last = self._last.get(publisher)
        if last is None:
            self.before_first += sequence - 1  # sequence numbers start at 1
        elif sequence > last:
            self.gaps += sequence - last - 1
        self._last[publisher] = sequence  # a restarted publisher starts again from 1

    def record_info(self, info: dict | None) -> None:
        """`record` from rclpy's message info (None where rclpy gives none: no sequence numbers)."""
        gid = info.get('publisher_gid') if info else None
        self.record(bytes(gid['data']) if gid else b'', info.get('publication_sequence_number') if info else None)

    def counting(self, callback: Callable) -> Callable:
        """A subscription callback that records each message's publisher and sequence number here,
        then calls `callback(msg)` (rclpy passes the message info to two-argument callbacks)."""
        def record_then_call(msg, info) -> None:
            self.record_info(info)
            callback(msg)
        return record_then_call if HAS_MESSAGE_INFO else lambda msg: record_then_call(msg, None)

    @property
    def skipped_busy(self) -> int:
        return max(0, self.gaps - self.lost_in_transport)

    def figures(self) -> dict[str, str]:
        unknown = 'n/a (no sequence numbers)'
        return {f'{self.name}_received': str(self.received),
                f'{self.name}_skipped_busy': str(self.skipped_busy) if self.sequenced else unknown,
                f'{self.name}_lost_in_transport': str(self.lost_in_transport),
                f'{self.name}_before_first': str(self.before_first) if self.sequenced else unknown}


@dataclass(frozen=True)
class ImageInputSettings:
    """The camera input's settings (face_node and overlay_node)."""
    use_compressed: bool = setting(False, 'Subscribe to image/compressed (sensor_msgs/CompressedImage, jpeg or png) '
                                   'instead of image (sensor_msgs/Image).')
    image_reliability: str = setting(AUTO, 'QoS reliability of the image subscription: auto (as the publishers on the '
                                     'topic publish, re-checked when one appears or leaves), reliable or best_effort. '
                                     f'The queue holds {QUEUE_DEPTH} frames; the newest is taken.',
                                     choices=(AUTO, *RELIABILITY), dynamic=True)
    max_image_pixels: int = setting(MAX_IMAGE_PIXELS, 'Largest image taken, in pixels (width x height; default 8K '
                                    'UHD). A larger frame (a compressed one by its header, before decoding) is skipped '
                                    'with a log line.', minimum=1, maximum=2**31 - 1, dynamic=True)


class ImageInput:
    """The image subscription of a node (`image`, or `image/compressed`), as its settings ask, and the
    account of its frames in the node's diagnostics. Made on activate, closed on deactivate."""

    def __init__(self, node: Node, settings: ImageInputSettings, callback: Callable, diagnostics: Diagnostics) -> None:
        self._node, self._callback, self._diagnostics = node, callback, diagnostics
        compressed = settings.use_compressed
        self._msg_type, self._topic = (CompressedImage, 'image/compressed') if compressed else (Image, 'image')
        self.account = FrameAccount()
        self._lost_before = 0  # message-lost total of the subscriptions replaced so far
        self._lost_now = 0
        self.subscription: Subscription | None = None
        self.requested = AUTO
        self.max_pixels = settings.max_image_pixels
        self.request(settings.image_reliability)
        self._timer = node.create_timer(RECHECK_PERIOD, self.match_publishers)

    def apply(self, settings: ImageInputSettings) -> None:
        """Take new values of the dynamic settings (a new reliability subscribes again)."""
        self.max_pixels = settings.max_image_pixels
        if settings.image_reliability != self.requested:
            self.request(settings.image_reliability)

    def close(self) -> None:
        self._node.destroy_timer(self._timer)
        if self.subscription is not None:
            self._node.destroy_subscription(self.subscription)
            self.subscription = None

    def request(self, reliability: str) -> None:
        """Subscribe with `reliability` (auto, reliable, best_effort); ValueError names the choices."""
        if reliability not in (AUTO, *RELIABILITY):
            raise ValueError(f'image_reliability must be auto, reliable or best_effort, got {reliability!r}')
        self.requested = reliability
        # Auto without publishers: best effort hears any publisher, and a reliable camera is never
        # told that a reader it cannot serve appeared; the first publisher heard moves it to theirs.
        self._subscribe(RELIABILITY[reliability] if reliability != AUTO
                        else self._offered() or ReliabilityPolicy.BEST_EFFORT)

    @property
    def topic_name(self) -> str:
        """The resolved topic (namespace and remapping applied)."""
        return self.subscription.topic_name

    def __str__(self) -> str:
        return f'{self.topic_name} (image_reliability: {self.requested})'

    def _offered(self) -> ReliabilityPolicy | None:
        topic = self._node.resolve_topic_name(self._topic)
        return reliability_to_match(info.qos_profile.reliability
                                    for info in self._node.get_publishers_info_by_topic(topic))

    def match_publishers(self) -> bool:
        """In auto mode, resubscribe if the publishers now offer another reliability; True if it did."""
        wanted = self._offered() if self.requested == AUTO else None
        if wanted is None or wanted == self.reliability:
            return False
        self._node.get_logger().info(f'{self.topic_name}: publishers offer {RELIABILITY_NAMES[wanted]}, '
                                     f'subscribing {RELIABILITY_NAMES[wanted]} (image_reliability: auto)')
        self._subscribe(wanted)
        return True

    def _subscribe(self, reliability: ReliabilityPolicy) -> None:
        if self.subscription is not None:
            self._node.destroy_subscription(self.subscription)
            self._lost_before += self._lost_now
            self._lost_now = 0
        self.reliability = reliability
        qos = QoSProfile(depth=QUEUE_DEPTH, history=HistoryPolicy.KEEP_LAST, reliability=reliability,
                         durability=DurabilityPolicy.VOLATILE)
        callback = self._take_newest if HAS_MESSAGE_INFO else lambda msg: self._take_newest(msg, None)
        events = {'message_lost': self._on_lost}
        if self.requested == AUTO:  # a publisher appears, leaves, or cannot be heard: match again
            events.update(matched=lambda _: self.match_publishers(),
                          incompatible_qos=lambda _: self.match_publishers())
        try:
            self.subscription = self._node.create_subscription(
                self._msg_type, self._topic, callback, qos, event_callbacks=SubscriptionEventCallbacks(**events))
        except UnsupportedEventTypeError:  # a middleware without message-lost events: gaps only
            events.pop('message_lost')
            self.subscription = self._node.create_subscription(
                self._msg_type, self._topic, callback, qos, event_callbacks=SubscriptionEventCallbacks(**events))
        self._report()

    def _take_newest(self, msg, info: dict | None) -> None:
        """Called with the oldest frame in the queue: take the newer ones, work on the newest (the
        others show as skipped_busy, a gap in its publisher's sequence numbers)."""
        while (newer := self.subscription.handle.take_message(self._msg_type, False)) is not None:
            msg, info = newer
        self.account.record_info(info)
        self._report()
        self._callback(msg)

    def _on_lost(self, event) -> None:
        self._lost_now = event.total_count
        self._report()

    def _report(self) -> None:
        self.account.lost_in_transport = self._lost_before + self._lost_now
        self._diagnostics.extra.update(self.account.figures(),
                                       image_reliability=f'{RELIABILITY_NAMES[self.reliability]}'
                                       + (' (auto)' if self.requested == AUTO else ''))
