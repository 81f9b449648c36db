"""Where shipped files live: a source checkout's models/, config/, msg/ or the installed share folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = 'fer3d_ros'


class ModelFileError(FileNotFoundError):
    """A model or engine file is missing or unreadable; the text says which and how to get it."""


class BackendUnavailableError(RuntimeError):
    """The inference backend asked for cannot run on this machine; the text says what is missing."""


def require_file(path: str | os.PathLike, what: str, how_to_get: str) -> Path:
    """Return `path` as a Path, or raise ModelFileError naming the file and how to obtain it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelFileError(f'{what} not found: {path}. {how_to_get}')
    return path


def _installed_share_dir() -> Path:
    """share/fer3d_ros from the ament index, or under sys.prefix where it is unavailable."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, OSError):
        # No ament_index_python, the package not in the index, or AMENT_PREFIX_PATH unset.
        return Path(sys.prefix) / 'share' / PACKAGE


def share_dirs(folder: str) -> list[Path]:
    """Folders searched for `folder` (models, config, msg), in order: the source checkout, then the install."""
    source = Path(__file__).resolve().parents[2] / folder  # fer3d_ros/core/files.py -> the checkout
    return list(dict.fromkeys([source, _installed_share_dir() / folder]))


def find_shared_file(folder: str, filename: str) -> Path:
    """Path of a file shipped in `folder`; ModelFileError naming the file and every folder searched."""
    searched = share_dirs(folder)
    for directory in searched:
        if (directory / filename).is_file():
            return directory / filename
    places = ', '.join(str(directory) for directory in searched)
    raise ModelFileError(f'{folder} file {filename} not found in: {places}. It ships in the {PACKAGE} '
                         f'package ({folder}/); rebuild and reinstall the package (make build).')


def find_model(filename: str) -> Path:
    """Path of a shipped model file (models/)."""
    return find_shared_file('models', filename)
