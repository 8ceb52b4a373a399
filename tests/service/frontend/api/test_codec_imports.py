"""The codecs import nothing of the server: ``validation`` and ``v2_codec`` run in the codec
processes (``service.frontend.api.offload``), which should start light and hold no web framework, no
ONNX Runtime and no server state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
CODECS = ("service.frontend.api.validation", "service.frontend.api.v2_codec")
ALLOWED = {
    "service",
    "service.frontend",
    "service.frontend.api",
    "service.errors",
    "service.streaming",
    *CODECS,
}
SERVER_PACKAGES = {"fastapi", "starlette", "pydantic", "onnxruntime", "prometheus_client"}


def test_the_codecs_import_only_numpy_orjson_and_service_errors() -> None:
    script = (
        "import json, sys\n"
        f"for name in {CODECS!r}: __import__(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    modules = set(json.loads(done.stdout))
    ours = {m for m in modules if m == "service" or m.startswith("service.")}
    assert ours == ALLOWED
    assert not {m.split(".")[0] for m in modules} & SERVER_PACKAGES
