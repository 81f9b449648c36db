"""`fer3d-bag fleet`: bags evaluated in parallel on Dask workers, in process (no DDS), with the same
per-bag results as `fer3d-bag eval` replays them through real topics one at a time; resumable, and
a failing bag reported without stopping the others."""
import json

import pytest

from fer3d_ros.tools.bag import main
from fer3d_ros.tools.fleet import RESULT_KEYS
from training.paths import SHARED

FRAMES = 20


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    folder = tmp_path_factory.mktemp('fleet')
    labels = folder / 'labels.csv'
    labels.write_text('frame,label\n0,neutral\n10,happy\n')
    for clip in ('vr_1', 'lp_d9', 'vr_3'):
        assert main(['fer3d-bag', 'record', str(SHARED / 'videos' / f'{clip}.mp4'), str(folder / 'bags' / clip),
                     '--labels', str(labels), '--max-frames', str(FRAMES), '--start-time', '1000']) == 0
    (folder / 'bags' / 'broken').mkdir()
    (folder / 'bags' / 'broken' / 'broken_0.mcap').write_bytes(b'not a bag')  # looks like one, is not
    return folder


@pytest.fixture(scope='module')
def fleet(bags):
    output = bags / 'reports'
    status = main(['fer3d-bag', 'fleet', str(bags / 'bags'), '--output', str(output), '--workers', '2'])
    return status, output


def test_a_failing_bag_is_reported_and_the_others_are_evaluated(fleet, capsys):
    status, output = fleet
    assert status == 1  # one bag failed
    report = json.loads((output / 'report.json').read_text())
    assert report['total']['reported'] == 3 and report['total']['failed'] == 1
    assert set(report['bags']) == {'vr_1', 'lp_d9', 'vr_3'} and 'broken' in report['failures']
    assert all(summary['frames'] == FRAMES and summary['answered'] == FRAMES for summary in report['bags'].values())
    assert report['total']['labelled_frames'] == 3 * FRAMES


def test_each_bag_gets_the_results_of_fer3d_bag_eval(fleet, bags):
    _, output = fleet
    for name in ('vr_1', 'lp_d9'):
        assert main(['fer3d-bag', 'eval', str(bags / 'bags' / name), '--output', str(bags / f'{name}_eval'),
                     '--ros-args', '-p', 'expression_node:backend:=onnxruntime']) == 0
        through_topics = json.loads((bags / f'{name}_eval' / 'report.json').read_text())
        in_process = json.loads((output / f'{name}.json').read_text())
        assert {key: in_process[key] for key in RESULT_KEYS} == {key: through_topics[key] for key in RESULT_KEYS}


def test_a_second_run_skips_the_bags_done_and_retries_the_failed_one(fleet, bags, capsys):
    _, output = fleet
    before = (output / 'vr_1.json').stat().st_mtime_ns
    capsys.readouterr()
    assert main(['fer3d-bag', 'fleet', str(bags / 'bags'), '--output', str(output), '--workers', '1']) == 1
    printed = capsys.readouterr().out
    assert '4 bags, 3 already reported' in printed and '1 to evaluate' in printed
    assert (output / 'vr_1.json').stat().st_mtime_ns == before


def test_no_bags_is_a_clear_error(tmp_path, capsys):
    assert main(['fer3d-bag', 'fleet', str(tmp_path / 'missing'), '--output', str(tmp_path / 'out')]) == 2
    assert 'neither a bag nor a folder of bags' in capsys.readouterr().err
