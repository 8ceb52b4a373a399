"""The README stays true to the code: every setting documented, the set-up commands exact."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CI = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()


def test_every_setting_is_in_the_settings_table() -> None:
    missing = [
        name for name in Settings.model_fields if f"| `--{name.replace('_', '-')}` |" not in README
    ]
    assert not missing, f"README settings table lacks {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(python3 -m pip install[^\n]+)\n```", README)
    assert len(commands) == 2, commands  # serve, test
    serve, test = commands
    assert "python3 -m service" in serve and "export.defaults" in serve
    assert test in CI
