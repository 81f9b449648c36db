"""The code passes the project's linter (ruff.toml: pyflakes, pycodestyle, isort, bugbear)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which('ruff', path=str(Path(sys.executable).parent)) or shutil.which('ruff')
    if ruff is None:
        pytest.skip('ruff is not installed (pip install -r requirements/dev.txt)')
    result = subprocess.run([ruff, 'check', '--output-format', 'concise', str(REPO)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
