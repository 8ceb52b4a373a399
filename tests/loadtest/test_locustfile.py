"""The Locust file parses, imports without Locust (import-guarded), and defines its user when
Locust is installed. Imports run in a fresh interpreter: Locust monkey-patches the standard
library (gevent), which must not happen inside the test process."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"

PROBE = """
import loadtest.locustfile as module
spec = module.settings_from_env(features=4)
print(spec.protocol, spec.features, spec.size, spec.lengths.high, module.FastHttpUser is not None,
      hasattr(module, "LstmUser"))
"""


def _probe() -> list[str]:
    env = {**os.environ, "LOADTEST_PROTOCOL": "v1", "LOADTEST_LENGTHS": "3:9", "LOADTEST_POOL": "5"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_locustfile_parses_and_reads_its_settings() -> None:
    compile(ast.parse(LOCUSTFILE.read_text()), str(LOCUSTFILE), "exec")
    protocol, features, size, high, has_locust, has_user = _probe()
    assert (protocol, features, size, high) == ("v1", "4", "5", "9")
    assert has_locust == has_user  # the user class exists exactly when Locust does


def test_locust_user_is_defined_when_locust_is_installed() -> None:
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (it is optional)")
    assert _probe()[-1] == "True"
