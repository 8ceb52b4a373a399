"""``bench.cli`` (``python -m bench``): its flags, and the runs it refuses before starting
anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import _parse, main
from bench.servers import SERVERS
from loadtest.payloads import PROTOCOLS


def test_defaults_and_quick() -> None:
    args = _parse([])
    assert (args.seconds, args.warmup, args.server_warmup) == (5.0, 1.0, 3.0)
    assert (args.concurrency, args.batch_sizes) == ([1, 16, 64], [1, 16, 64, 256])
    assert args.servers == list(SERVERS) and args.protocols == list(PROTOCOLS)
    assert (args.lengths.low, args.lengths.high) == (10, 200)
    assert (args.frontends, args.frontend_rate, args.handoff_requests) == ([], 0.0, 3000)
    assert _parse(["--frontends", "1,2,4"]).frontends == [1, 2, 4]
    assert _parse(["--frontends", ""]).frontends == []
    quick = _parse(["--quick", "--seconds", "1", "--concurrency", "1,4"])
    assert (quick.seconds, quick.warmup, quick.server_warmup) == (1.0, 0.5, 1.0)
    assert (quick.ceiling_seconds, quick.sample, quick.concurrency) == (0.5, 512, [1, 4])


def test_unknown_servers_or_protocols_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--servers", "service,nginx"]) == 2
    assert main(["--protocols", "grpc"]) == 2
    assert "unknown servers or protocols: ['grpc']" in caplog.text


def test_frontend_counts_below_one_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--frontends", "0,2"]) == 2
    assert "--frontends takes counts of 1 or more, got [0, 2]" in caplog.text


def test_a_missing_model_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--repository", str(tmp_path), "--model", "absent"]) == 2
    assert "run `python -m export.defaults` first" in caplog.text
