"""Action units read from the blendshape weights."""
import numpy as np
import pytest

from fer3d_ros.core.action_units import ACTION_UNITS, ActionUnitReader
from fer3d_ros.core.morphable_model import load_landmark_model

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


def test_presence_and_facs_letters_only_where_a_threshold_was_measured():
    reader = ActionUnitReader(NAMES, thresholds={12: 0.2})
    intensities = reader.intensities(np.stack([weights(mouthSmile_L=s, mouthSmile_R=s, jawOpen=0.9)
                                               for s in (0.1, 0.25, 0.6, 1.0)]))
    column = [au.number for au in ACTION_UNITS].index(12)
    assert reader.presence(intensities)[:, column].tolist() == [False, True, True, True]
    assert [row[column] for row in reader.levels(intensities)] == ['', 'A', 'C', 'E']
    jaw = [au.number for au in ACTION_UNITS].index(26)
    assert not reader.presence(intensities)[:, jaw].any()  # no threshold measured: intensity only


def test_coefficients_without_the_blendshape_names_are_refused():
    with pytest.raises(ValueError, match='ICT-FaceKit'):
        ActionUnitReader(['JawOpen', *NAMES[1:]])
