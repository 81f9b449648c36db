"""State kept per tracked face (calibration, smoothing, stress windows, motion), that lives and dies
with its track id."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

State = TypeVar('State')

# Seconds by which a frame's stamp must precede the latest one for time to have gone backwards (a
# replay restarted) rather than a message arriving out of order.
BACKWARD_JUMP = 1.0


class TrackStates(Generic[State]):
    """State kept per track, or per person once the track is recognised.

    A track's state is made on its id's first sight, forgotten `forget_after` seconds after the id
    was last seen: it never outlives its track, and a new track (ids are never reused) starts fresh.
    A person's state (`seen(person_id, person=True)`, or a track's state handed over by `rename`)
    stays while the person is away, until `forget(person_id)` (face_node forgets people it has not
    seen for person.forget_after) or beyond `max_people` the least recently seen. Every state is
    dropped when time jumps back by more than BACKWARD_JUMP (a bag replayed in a loop); a frame
    stamped a little before the latest one (messages out of order, two publishers on one topic) is
    taken as it is: time stays at the latest stamp. With `max_states`, the least recently seen
    tracks' states are dropped beyond that many (a flickering crowd cannot grow memory without bound).
    """

    def __init__(self, make: Callable[[], State], forget_after: float, max_states: int | None = None,
                 max_people: int | None = 200) -> None:
        if forget_after <= 0:
            raise ValueError(f'forget_after must be > 0 seconds, got {forget_after}')
        self.make = make
        self.forget_after = forget_after
        self.max_states = max_states
        self.max_people = max_people
        self._states: dict[str, tuple[float, State, bool]] = {}  # id -> (last seen, state, a person's)
        self._time: float | None = None

    def new_frame(self, time: float) -> bool:
        """Start a frame at `time` (seconds): forget stale tracks; True if time jumped back (all forgotten)."""
        went_back = self._time is not None and time < self._time - BACKWARD_JUMP
        if went_back:
            self._states.clear()
        self._time = time if went_back or self._time is None else max(time, self._time)
        self._states = {key: value for key, value in self._states.items()
                        if value[2] or time - value[0] <= self.forget_after}
        return went_back

    def seen(self, key: str, person: bool = False) -> State:
        """The state of a track (or a person) seen in this frame (made if new)."""
        if self._time is None:
            raise RuntimeError('call new_frame(time) before seen(id)')
        state = self._states.pop(key)[1] if key in self._states else self.make()
        self._states[key] = (self._time, state, person)  # last: the dict is ordered by when ids were seen
        self._bound()
        return state

    def seen_face(self, face_id: str, person_id: str = '') -> State:
        """The state of a face seen in this frame: its person's once it is recognised (the track's
        state handed over if the person has none), else its track's."""
        if person_id:
            self.rename(face_id, person_id)
            return self.seen(person_id, person=True)
        return self.seen(face_id)

    def rename(self, track_id: str, person_id: str) -> None:
        """A track recognised as a person: the person's state carries on if they have one (the track's is
        dropped), else the track's becomes the person's."""
        entry = self._states.pop(track_id, None)
        if entry is not None and person_id not in self._states:
            self._states[person_id] = (entry[0], entry[1], True)
            self._bound()

    def forget(self, key: str) -> bool:
        """Drop one id's state now (a forgotten person); True if there was one."""
        return self._states.pop(key, None) is not None

    def _bound(self) -> None:
        for person, limit in ((False, self.max_states), (True, self.max_people)):
            keys = [key for key, value in self._states.items() if value[2] == person]
            for key in keys[:max(0, len(keys) - limit)] if limit is not None else []:
                del self._states[key]

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


def averaging_weight(elapsed: float, time_constant: float) -> float:
    """The weight of a new value in an exponential average by stamp time, 1 - exp(-elapsed / time_constant),
    so that averaging does not depend on the frame rate; a frame stamped before the last (out of order)
    weighs as if simultaneous; time_constant 0: the new value alone."""
    return 1.0 - math.exp(-max(elapsed, 0.0) / time_constant) if time_constant > 0 else 1.0
