"""Dataset builder: crops with pseudo-ground truth, group-wise splits, resumable, bad videos skipped."""
import csv
from collections import Counter

import cv2
import numpy as np
import pytest

from training.build_dataset import Builder, groups, split_of
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
