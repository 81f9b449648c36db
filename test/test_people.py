"""Who each track is: people recognised again, never confused, split when a track changes face,
forgotten when asked or after a while; the state that belongs to a person, handed over from its track."""
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import pytest

from fer3d_ros.core.people import Describer, DescriptorWorker, People, PersonSettings, face_chip
from fer3d_ros.core.track_states import TrackStates
from fer3d_ros.core.video import read_frames
from fer3d_ros.tools.sample_data import pyfeat_media


class Oracle:
    """A descriptor worker whose chips are labelled: the descriptor of 'who' is their own unit vector."""

    version = 'test'

    def __init__(self) -> None:
        self.who = {}

    def submit(self, chip) -> Future:
        future = Future()
        vector = np.zeros(128, np.float32)
        vector[self.who[int(chip)]] = 1.0
        future.set_result(vector + np.random.default_rng(int(chip)).normal(0, 0.01, 128).astype(np.float32))
        return future


@dataclass
class Face:
    id: str
    confirmed: bool = True
    box: tuple = (0, 0, 10, 10)
    landmarks: np.ndarray = None


@pytest.fixture
def people(monkeypatch):
    oracle = Oracle()
    frame = {'n': 0}

    def chip(image, box, landmarks):  # the chip is a ticket naming whose face it is
        frame['n'] += 1
        oracle.who[frame['n']] = image[landmarks]
        return frame['n']
    monkeypatch.setattr('fer3d_ros.core.people.face_chip', chip)
    return People(PersonSettings(), worker=oracle)


def see(people, time, faces):
    """faces: {track id: who} in view at `time`; the 'image' maps each track to who it shows."""
    image = {face_id: who for face_id, who in faces.items()}
    return people.update(time, image, [Face(face_id, landmarks=face_id) for face_id in faces])


def test_a_returning_person_gets_their_id_back_and_a_new_one_gets_a_new_id(people):
    assert see(people, 0.0, {'f1': 0}) == {}  # described now, named from the next frame
    first = see(people, 0.1, {'f1': 0})['f1'][0]
    assert first == 'p0001'
    see(people, 5.0, {})  # f1 leaves
    assert see(people, 7.0, {'f2': 0}) == {} and see(people, 7.1, {'f2': 0})['f2'][0] == first
    see(people, 9.0, {'f3': 1})
    assert see(people, 9.1, {'f3': 1})['f3'][0] == 'p0002'


def test_two_tracks_at_once_are_never_one_person_and_a_track_that_changes_face_is_split(people):
    see(people, 0.0, {'f1': 0, 'f2': 0})  # two views of one face at once (a mirror, a photo)
    named = see(people, 0.1, {'f1': 0, 'f2': 0})
    assert named['f1'][0] != named['f2'][0]
    see(people, 0.2, {'f3': 2})
    before = see(people, 0.3, {'f3': 2})['f3'][0]
    for time in np.arange(0.5, 6.0, 0.5):  # the tracker followed f3 onto another face
        named = see(people, time, {'f3': 3})
    assert named['f3'][0] not in (before, '') and named['f3'][0] not in (named.get('f1'), named.get('f2'))


def test_people_are_forgotten_after_a_while_and_on_request(people):
    see(people, 0.0, {'f1': 0, 'f2': 1})
    see(people, 0.1, {'f1': 0, 'f2': 1})
    assert people.forget('p0001') == ['p0001'] and 'p0001' not in people.people
    see(people, 0.2 + people.settings.forget_after + 1, {})
    assert people.people == {} and people.take_forgotten() == ['p0001', 'p0002']


def test_the_gallery_is_written_only_when_asked_and_refused_for_another_model(people, tmp_path):
    see(people, 0.0, {'f1': 0})
    see(people, 0.1, {'f1': 0})
    path = tmp_path / 'people.npz'
    people.save(path)
    again = People(PersonSettings(gallery=str(path)), worker=people.worker)
    assert list(again.people) == ['p0001'] and again._next_id == 2
    people.worker.version = 'another model'
    with pytest.raises(ValueError, match='another version or descriptor model'):
        People(PersonSettings(gallery=str(path)), worker=people.worker)


def test_a_track_state_becomes_its_persons_and_a_known_person_keeps_theirs():
    states = TrackStates(dict, forget_after=2.0)
    states.new_frame(0.0)
    states.seen('f1')['neutral'] = 'learned by f1'
    states.seen_face('f1', 'p0001')  # f1 recognised: its state is p0001's
    assert 'f1' not in states and states.get('p0001') == {'neutral': 'learned by f1'}
    states.new_frame(60.0)  # p0001 away for a minute: a person's state stays
    states.seen('f2')['neutral'] = 'learned by f2'
    assert states.seen_face('f2', 'p0001') == {'neutral': 'learned by f1'}
    states.seen_face('f3', 'p0002')  # a new person starts from nothing
    assert states.get('p0002') == {}
    assert states.forget('p0001') and 'p0001' not in states


def test_the_worker_process_computes_dlibs_descriptor():
    frame = next(read_frames(pyfeat_media('WolfgangLanger_Pexels.mp4')))
    from fer3d_ros.core.frontend.front_end import FaceFrontEnd
    (face,) = FaceFrontEnd().process(frame).faces
    chip = face_chip(frame, face.box, face.landmarks)
    worker = DescriptorWorker()
    try:
        first, second = worker.submit(chip).result(30), worker.submit(chip).result(30)
    finally:
        worker.close()
    assert first.shape == (128,) and np.allclose(first, second)
    assert np.allclose(first, Describer()(chip), atol=1e-5)  # what dlib gives in this process
