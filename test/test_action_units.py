"""Action units read from the blendshape weights."""
import json

import numpy as np
import pytest

from fer3d_ros.core.expression import regressor as expression
from fer3d_ros.core.expression.action_units import (
    ACTION_UNITS,
    ActionUnitFilter,
    ActionUnitReader,
    PresenceModel,
    load_presence_model,
    shipped_presence,
)
from fer3d_ros.core.expression.morphable_model import load_landmark_model
from fer3d_ros.core.expression.regressor import load_card
from fer3d_ros.core.files import find_model

NAMES = list(load_landmark_model().expression_names)


def weights(**values) -> np.ndarray:
    x = np.zeros(len(NAMES))
    for name, value in values.items():
        x[NAMES.index(name)] = value
    return x


def test_an_au_is_the_mean_of_its_sides_and_the_stronger_of_its_groups():
    reader = ActionUnitReader(NAMES)
    column = {au.number: k for k, au in enumerate(ACTION_UNITS)}
    smile = reader.intensities(weights(mouthSmile_L=0.8, mouthSmile_R=0.6, cheekSquint_L=0.2, cheekSquint_R=0.4,
                                       cheekRaiser_L=0.1, cheekRaiser_R=0.1))[0]
    assert smile[column[12]] == pytest.approx(0.7) and smile[column[6]] == pytest.approx(0.3)
    assert smile[column[1]] == 0.0
    calibrated = reader.intensities(weights(browDown_L=-0.3, browDown_R=-0.1))[0]  # more relaxed than at rest
    assert calibrated[column[4]] == 0.0


def presence_of_smile(threshold: float) -> PresenceModel:
    """A presence model for AU12 alone: a logistic on the smile weights."""
    weights = np.zeros((1, len(NAMES)))
    weights[0, [NAMES.index('mouthSmile_L'), NAMES.index('mouthSmile_R')]] = 10.0
    return PresenceModel('test', (12,), weights, np.array([-3.0]), np.array([threshold]))


def test_presence_and_facs_letters_only_where_a_presence_model_was_measured():
    reader = ActionUnitReader(NAMES, presence_of_smile(0.5))
    smiles = np.array([0.1, 0.25, 0.6, 1.0])
    reading = reader.read(np.stack([weights(mouthSmile_L=s, mouthSmile_R=s, jawOpen=0.9) for s in smiles]))
    smile, jaw = ([au.number for au in ACTION_UNITS].index(n) for n in (12, 26))
    assert reading.probabilities[:, smile] == pytest.approx(1 / (1 + np.exp(-(20 * smiles - 3))))
    assert reading.present[:, smile].tolist() == [False, True, True, True]
    assert [row[smile] for row in reading.levels] == ['', 'B', 'D', 'E']  # fifths of the intensity
    assert np.isnan(reading.probabilities[:, jaw]).all() and not reading.present[:, jaw].any()  # intensity only
    assert reading.intensities[:, jaw] == pytest.approx(0.9)


def test_the_presence_card_round_trips_and_must_match_the_coefficients(tmp_path):
    presence = presence_of_smile(0.4)
    path = tmp_path / 'action_units.json'
    path.write_text(json.dumps(presence.to_card()))
    loaded = load_presence_model(path)
    assert loaded.numbers == (12,) and loaded.model_id == 'test'
    smile = weights(mouthSmile_L=0.3)
    assert loaded.probabilities(smile) == pytest.approx(presence.probabilities(smile))
    with pytest.raises(ValueError, match='take 55 coefficients, the regressor gives 56'):
        ActionUnitReader([*NAMES, 'extra'], presence)


def test_the_shipped_presence_models_are_for_the_shipped_regressor():
    presence = shipped_presence(load_card(find_model(expression.MODEL_FILE)).model_id)
    assert presence is not None, 'models/action_units.json was not fitted on the shipped regressor: ' \
        'run python -m training.eval_action_units'
    assert {12, 25} <= set(presence.numbers) and np.all((presence.thresholds > 0) & (presence.thresholds < 1))
    relative = shipped_presence(presence.model_id, calibrated=True)
    assert relative is not None and relative.numbers == presence.numbers
    assert shipped_presence('another_model') is None


def test_presence_is_read_relative_to_the_person_where_asked_and_a_calibration_exists():
    raw_smile, relative_smile = presence_of_smile(0.5), presence_of_smile(0.5)
    relative_smile.weights[:] *= 2.0  # a different model: which one answered shows in the probability
    reader = ActionUnitReader(NAMES, raw_smile, relative_smile)
    smile = [au.number for au in ACTION_UNITS].index(12)
    # a person whose resting mouth curls up: raw reads a smile; relative to their neutral, none
    resting = weights(mouthSmile_L=0.3, mouthSmile_R=0.3)
    calibrated = np.stack([weights(), weights(), np.full(len(NAMES), np.nan)])
    reading = reader.read(np.stack([resting] * 3), calibrated, relative=np.array([True, False, True]))
    assert reading.relative.tolist() == [True, False, False]  # the third has no calibration: raw
    assert reading.present[:, smile].tolist() == [False, True, True]
    assert reading.probabilities[0, smile] == pytest.approx(1 / (1 + np.exp(3.0)))
    assert reading.calibrated_intensities[0, smile] == 0.0 and np.isnan(reading.calibrated_intensities[2]).all()
    assert reading.levels[1][smile] == 'B' and reading.levels[0][smile] == ''
    strong = reader.read(resting + weights(mouthSmile_L=0.6, mouthSmile_R=0.6), weights(mouthSmile_L=0.6,
                                                                                        mouthSmile_R=0.6))
    assert strong.relative[0] and strong.present[0, smile] and strong.levels[0][smile] == 'D'  # its own intensity
    with pytest.raises(ValueError, match='same action units'):
        ActionUnitReader(NAMES, raw_smile, PresenceModel('test', (4,), relative_smile.weights, relative_smile.bias,
                                                         relative_smile.thresholds))


def test_each_face_averages_its_action_units_and_holds_presence_within_the_hysteresis():
    reader = ActionUnitReader(NAMES, presence_of_smile(0.5))
    smile = [au.number for au in ACTION_UNITS].index(12)

    def frame(au_filter: ActionUnitFilter, time: float, smiles: list[float], ids=('f1', 'f2')):
        raw = reader.read(np.stack([weights(mouthSmile_L=s, mouthSmile_R=s) for s in smiles]))
        return raw, au_filter.update(time, list(ids), [''] * len(ids), raw)

    averaging = ActionUnitFilter(time_constant=0.1, hysteresis=0.0)
    first, smoothed = frame(averaging, 0.0, [0.3, 0.0])
    assert np.array_equal(smoothed.intensities, first.intensities)  # the first frame as it is
    assert np.array_equal(smoothed.present, first.present) and smoothed.present[:, smile].tolist() == [True, False]
    raw, smoothed = frame(averaging, 0.1, [0.0, 0.0])
    weight = 1 - np.exp(-1.0)
    assert smoothed.intensities[0, smile] == pytest.approx(0.3 * (1 - weight))
    assert smoothed.probabilities[0, smile] == pytest.approx(first.probabilities[0, smile] * (1 - weight)
                                                             + raw.probabilities[0, smile] * weight)
    # hysteresis alone; probability of a smile s: 1 / (1 + exp(3 - 20 s)): 0.5 at 0.15, 0.45 at 0.14, 0.35 at 0.12
    holding = ActionUnitFilter(time_constant=0.0, hysteresis=0.1)
    assert frame(holding, 0.0, [0.3, 0.0])[1].present[:, smile].tolist() == [True, False]
    raw, smoothed = frame(holding, 0.1, [0.14, 0.3])
    assert not raw.present[0, smile] and smoothed.present[0, smile]  # 0.45: within the hysteresis, held
    assert smoothed.present[1, smile] and smoothed.levels[1][smile] != ''  # f2 turns on at the threshold
    assert not frame(holding, 0.2, [0.12, 0.3])[1].present[0, smile]  # 0.35: below the hysteresis, off
    assert not frame(holding, 0.3, [0.14, 0.3])[1].present[0, smile]  # off stays off until the threshold
    raw, smoothed = frame(averaging, 0.4, [0.0], ids=('f3',))
    assert np.array_equal(smoothed.intensities, raw.intensities)  # a new face starts from its own frame


def test_coefficients_without_the_blendshape_names_are_refused():
    with pytest.raises(ValueError, match='ICT-FaceKit'):
        ActionUnitReader(['JawOpen', *NAMES[1:]])
