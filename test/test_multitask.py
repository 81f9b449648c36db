"""DeepExp3D multi-task training: losses where each row has a target, the emotion head's bottleneck,
votes to distributions, packing, resume and export."""
import csv
import json

import cv2
import numpy as np
import pytest
import torch

from fer3d_ros.core.affect.emotion import EMOTIONS, default_classifier
from fer3d_ros.core.expression.morphable_model import load_landmark_model
from fer3d_ros.core.files import ModelFileError
from training.build_dataset import VOTE_COLUMNS
from training.deepexp3d import DeepExp3D
from training.device_pack import pack, unpack
from training.select_emotion_classifier import Recipe, ckplus_cv, fit_mlp, subsample
from training.train_multitask import EmotionHead, load_rows, losses, main, packed_crops, vote_distribution

MODEL = load_landmark_model()
NAMES = list(MODEL.expression_names)
ARGS = ['--arch', 'mobilenetv2_050', '--input-size', '32', '--batch-size', '4', '--workers', '0', '--threads', '1']


def write_manifest(root, count=24):
    """Random 224 crops: FER+-like rows with votes, video-fit rows with targets, labelled faces."""
    rng = np.random.default_rng(0)
    (root / 'crops').mkdir(parents=True)
    header = ['crop', 'source', 'group', 'split', 'reprojection_px', 'roll', 'pitch', 'yaw', *NAMES, 'fit',
              *VOTE_COLUMNS, 'label']
    rows = []
    for k in range(count):
        cv2.imwrite(str(root / 'crops' / f'{k}.jpg'), rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
        split = 'train' if k < 16 else 'val'
        source = ('ferplus', 'clips', 'faces')[k % 3]
        votes = [str(v) for v in rng.multinomial(10, [0.5, 0.3, 0.1, 0.1, 0, 0, 0, 0, 0, 0])] \
            if source == 'ferplus' else [''] * 10
        fit = {'ferplus': 'image', 'clips': 'video', 'faces': 'image_set'}[source]
        rows.append([f'crops/{k}.jpg', source, f'g{k}', split, 1.0, 0, 0, 0, *rng.uniform(0, 1, len(NAMES)), fit,
                     *votes, 'happy' if source == 'faces' else ''])
    with open(root / 'manifest.csv', 'w', newline='') as file:
        csv.writer(file).writerows([header, *rows])
    return root / 'manifest.csv'


def test_votes_become_a_distribution_over_the_seven_emotions():
    # neutral happiness surprise sadness anger disgust fear contempt unknown not-a-face
    distribution, majority = vote_distribution(['4', '0', '0', '1', '3', '0', '0', '1', '1', '0'])
    assert distribution == pytest.approx(np.array([4, 0, 1, 0, 0, 0, 3]) / 8)  # neutral, happy, sad, ... anger
    assert EMOTIONS[majority] == 'neutral'
    assert vote_distribution(['2', '2', '0', '0', '0', '0', '0', '0', '6', '0'])[1] == -1  # unknown wins
    assert vote_distribution([''] * 10)[0].sum() == 0


def test_the_head_sees_only_the_observable_weights():
    head = EmotionHead(MODEL.observable_expressions())
    coefficients = torch.rand(5, 55)
    hidden = [k for k in range(55) if k not in set(MODEL.observable_expressions())]
    changed = coefficients.clone()
    changed[:, hidden] = torch.rand(5, len(hidden))
    assert torch.equal(head(coefficients), head(changed)) and len(hidden) == 13


def test_rows_without_a_target_or_an_emotion_add_no_loss(tmp_path):
    manifest = write_manifest(tmp_path)
    rows = load_rows(manifest, NAMES, {'video': 1.0, 'image_set': 1.0, 'image': 0.3}, label_weight=0.3)
    assert np.allclose(rows.target_weight[rows.source == 'ferplus'], 0.3)
    assert set(rows.emotion_weight[rows.source == 'clips']) == {0.0}  # clips: no emotion
    faces = rows.source == 'faces'
    assert np.allclose(rows.emotion_weight[faces], 0.3)
    assert (rows.emotion[faces].argmax(1) == EMOTIONS.index('happy')).all()
    model, head = DeepExp3D('mobilenetv2_050'), EmotionHead(MODEL.observable_expressions())
    batch = (torch.rand(2, 3, 32, 32) * 255, torch.rand(2, 55), torch.zeros(2), torch.zeros(2, 7), torch.zeros(2))
    regression, emotion, _ = losses(model, head, batch, torch.device('cpu'))
    assert regression.item() == 0.0 and emotion.item() == 0.0


def test_crops_are_packed_once(tmp_path):
    manifest = write_manifest(tmp_path, count=3)
    rows = load_rows(manifest, NAMES, {}, 0.0)
    pack = packed_crops(manifest, rows.crops, size=32)
    assert pack.shape == (3, 32, 32, 3) and pack.dtype == np.uint8
    stamp = (tmp_path / 'pack_32.npy').stat().st_mtime_ns
    assert np.array_equal(packed_crops(manifest, rows.crops, size=32), pack)
    assert (tmp_path / 'pack_32.npy').stat().st_mtime_ns == stamp


def test_the_crops_travel_packed_and_train_there_without_the_crop_files(tmp_path):
    manifest = write_manifest(tmp_path / 'here')
    with open(manifest, newline='') as file:
        table = list(csv.reader(file))
    table[1][table[0].index('split')] = 'test'  # held out: stays here
    with open(manifest, 'w', newline='') as file:
        csv.writer(file).writerows(table)
    pack(manifest, tmp_path / 'crops.npz', quality=101)  # lossless, to compare pixels
    there = unpack(tmp_path / 'crops.npz', tmp_path / 'there')
    here, travelled = load_rows(manifest, NAMES, {}, 0.0), load_rows(there, NAMES, {}, 0.0)
    assert travelled.crops == here.crops[1:] and np.array_equal(travelled.targets, here.targets[1:])
    assert np.array_equal(packed_crops(there, travelled.crops), packed_crops(manifest, here.crops)[1:])
    main([*ARGS, '--manifest', str(there), '--epochs', '1', '--out', str(tmp_path / 'run')])
    assert (tmp_path / 'run' / 'best.pt').is_file() and not (tmp_path / 'there' / 'crops').exists()


def test_training_resumes_and_exports_the_network_and_its_head(tmp_path, capsys):
    manifest = write_manifest(tmp_path / 'dataset')
    out = tmp_path / 'run'
    main([*ARGS, '--manifest', str(manifest), '--epochs', '1', '--out', str(out)])
    main([*ARGS, '--manifest', str(manifest), '--epochs', '2', '--out', str(out), '--resume'])
    assert 'after epoch 1' in capsys.readouterr().out
    with open(out / 'log.csv') as file:
        assert [int(row['epoch']) for row in csv.DictReader(file)] == [1, 2]
    card = json.loads((out / 'deepexp3d_mnv2x05_32.json').read_text())
    assert card['architecture'] == 'mobilenetv2_050' and card['metrics']['onnx_max_abs_diff'] < 1e-4
    with np.load(out / 'emotion_head.npz') as head:
        assert list(head['classes']) == list(EMOTIONS) and head['w1'].shape[0] == 42


def test_a_fine_tune_starts_from_the_checkpoint_it_is_given(tmp_path):
    manifest = write_manifest(tmp_path / 'dataset')
    main([*ARGS, '--manifest', str(manifest), '--epochs', '1', '--out', str(tmp_path / 'run')])
    main([*ARGS, '--manifest', str(manifest), '--epochs', '1', '--out', str(tmp_path / 'fine'), '--lr', '1e-12',
          '--init', str(tmp_path / 'run' / 'best.pt')])
    start, tuned = (torch.load(tmp_path / run / 'best.pt', weights_only=False) for run in ('run', 'fine'))
    weights = [name for name, value in start['model'].items() if name.endswith('.weight') and value.ndim == 4]
    assert all(torch.allclose(start['model'][name], tuned['model'][name], atol=1e-8) for name in weights)
    assert torch.allclose(start['head']['layers.0.weight'], tuned['head']['layers.0.weight'], atol=1e-8)
    assert tuned['args']['init'].endswith('best.pt')


def test_the_exported_head_gives_emotion_node_the_probabilities_torch_gives(tmp_path):
    head = EmotionHead(MODEL.observable_expressions()).eval()
    head.numpy_model('mlp-head-test', NAMES).save(tmp_path / 'head.npz')
    classifier = default_classifier(tmp_path / 'head.npz')
    coefficients = np.random.default_rng(0).uniform(0, 1, (6, 55))
    with torch.no_grad():
        expected = torch.softmax(head(torch.from_numpy(coefficients).float()), dim=1).numpy()
    assert np.abs(classifier.predict_proba(coefficients) - expected).max() < 1e-5
    assert 'MLP 42-64-7' in classifier.model.describe()
    with pytest.raises(ModelFileError, match='calibrated'):
        default_classifier(tmp_path / 'head.npz', features='calibrated')


def test_a_refitted_head_learns_separable_coefficients_and_subject_folds_hold_subjects_out():
    rng = np.random.default_rng(0)
    observable = MODEL.observable_expressions()
    centres = rng.uniform(0, 1, (7, 55))
    y = np.repeat(np.arange(7), 100)
    x = np.clip(centres[y] + rng.normal(0, 0.05, (len(y), 55)), 0, 1)
    x[:, [k for k in range(55) if k not in set(observable)]] = 0.0  # as the pseudo-ground truth keeps them
    groups = np.array([f'S{k % 20}' for k in range(len(y))])
    fit = lambda a, b: fit_mlp(a, b, tuple(NAMES), 'test')
    predicted = ckplus_cv(fit, x, y, groups, x[:0], y[:0], folds=5)
    assert np.mean(predicted == y) > 0.9
    assert len(subsample(y, 70)) == 70 and set(np.bincount(y[subsample(y, 70)])) == {10}


def test_a_classifier_recipe_is_read_back_from_its_model_id_so_evaluation_refits_it_the_same_way():
    for recipe in (Recipe('mlp'), Recipe('mlp', ck_repeat=29), Recipe('mlp', ck_repeat=10, seeds=5),
                   Recipe('ecoc-svm')):
        assert Recipe.from_model_id(recipe.model_id('deepexp3d_mnv2_96')) == recipe
    assert Recipe.from_model_id('mlp-ferplus-ckplusx10-deepexp3d_mnv2_96') == Recipe('mlp', ck_repeat=10)
    assert Recipe.from_model_id('mlp-head-deepexp3d_mnv2_96') is None


def test_an_ensemble_of_mlps_is_one_wider_mlp_whose_logits_are_the_mean_of_its_members():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(7), 30)
    x = np.clip(rng.uniform(0, 1, (7, 55))[y] + rng.normal(0, 0.1, (len(y), 55)), 0, 1)
    ensemble, first = fit_mlp(x, y, tuple(NAMES), 'e', seeds=2), fit_mlp(x, y, tuple(NAMES), 's')
    assert ensemble.w1.shape[1] == 128 and np.array_equal(ensemble.w1[:, :64], first.w1)
    logits = lambda w1, b1, w2, b2: np.maximum(x[:, ensemble.observable] @ w1 + b1, 0) @ w2 + b2
    members = [logits(ensemble.w1[:, half], ensemble.b1[half], 2 * ensemble.w2[half], 0)
               for half in (slice(0, 64), slice(64, 128))]
    expected = np.mean(members, axis=0) + ensemble.b2
    assert np.allclose(np.log(ensemble.probabilities(x)) - np.log(ensemble.probabilities(x))[:, :1],
                       expected - expected[:, :1])
    assert np.allclose(logits(first.w1, first.b1, first.w2, first.b2), members[0] + first.b2)


def test_a_recentred_head_reads_calibrated_faces_as_the_population_neutral_plus_the_expression(tmp_path):
    head = EmotionHead(MODEL.observable_expressions()).eval().numpy_model('raw-head', NAMES)
    neutral = np.random.default_rng(1).uniform(0, 0.3, 55)
    calibrated = head.for_calibrated(neutral, 'recentred')
    calibrated.save(tmp_path / 'calibrated.npz')
    loaded = default_classifier(tmp_path / 'calibrated.npz', features='calibrated')
    delta = np.random.default_rng(2).uniform(-0.2, 0.2, (3, 55))
    assert np.allclose(loaded.predict_proba(delta), head.probabilities(neutral + delta))
