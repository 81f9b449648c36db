"""The camera's transport watched from the frames that arrive: missing frames and a growing delay."""
import math

import pytest

from fer3d_ros.core.frame_arrivals import MIN_MISSING_FRAMES, WINDOW, ArrivalMonitor

NAN = math.nan


def feed(monitor: ArrivalMonitor, sequences, start: float = 0.0, delay: float = 0.03, publisher: bytes = b'cam',
         rate: float = 30.0) -> float:
    """Frames with these sequence numbers arriving at `rate`; returns the time after the last."""
    now = start
    for sequence in sequences:
        monitor.record(publisher, sequence, delay, now, 2_764_800)
        now += 1 / rate
    return now


def test_a_camera_whose_every_frame_arrives_is_fine():
    monitor = ArrivalMonitor()
    now = feed(monitor, range(1, 181))
    assert monitor.check(now + 0.1) is None
    assert monitor.check(now + 0.5) is False  # a window has not ended since


def test_frames_that_never_arrive_are_counted_from_the_sequence_numbers():
    monitor = ArrivalMonitor()
    now = feed(monitor, range(1, 151, 3))  # two of every three frames lost
    problem = monitor.check(now + WINDOW)
    assert (problem.published, problem.missing) == (148, 98)
    assert problem.missing_fraction == pytest.approx(98 / 148)
    assert '66% of the frames published' in problem.describe()


def test_frames_before_the_first_and_a_restarted_publisher_are_not_missing():
    monitor = ArrivalMonitor()
    now = feed(monitor, range(500, 650)) + 0.1  # a camera started long before the node
    assert monitor.check(now) is None
    now = feed(monitor, range(1, 151), start=now) + 0.1  # the camera restarted
    assert monitor.check(now) is None


def test_a_few_missing_frames_are_noise():
    monitor = ArrivalMonitor()
    sequences = [s for s in range(1, 200) if s % 50]  # 3 of 199 missing
    assert 199 - len(sequences) < MIN_MISSING_FRAMES
    assert monitor.check(feed(monitor, sequences) + 0.1) is None


def test_a_delay_that_grows_is_a_problem_and_a_steady_one_is_not():
    monitor = ArrivalMonitor()
    now = feed(monitor, range(1, 151), delay=0.040) + 0.1
    assert monitor.check(now) is None
    now = feed(monitor, range(151, 301), start=now, delay=0.060) + 0.1  # 20 ms more: noise
    assert monitor.check(now) is None
    now = feed(monitor, range(301, 451), start=now, delay=0.300) + 0.1
    problem = monitor.check(now)
    assert problem.missing == 0 and problem.delay_growth == pytest.approx(0.26)
    assert 'frames arrive 260 ms later than at first' in problem.describe()


def test_frames_without_sequence_numbers_or_stamps_say_nothing_they_cannot_know():
    monitor = ArrivalMonitor()
    now = 0.0
    for _ in range(200):
        monitor.record(b'', None, NAN, now, 100)
        now += 1 / 30
    assert monitor.check(now + 0.1) is None


def test_two_publishers_are_followed_apart():
    monitor = ArrivalMonitor()
    now = feed(monitor, range(1, 76), publisher=b'left')
    now = feed(monitor, range(1, 76, 2), start=now, publisher=b'right')
    problem = monitor.check(now + WINDOW)
    assert (problem.published, problem.missing) == (75 + 75, 37)  # right: 38 of 75
