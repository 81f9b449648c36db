"""Is the camera's transport keeping up? Frames that never arrive, and a delay that grows.

A camera's frames can go missing before any node sees them: with Fast DDS's defaults a frame larger
than the camera's 512 KiB shared-memory segment travels in fragments, lost fragments wait for the
reliable protocol's repair (up to its 3 s heartbeat), and a 1280x720 camera at 30 frames/s fell
from 300 to ~110 frames per 10 s within a minute with nothing said (docs/performance.md). The
publisher's sequence numbers tell how many frames it sent; the stamps, how late they arrive.

ArrivalMonitor is given every frame taken off the queue and, every WINDOW seconds, says whether too
many went missing or the delay from stamp to arrival grew, with the figures a message needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WINDOW = 5.0  # seconds between two checks
MIN_MISSING_FRACTION = 0.1  # of the frames published since the last check
MIN_MISSING_FRAMES = 5  # fewer is noise (a restart, a discovery hiccup)
MAX_DELAY_GROWTH = 0.1  # seconds the median delay may exceed the lowest seen before it counts


@dataclass(frozen=True)
class ArrivalProblem:
    """What went wrong over the last window."""
    published: int  # frames the publishers sent in the window (from their sequence numbers)
    missing: int  # of those, frames that never reached the node
    delay_growth: float  # seconds the median delay exceeds the lowest window median seen (0 if unknown)
    frame_bytes: int  # size of the latest frame

    @property
    def missing_fraction(self) -> float:
        return self.missing / self.published if self.published else 0.0

    def describe(self) -> str:
        """The facts, in words, e.g. '38 % of the frames published in the last 5 s did not arrive'."""
        parts = []
        if self.missing:
            parts.append(f'{self.missing_fraction:.0%} of the frames published in the last {WINDOW:g} s '
                         f'({self.missing} of {self.published}) did not arrive')
        if self.delay_growth > MAX_DELAY_GROWTH:
            parts.append(f'frames arrive {self.delay_growth * 1e3:.0f} ms later than at first')
        return ' and '.join(parts)


@dataclass
class ArrivalMonitor:
    """Frames taken off one subscription's queue, checked every WINDOW seconds of arrival time."""
    window: float = WINDOW
    _last_sequence: dict[bytes, int] = field(default_factory=dict)  # per publisher, at the last check
    _latest_sequence: dict[bytes, int] = field(default_factory=dict)
    _received: int = 0  # since the last check, of publishers with sequence numbers
    _delays: list[float] = field(default_factory=list)
    _lowest_delay: float = float('inf')  # the lowest window median so far
    _window_start: float | None = None
    _frame_bytes: int = 0

    def record(self, publisher: bytes, sequence: int | None, delay: float, now: float, frame_bytes: int) -> None:
        """One frame taken off the queue at `now` (a steady clock, as `check` gets it): `sequence` None
        where the middleware gives none, `delay` from its stamp to now (NaN where the stamp is on
        another clock, e.g. simulated time)."""
        if self._window_start is None:
            self._window_start = now
        self._frame_bytes = frame_bytes
        if sequence is not None:
            latest = self._latest_sequence.get(publisher)
            if latest is not None and sequence < latest:  # the publisher restarted: count from here
                self._last_sequence[publisher] = sequence - 1
            elif publisher not in self._last_sequence:
                self._last_sequence[publisher] = sequence - 1  # frames before the first are not ours to count
            self._latest_sequence[publisher] = sequence
            self._received += 1
        if np.isfinite(delay):
            self._delays.append(delay)

    def check(self, now: float) -> ArrivalProblem | None | bool:
        """At most once a window: an ArrivalProblem, None when all is well, or False when the window
        has not ended yet (nothing to say)."""
        if self._window_start is None or now - self._window_start < self.window:
            return False
        published = sum(latest - self._last_sequence[publisher]
                        for publisher, latest in self._latest_sequence.items())
        missing = max(0, published - self._received)
        growth = 0.0
        if len(self._delays) >= 3:
            median = float(np.median(self._delays))
            growth = max(0.0, median - self._lowest_delay) if np.isfinite(self._lowest_delay) else 0.0
            self._lowest_delay = min(self._lowest_delay, median)
        self._last_sequence = dict(self._latest_sequence)
        self._received, self._delays, self._window_start = 0, [], now
        lossy = missing >= MIN_MISSING_FRAMES and missing >= MIN_MISSING_FRACTION * published
        if lossy or growth > MAX_DELAY_GROWTH:
            return ArrivalProblem(published, missing if lossy else 0, growth, self._frame_bytes)
        return None
