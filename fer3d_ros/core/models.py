"""Where shipped model files live: a source checkout's models/ or the installed share folder."""
from __future__ import annotations

import sys
from pathlib import Path

from fer3d_ros.core.inference import ModelFileError

PACKAGE = 'fer3d_ros'


def _installed_models_dir() -> Path:
    """share/fer3d_ros/models from the ament index, or under sys.prefix where it is unavailable."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE)) / 'models'
    except (ImportError, LookupError, OSError):
        # No ament_index_python, the package not in the index, or AMENT_PREFIX_PATH unset.
        return Path(sys.prefix) / 'share' / PACKAGE / 'models'


def model_dirs() -> list[Path]:
    """Folders searched for model files, in order: the source checkout first, then the install."""
    source = Path(__file__).resolve().parents[2] / 'models'
    return list(dict.fromkeys([source, _installed_models_dir()]))


def find_model(filename: str) -> Path:
    """Path of a shipped model file; ModelFileError naming the file and every folder searched."""
    searched = model_dirs()
    for folder in searched:
        if (folder / filename).is_file():
            return folder / filename
    places = ', '.join(str(folder) for folder in searched)
    raise ModelFileError(f'model file {filename} not found in: {places}. It ships in the {PACKAGE} '
                         'package (models/); rebuild and reinstall the package (make build).')
