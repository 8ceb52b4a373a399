"""``python -m service`` (``service.__main__``): a start without a model repository exits 2,
with a hint at how to build one. (Serving, draining and workers: ``test_server.py``,
``test_workers.py``, ``test_e2e.py``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import ROOT

pytestmark = pytest.mark.slow


def test_refuses_to_start_without_a_repository(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "service", "--model-repository", str(tmp_path / "missing")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LSTM_SERVING_LOG_FORMAT": "text"},
    )
    assert completed.returncode == 2
    assert "export.defaults" in completed.stderr
