"""The training sequence end to end, from a clean folder, on a small subset: data -> pseudo-ground
truth -> DeepExp3D -> emotion classifiers -> action-unit models -> installed where the nodes read
them; and every tool of the training package listed."""
import subprocess
import sys
from pathlib import Path

import numpy as np

from fer3d_ros.core.affect.emotion import default_classifier
from fer3d_ros.core.expression.action_units import load_presence_model
from fer3d_ros.core.expression.stage import ExpressionSettings, ExpressionStage, FaceInput
from training.pipeline import STEPS, describe, tools

REPO = Path(__file__).resolve().parents[1]


def test_the_quick_sequence_runs_from_a_clean_folder_and_its_models_load(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'training.pipeline', 'run', '--quick', '--out', str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    models = tmp_path / 'models'
    assert (tmp_path / 'data' / 'dataset' / 'manifest.csv').is_file()
    stage = ExpressionStage(ExpressionSettings(model=str(models / 'deepexp3d_mnv2_96.onnx'), backend='onnxruntime'))
    face = FaceInput('f0001', True, 1.0, np.full((224, 224, 3), 128, np.uint8), np.zeros(136), (0.0, 0.0, 0.0))
    coefficients = stage.process(0.0, [face]).coefficients
    assert coefficients.shape == (1, 55) and 0 <= coefficients.min() and coefficients.max() <= 1
    for name, features in (('emotion_classifier.npz', 'raw'), ('emotion_classifier_calibrated.npz', 'calibrated')):
        classifier = default_classifier(models / name, features=features)
        classifier.check_names(stage.names)
        assert np.isclose(classifier.predict_proba(coefficients).sum(), 1.0)
    assert load_presence_model(models / 'action_units.json').model_id == stage.regressor.card.model_id
    for step in STEPS:
        assert f'== {step.name}' in result.stdout


def test_every_tool_of_the_training_package_is_listed():
    listing = describe()
    names = [name for name, _ in tools()]
    assert {'build_dataset', 'train_multitask', 'select_emotion_classifier', 'eval_in_the_wild'} <= set(names)
    for name in names:
        assert f'training.{name}' in listing, name
