"""Dataset builder: crops with pseudo-ground truth, group-wise splits, resumable, bad videos skipped."""
import csv
from collections import Counter

import cv2
import numpy as np
import pytest

from fer3d_ros.core.affect.emotion import EMOTIONS
from training.build_dataset import Builder, groups, split_of
from training.emotion_data import FERPLUS_VOTES
from training.media import read_frames


def test_splits_are_by_group_and_close_to_70_15_15():
    counts = Counter(split_of(f'person_{k}') for k in range(3000))
    assert abs(counts['train'] / 3000 - 0.70) < 0.03 and abs(counts['test'] / 3000 - 0.15) < 0.03
    assert split_of('S010') == split_of('S010')


def test_an_unreadable_video_raises_a_clear_error(tmp_path):
    broken = tmp_path / 'broken.mp4'
    broken.write_bytes(b'\x00\x00\x00\x18ftypmp42 this is not a video')
    with pytest.raises(IOError, match='broken.mp4'):
        list(read_frames(broken))


def test_a_ckplus_subject_becomes_aligned_crops_with_expressions(tmp_path):
    builder = Builder(tmp_path)
    subject, paths = next((g, p) for g, p in groups('ckplus') if len(p) >= 3)
    outcome, count = builder.image_set('ckplus', subject, paths)
    assert count == len(paths), outcome
    assert builder.done('ckplus', subject)
    with open(builder.write_manifest()) as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == count and {r['split'] for r in rows} == {split_of(subject)}
    crop = cv2.imread(str(tmp_path / rows[0]['crop']))
    assert crop.shape == (224, 224, 3)
    expressions = np.array([[float(r[name]) for name in builder.model.expression_names] for r in rows])
    assert expressions.min() >= 0.0 and expressions.max() <= 1.0
    labels = [path.parent.name for path in paths]
    if 'neutral' in labels and len(set(labels)) > 1:  # apex frames are more expressive than neutral
        neutral = expressions[[label == 'neutral' for label in labels]].sum(axis=1).mean()
        apex = expressions[[label != 'neutral' for label in labels]].sum(axis=1).mean()
        assert apex > neutral


def test_ckplus_labels_never_reach_the_manifest(tmp_path):
    """The network must not see CK+ emotion labels (CK+ cross-validation of the classifier stays honest)."""
    builder = Builder(tmp_path)
    subject, paths = next(groups('ckplus'))
    builder.image_set('ckplus', subject, paths)
    with open(builder.write_manifest()) as file:
        rows = list(csv.DictReader(file))
    assert rows and all(r['label'] == '' and r['vote_neutral'] == '' and r['fit'] == 'image_set' for r in rows)


def test_ferplus_images_are_upscaled_registered_and_keep_their_votes(tmp_path):
    builder = Builder(tmp_path)
    group, rows = next(g for g in groups('ferplus') if g[0].startswith('FER2013Valid'))
    outcome, count = builder.build('ferplus', group, rows[:12])
    assert count >= 10, outcome  # 48 px faces: almost all found after the upscale
    with open(builder.write_manifest()) as file:
        written = list(csv.DictReader(file))
    assert {r['split'] for r in written} == {'val'} and {r['fit'] for r in written} == {'image'}
    by_name = {row[0]: row[2:12] for row in rows}
    first = written[0]
    number = int(first['crop'].rsplit('/', 1)[1].split('.')[0])
    assert [first[f'vote_{name}'] for name in FERPLUS_VOTES] == by_name[rows[number][0]]
    assert cv2.imread(str(tmp_path / first['crop'])).shape == (224, 224, 3)


def test_facial_expressions_people_keep_their_labels(tmp_path):
    builder = Builder(tmp_path)
    person, paths = next((g, p) for g, p in groups('faces') if len(p) >= 2)
    outcome, count = builder.image_set('faces', person, paths)
    assert count >= 1, outcome
    with open(builder.write_manifest()) as file:
        rows = list(csv.DictReader(file))
    assert all(r['label'] in (*EMOTIONS, '') for r in rows) and rows[0]['label'] == builder.labels[paths[0].name]
