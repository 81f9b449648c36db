"""State kept per tracked face (calibration, smoothing, stress windows, motion), that lives and dies
with its track id."""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

State = TypeVar('State')

# Seconds by which a frame's stamp must precede the latest one for time to have gone backwards (a
# replay restarted) rather than a message arriving out of order.
BACKWARD_JUMP = 1.0


class TrackStates(Generic[State]):
    """Per-track state that lives and dies with its id.

    A state is made on an id's first sight, forgotten `forget_after` seconds after the id was last
    seen, and every state is dropped when time jumps back by more than BACKWARD_JUMP (a bag replayed
    in a loop): a state never outlives its track, and a new track (ids are never reused) starts
    fresh. A frame stamped a little before the latest one (messages out of order, two publishers on
    one topic) is taken as it is: time stays at the latest stamp. With
    `max_states`, the least recently seen states are dropped beyond that many (many new ids within
    `forget_after`, as a flickering crowd gives, cannot grow memory without bound).
    """

    def __init__(self, make: Callable[[], State], forget_after: float, max_states: int | None = None) -> None:
        if forget_after <= 0:
            raise ValueError(f'forget_after must be > 0 seconds, got {forget_after}')
        self.make = make
        self.forget_after = forget_after
        self.max_states = max_states
        self._states: dict[str, tuple[float, State]] = {}
        self._time: float | None = None

    def new_frame(self, time: float) -> bool:
        """Start a frame at `time` (seconds): forget stale ids; True if time jumped back (all forgotten)."""
        went_back = self._time is not None and time < self._time - BACKWARD_JUMP
        if went_back:
            self._states.clear()
        self._time = time if went_back or self._time is None else max(time, self._time)
        self._states = {key: value for key, value in self._states.items() if time - value[0] <= self.forget_after}
        return went_back

    def seen(self, face_id: str) -> State:
        """The state of a face seen in this frame (made if new)."""
        if self._time is None:
            raise RuntimeError('call new_frame(time) before seen(id)')
        state = self._states.pop(face_id)[1] if face_id in self._states else self.make()
        self._states[face_id] = (self._time, state)  # last: the dict is ordered by when ids were seen
        while self.max_states is not None and len(self._states) > self.max_states:
            del self._states[next(iter(self._states))]
        return state

    def get(self, face_id: str) -> State | None:
        entry = self._states.get(face_id)
        return entry[1] if entry else None

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, face_id: str) -> bool:
        return face_id in self._states

    def __iter__(self):
        return iter(self._states)

    def clear(self) -> None:
        self._states.clear()
        self._time = None
