"""Camera input whose QoS matches the camera, frames taken off the middleware at once, and an
account of every frame that did not arrive.

A best-effort subscription loses most frames of 640x480 and larger from a publisher in another
process (Fast DDS: 640x480 17 of 30 frames, 1920x1080 none); a reliable one cannot hear a
best-effort camera at all. So the reliability is a parameter, `image_reliability`: `auto`
(default) asks for what the publishers on the topic offer, as rosbag2 does, and asks again
whenever a publisher appears or leaves.

The queue holds QUEUE_DEPTH frames, as deep as a camera driver's own history, and each callback
takes every queued frame, works on the newest and drops the others unread (only the newest is
deserialised). A shallow queue let the middleware evict frames still being reassembled: a 1280x720
camera on Fast DDS's defaults fell to a third of its frames within a minute with a two-deep queue
(1784 of 1800 arrived ten deep; docs/performance.md).

Frames are counted from the publishers' sequence numbers: `skipped_busy` are frames taken and
dropped for a newer one while the node was busy, `lost_in_transport` those that never reached the
node (gaps in the sequence; where the middleware gives no sequence numbers, those it reports lost),
`before_first` the frames a publisher had sent before the first one the node took (a camera
started earlier): no gap shows them. An ArrivalMonitor watches the same frames: when too many go
missing, or the delay from stamp to arrival grows, the node says once what is happening and how to
fix it, and /diagnostics shows it as a warning while it lasts.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.event_handler import SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.subscription import Subscription
from sensor_msgs.msg import CompressedImage, Image

from fer3d_ros.core.files import ModelFileError, find_shared_file
from fer3d_ros.core.frame_arrivals import ArrivalMonitor, ArrivalProblem
from fer3d_ros.core.image_conversion import MAX_IMAGE_PIXELS
from fer3d_ros.core.settings import setting
from fer3d_ros.nodes.diagnostics import Diagnostics
from fer3d_ros.nodes.process import DDS_PROFILE_VARIABLES

RELIABILITY = {'reliable': ReliabilityPolicy.RELIABLE, 'best_effort': ReliabilityPolicy.BEST_EFFORT}
RELIABILITY_NAMES = {policy: name for name, policy in RELIABILITY.items()}
AUTO = 'auto'
# Graph changes that the subscription events do not report (a publisher changing its QoS, a
# middleware without the `matched` event) are caught by this slower check.
RECHECK_PERIOD = 1.0
QUEUE_DEPTH = 10
# Below this kernel limit on UDP receive buffers, 720p and 1080p frames lost datagrams (Linux).
RMEM_MAX_FILE = Path('/proc/sys/net/core/rmem_max')
RECOMMENDED_RMEM_MAX = 4 * 2**20
TRANSPORT_TROUBLE = "the camera's frames are not arriving as sent"  # opens the warning
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
    """Messages received, skipped, and the gaps in each publisher's sequence numbers.

    With `drains_queue` the node takes every queued message itself (`skip` counts those it drops), so
    a gap is a message that never reached it; without, the middleware's queue replaced messages
    while the node was busy, and a gap is one of those unless the middleware reported it lost."""

    def __init__(self, name: str = 'frames', drains_queue: bool = False) -> None:
        self.name = name  # of the messages, in the figures' keys
        self.drains_queue = drains_queue
        self.received = 0
        self.skipped = 0  # taken off the queue and dropped for a newer one
        self.gaps = 0
        self.lost_in_transport = 0  # reported by the middleware; each is also a gap
        self.before_first = 0
        self.sequenced = True  # False when the middleware gives no sequence numbers
        self._last: dict[bytes, int] = {}

    def record(self, publisher: bytes, sequence: int | None) -> None:
        """A message the node works on."""
        self.received += 1
        self._follow(publisher, sequence)

    def skip(self, publisher: bytes, sequence: int | None) -> None:
        """A message taken off the queue and dropped for a newer one."""
        self.skipped += 1
        self._follow(publisher, sequence)

    def _follow(self, publisher: bytes, sequence: int | None) -> None:
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
        self.record(*publisher_and_sequence(info))

    def counting(self, callback: Callable) -> Callable:
        """A subscription callback that records each message's publisher and sequence number here,
        then calls `callback(msg)` (rclpy passes the message info to two-argument callbacks)."""
        def record_then_call(msg, info) -> None:
            self.record_info(info)
            callback(msg)
        return record_then_call if HAS_MESSAGE_INFO else lambda msg: record_then_call(msg, None)

    @property
    def skipped_busy(self) -> int:
        return self.skipped + (0 if self.drains_queue else max(0, self.gaps - self.lost_in_transport))

    @property
    def lost(self) -> int:
        """Messages that never reached the node."""
        return self.gaps if self.drains_queue and self.sequenced else self.lost_in_transport

    def figures(self) -> dict[str, str]:
        unknown = 'n/a (no sequence numbers)'
        return {f'{self.name}_received': str(self.received),
                f'{self.name}_skipped_busy': str(self.skipped_busy) if self.sequenced or self.drains_queue else unknown,
                f'{self.name}_lost_in_transport': str(self.lost),
                f'{self.name}_before_first': str(self.before_first) if self.sequenced else unknown}


def publisher_and_sequence(info: dict | None) -> tuple[bytes, int | None]:
    """The publisher's id and the message's sequence number from rclpy's message info (None: none given)."""
    gid = info.get('publisher_gid') if info else None
    return (bytes(gid['data']) if gid else b''), (info.get('publication_sequence_number') if info else None)


@dataclass(frozen=True)
class ImageInputSettings:
    """The camera input's settings (face_node and overlay_node)."""
    use_compressed: bool = setting(False, 'Subscribe to image/compressed (sensor_msgs/CompressedImage, jpeg or png) '
                                   'instead of image (sensor_msgs/Image).')
    image_reliability: str = setting(AUTO, 'QoS reliability of the image subscription: auto (as the publishers on the '
                                     'topic publish, re-checked when one appears or leaves), reliable or best_effort. '
                                     f'The queue holds {QUEUE_DEPTH} frames; the newest is taken, the older dropped.',
                                     choices=(AUTO, *RELIABILITY), dynamic=True)
    max_image_pixels: int = setting(MAX_IMAGE_PIXELS, 'Largest image taken, in pixels (width x height; default 8K '
                                    'UHD). A larger frame (a compressed one by its header, before decoding) is skipped '
                                    'with a log line.', minimum=1, maximum=2**31 - 1, dynamic=True)


class ImageInput:
    """The image subscription of a node (`image`, or `image/compressed`), as its settings ask, the
    account of its frames in the node's diagnostics, and a word when the camera's frames go missing
    or arrive ever later. Made on activate, closed on deactivate."""

    def __init__(self, node: Node, settings: ImageInputSettings, callback: Callable, diagnostics: Diagnostics) -> None:
        self._node, self._callback, self._diagnostics = node, callback, diagnostics
        compressed = settings.use_compressed
        self._msg_type, self._topic = (CompressedImage, 'image/compressed') if compressed else (Image, 'image')
        self.account = FrameAccount(drains_queue=True)
        self.arrivals = ArrivalMonitor()
        self.warned = False  # the transport warning is said once per activation
        self._lost_before = 0  # message-lost total of the subscriptions replaced so far
        self._lost_now = 0
        self._frame = ''  # the latest frame's size and encoding, for the warning
        self.subscription: Subscription | None = None
        self.requested = AUTO
        self.max_pixels = settings.max_image_pixels
        self.request(settings.image_reliability)
        self._timer = node.create_timer(RECHECK_PERIOD, self._every_second)

    def apply(self, settings: ImageInputSettings) -> None:
        """Take new values of the dynamic settings (a new reliability subscribes again)."""
        self.max_pixels = settings.max_image_pixels
        if settings.image_reliability != self.requested:
            self.request(settings.image_reliability)

    def close(self) -> None:
        self._node.destroy_timer(self._timer)
        self._diagnostics.warning = ''
        if self.subscription is not None:
            self._node.destroy_subscription(self.subscription)
            self.subscription = None

    def _every_second(self) -> None:
        self.match_publishers()
        self.check_arrivals()

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
        callback = self._take_newest if HAS_MESSAGE_INFO else lambda raw: self._take_newest(raw, None)
        events = {'message_lost': self._on_lost}
        if self.requested == AUTO:  # a publisher appears, leaves, or cannot be heard: match again
            events.update(matched=lambda _: self.match_publishers(),
                          incompatible_qos=lambda _: self.match_publishers())
        # Serialised messages: only the newest of those queued is worth deserialising.
        subscribe = lambda: self._node.create_subscription(  # noqa: E731
            self._msg_type, self._topic, callback, qos, event_callbacks=SubscriptionEventCallbacks(**events), raw=True)
        try:
            self.subscription = subscribe()
        except UnsupportedEventTypeError:  # a middleware without message-lost events: gaps only
            events.pop('message_lost')
            self.subscription = subscribe()
        self._report()

    def _take_newest(self, raw: bytes, info: dict | None) -> None:
        """Called with the oldest frame in the queue: take the newer ones, work on the newest (the
        others are dropped unread and counted as skipped_busy)."""
        while (newer := self.subscription.handle.take_message(self._msg_type, True)) is not None:
            self.account.skip(*publisher_and_sequence(info))
            self.arrivals.record(*publisher_and_sequence(info), float('nan'), time.monotonic(), len(raw))
            raw, info = newer
        msg = deserialize_message(raw, self._msg_type)
        self.account.record_info(info)
        self.arrivals.record(*publisher_and_sequence(info), self._delay(msg), time.monotonic(), len(raw))
        self._frame = (f'{msg.width}x{msg.height} {msg.encoding}' if self._msg_type is Image else msg.format) \
            + f', {len(raw) / 1e6:.1f} MB'
        self._report()
        self._callback(msg)

    def _delay(self, msg) -> float:
        """Seconds from the frame's stamp to now; NaN on simulated time (a bag's stamps are another clock)."""
        if self._node.get_parameter('use_sim_time').value:
            return float('nan')
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        return self._node.get_clock().now().nanoseconds * 1e-9 - stamp

    def check_arrivals(self) -> ArrivalProblem | None:
        """Once a window: warn (once) and show on /diagnostics while frames go missing or come late."""
        problem = self.arrivals.check(time.monotonic())
        if problem is False:
            return None
        if problem is None:
            self._diagnostics.warning = ''
            return None
        sentence = (f"{self.topic_name}: {TRANSPORT_TROUBLE}: {problem.describe()} ({self._frame}). "
                    f'{transport_remedy(problem)}')
        self._diagnostics.warning = sentence
        if not self.warned:
            self._node.get_logger().warning(sentence)
            self.warned = True
        return problem

    def _on_lost(self, event) -> None:
        self._lost_now = event.total_count
        self._report()

    def _report(self) -> None:
        self.account.lost_in_transport = self._lost_before + self._lost_now
        self._diagnostics.extra.update(self.account.figures(),
                                       image_reliability=f'{RELIABILITY_NAMES[self.reliability]}'
                                       + (' (auto)' if self.requested == AUTO else ''))


def kernel_udp_buffer_limit() -> int | None:
    """Linux's limit on a socket's receive buffer (net.core.rmem_max), in bytes; None elsewhere."""
    try:
        return int(RMEM_MAX_FILE.read_text())
    except (OSError, ValueError):
        return None


def transport_remedy(problem: ArrivalProblem) -> str:
    """What to do about frames lost or delayed between the camera and this node, for this process's
    middleware and settings (docs/performance.md, "A camera nobody configured")."""
    if 'fastrtps' not in rclpy.get_rmw_implementation_identifier():
        return ("Check the middleware's settings for large messages (socket buffers, shared memory) on the "
                "camera's side and on this node's.")
    try:
        ours = str(find_shared_file('config', 'fastdds.xml'))
    except ModelFileError:
        ours = '<fer3d_ros share>/config/fastdds.xml'
    profile = next((os.environ[v] for v in DDS_PROFILE_VARIABLES if os.environ.get(v)), ours)
    if Path(profile).resolve() != Path(ours).resolve():
        return (f"Fast DDS loses fragments of large frames in a default camera's 512 KiB shared-memory segments. "
                f"Fix: this process reads {profile}, not fer3d_ros's {ours}, whose readers take frames over UDP: "
                'unset FASTDDS_DEFAULT_PROFILES_FILE, or give your profile its defaultUnicastLocatorList; or start '
                f'the camera driver with FASTDDS_DEFAULT_PROFILES_FILE={ours} (16 MiB segments: frames in one piece).')
    limit = kernel_udp_buffer_limit()
    if limit is not None and limit < RECOMMENDED_RMEM_MAX:
        return (f'Frames come over UDP into receive buffers that the kernel caps at {limit // 1024} KiB, less than a '
                f'frame. Fix: sudo sysctl -w net.core.rmem_max=16777216 (and the same line in /etc/sysctl.d/ to '
                'keep it), then restart this node.')
    return ('Frames come over UDP with large buffers: a camera on another host needs a faster link, or this '
            'machine is overloaded (see each process with top).')
