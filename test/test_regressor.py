"""DeepExp3D regressor: training end to end on a synthetic manifest, resume, ONNX export, flip labels."""
import csv
import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from fer3d_ros.core.expression.morphable_model import load_landmark_model
from training.augmentation import Augmentation, mirror_permutation
from training.deepexp3d import DeepExp3D
from training.export_regressor import export_onnx, load_checkpoint
from training.train_regressor import CropDataset, main

NAMES = list(load_landmark_model().expression_names)
ARGS = ['--arch', 'resnet18', '--input-size', '32', '--batch-size', '8', '--workers', '0', '--threads', '1']


def write_manifest(root, count=16):
    """`count` random 224 crops: 10 train, 3 val, 3 test; targets random in [0, 1]."""
    rng = np.random.default_rng(0)
    (root / 'crops').mkdir(parents=True)
    header = ['crop', 'source', 'group', 'split', 'reprojection_px', 'roll', 'pitch', 'yaw', *NAMES]
    rows = []
    for k in range(count):
        cv2.imwrite(str(root / 'crops' / f'{k}.jpg'), rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
        split = 'train' if k < 10 else 'val' if k < 13 else 'test'
        rows.append([f'crops/{k}.jpg', 'faces', f'p{k}', split, 1.0, 0, 0, 0, *rng.uniform(0, 1, len(NAMES))])
    with open(root / 'manifest.csv', 'w', newline='') as file:
        csv.writer(file).writerows([header, *rows])
    return root / 'manifest.csv'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 2-epoch ResNet-18 run at 32 px; returns its output folder and manifest."""
    root = tmp_path_factory.mktemp('regressor')
    manifest = write_manifest(root / 'dataset')
    out = root / 'run'
    main([*ARGS, '--manifest', str(manifest), '--epochs', '2', '--out', str(out)])
    return out, manifest


def test_training_writes_checkpoints_log_plot_onnx_and_card(trained):
    out, _ = trained
    for name in ('last.pt', 'best.pt', 'log.csv', 'loss.png', 'deepexp3d_r18_32.onnx', 'deepexp3d_r18_32.json'):
        assert (out / name).is_file(), name
    with open(out / 'log.csv') as file:
        assert [int(row['epoch']) for row in csv.DictReader(file)] == [1, 2]
    card = json.loads((out / 'deepexp3d_r18_32.json').read_text())
    assert card['model_id'] == 'deepexp3d_r18_32' and card['architecture'] == 'resnet18'
    assert card['input_size'] == 32 and card['expression_names'] == NAMES and len(card['onnx_sha256']) == 64
    assert card['train']['n_train'] == 10 and card['metrics']['onnx_max_abs_diff'] < 1e-4
    assert card['metrics']['test_mse'] is not None


def test_resume_continues_from_the_saved_epoch(trained, capsys):
    out, manifest = trained
    main([*ARGS, '--manifest', str(manifest), '--epochs', '3', '--out', str(out), '--resume'])
    assert 'after epoch 2' in capsys.readouterr().out
    assert torch.load(out / 'last.pt', weights_only=False)['epoch'] == 3
    with open(out / 'log.csv') as file:
        assert [int(row['epoch']) for row in csv.DictReader(file)] == [1, 2, 3]


@pytest.mark.parametrize('batch', [1, 3])
def test_onnx_matches_torch_for_any_batch_and_stays_in_0_1(trained, batch):
    out, _ = trained
    model, _ = load_checkpoint(out / 'best.pt')
    image = np.random.default_rng(batch).uniform(0, 255, (batch, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(out / 'deepexp3d_r18_32.onnx'), providers=['CPUExecutionProvider'])
    assert [i.name for i in session.get_inputs()] == ['image']
    got = session.run(['expression'], {'image': image})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(image)).numpy()
    assert got.shape == (batch, 55) and np.abs(got - expected).max() < 1e-4
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_network_flips_bgr_to_rgb_and_normalises():
    model = DeepExp3D('resnet18').eval()
    bgr = torch.tensor([10.0, 128.0, 250.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    rgb = torch.tensor([250.0, 128.0, 10.0]) / 255
    expected = (rgb - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(model.normalise(bgr)[0, :, 0, 0], expected, atol=1e-5)


def test_export_to_a_custom_path_with_a_card(tmp_path):
    model = DeepExp3D('resnet18').eval()
    card = export_onnx(model, tmp_path / 'm.onnx', 32, 'm', {'train': {'epochs': 0}})
    assert card['metrics']['onnx_max_abs_diff'] < 1e-4 and card['train'] == {'epochs': 0}
    assert json.loads((tmp_path / 'm.json').read_text())['onnx_sha256'] == card['onnx_sha256']


def test_mirror_swaps_left_and_right_blendshapes():
    mirror = mirror_permutation(NAMES)
    assert sorted(mirror) == list(range(55)) and all(mirror[mirror] == np.arange(55))
    for name, partner in [('eyeBlink_L', 'eyeBlink_R'), ('mouthSmile_R', 'mouthSmile_L'),
                          ('jawLeft', 'jawRight'), ('mouthRight', 'mouthLeft'), ('jawOpen', 'jawOpen')]:
        assert NAMES[mirror[NAMES.index(name)]] == partner


def test_flip_augmentation_mirrors_the_image_and_swaps_targets(tmp_path):
    crop = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'c.png'), crop)
    target = np.zeros((1, 55), np.float32)
    target[0, NAMES.index('eyeBlink_L')] = 0.9
    target[0, NAMES.index('mouthLeft')] = 0.4
    target[0, NAMES.index('jawOpen')] = 0.7
    image, flipped = CropDataset([tmp_path / 'c.png'], target, 224, NAMES, Augmentation.off(flip=1.0))[0]
    assert np.array_equal(image.numpy().transpose(1, 2, 0), cv2.flip(crop, 1))
    expected = {'eyeBlink_R': 0.9, 'mouthRight': 0.4, 'jawOpen': 0.7}
    assert {NAMES[k]: round(float(v), 3) for k, v in enumerate(flipped) if v} == expected


def test_default_augmentation_keeps_shape_range_and_dtype(tmp_path):
    crop = np.full((224, 224, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / 'c.png'), crop)
    dataset = CropDataset([tmp_path / 'c.png'], np.zeros((1, 55), np.float32), 64, NAMES, Augmentation(), seed=3)
    for _ in range(20):
        image, target = dataset[0]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 255 and target.shape == (55,)
