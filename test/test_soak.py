"""The soak as CI keeps it: two minutes of bench/soak.py (the launch file per node, the soak camera's
clips, empty rooms and groups of people, random forgets, lifecycle pauses and malformed inputs).
`make soak` runs the hour."""
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / 'bench'


def test_two_minutes_as_a_robot_lives_them_keep_every_frame_memory_and_the_gallery_in_bounds():
    result = subprocess.run([sys.executable, str(BENCH / 'soak.py'), '--minutes', '2', '--seed', '1'],
                            capture_output=True, text=True, timeout=600, cwd=BENCH)
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert 'every goal met' in result.stdout
