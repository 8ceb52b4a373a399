"""``python -m loadtest`` against a real server process on a free port: bounded runs that check
the JSON report, the server's figures from /metrics deltas, verification and the PNG plots."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.cli import build_parser, main
from loadtest.distributions import parse_int_distribution
from loadtest.engine import ClientConfig, LoadGenerator, Phase
from loadtest.payloads import PoolSpec
from tests.support.servers import Server, free_port
from tests.support.tiny_repository import FEATURES, MODEL

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_help_lists_the_modes_and_protocols() -> None:
    text = build_parser().format_help()
    flags = ["--concurrency", "--rate", "--sweep", "--duration", "--requests", "--lengths",
             "--sequences-per-request", "--processes", "--model-file", "--protocol"]  # fmt: skip
    for flag in flags:
        assert flag in text
    assert "v2-binary" in text


def test_help_gives_each_default_once() -> None:
    text = " ".join(build_parser().format_help().split())  # undo the line wrapping
    assert not re.search(r"default[^()]*\) \(default:", text), "a default shown twice"
    assert "(default: None)" not in text and "(default: False)" not in text
    assert text.count("(default: latest)") == 1 and "(default: 8)" in text
    assert "(default: $LOADTEST_API_KEY, if set)" in text and "(default: 0)" in text  # --seed


def test_bad_arguments_exit_with_usage(tmp_path: Path) -> None:
    for argv in (["--model", "m", "--lengths", "9:3"], ["--model", "m", "--sweep", "--rate", "5"]):
        with pytest.raises(SystemExit) as error:
            main(argv)
        assert error.value.code == 2


@pytest.mark.slow
def test_a_bounded_run_writes_the_report_and_a_plot(
    server: Server, model_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run.json"
    code = main(
        ["--url", server.url, "--model", MODEL, "--protocol", "v2-binary", "--concurrency", "4",
         "--requests", "30", "--warmup", "0", "--lengths", "5:50", "--sequences-per-request", "1:3",
         "--verify", "10", "--model-file", str(model_file), "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["requests"] == 30 and run["ok"] == 30 and run["by_status"] == {"200": 30}
    assert run["phase"]["duration_s"] is None  # bounded by the count alone
    assert run["requests_per_s"] > 0 and run["sequences_per_s"] >= run["requests_per_s"]
    latency = run["latency_ms"]
    assert (
        0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    )
    server_side = run["server"]  # a delta: exactly this run's requests, whatever ran before
    assert server_side["requests"] == {"v2:200": 30}
    assert server_side["sequences"] == run["sequences_ok"]
    assert server_side["batches"] >= 1 and 0 < server_side["padding_efficiency"] <= 1
    assert server_side["queue_wait_ms"]["count"] == run["sequences_ok"]
    verification = report["verification"]
    assert verification["passed"] and verification["checked_responses"] == 10
    assert verification["max_abs_error_vs_ort"] < 1e-4
    assert report["config"]["features"] == FEATURES  # read from the server's metadata
    (plot,) = report["plots"]
    assert Path(plot).read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
def test_a_sweep_and_an_open_loop_over_json(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    code = main(
        ["--url", server.url, "--model", MODEL, "--protocol", "v1", "--sweep", "--concurrency",
         "4", "--requests", "12", "--warmup", "0", "--lengths", "20", "--out", str(out),
         "--quiet"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert [r["concurrency"] for r in report["runs"]] == [1, 2, 4]
    assert all(r["ok"] == 12 and r["server"]["requests"] == {"v1:200": 12} for r in report["runs"])
    assert sorted(Path(p).name for p in report["plots"]) == ["sweep-latency.png", "sweep-sweep.png"]
    assert all(Path(p).read_bytes()[:8] == PNG_MAGIC for p in report["plots"])

    out = tmp_path / "open.json"
    code = main(
        ["--url", server.url, "--model", MODEL, "--protocol", "v2-json", "--rate", "200",
         "--requests", "20", "--duration", "20", "--warmup", "0", "--lengths", "5:30",
         "--out", str(out), "--no-plots", "--quiet"]
    )  # fmt: skip
    assert code == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["phase"]["mode"] == "open" and run["ok"] == 20
    assert run["server"]["requests"] == {"v2:200": 20}


@pytest.mark.slow
def test_two_client_processes_share_a_request_count(server: Server) -> None:
    spec = PoolSpec("v2-binary", MODEL, FEATURES, parse_int_distribution("5:20"),
                    parse_int_distribution("1"), 16, seed=2)  # fmt: skip
    with LoadGenerator(ClientConfig(server.url, spec, samples_per_phase=4), processes=2) as gen:
        first = gen.run(Phase("closed", concurrency=3, duration_s=None, requests=21))
        second = gen.run(Phase("closed", concurrency=2, duration_s=None, requests=5))
    assert first.status.tolist() == [200] * 21 and second.status.size == 5
    assert len(first.samples) == 4  # two per process
    assert (first.sent >= 0).all() and (first.latency > 0).all()


@pytest.mark.slow
def test_unreachable_server_fails_cleanly(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "loadtest", "--url", url, "--model", MODEL, "--requests", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "--features" in result.stderr
    spec = PoolSpec("v1", MODEL, FEATURES, parse_int_distribution("5"),
                    parse_int_distribution("1"), 2, seed=0)  # fmt: skip
    with LoadGenerator(ClientConfig(url, spec, timeout_s=5), processes=1) as gen:
        result = gen.run(Phase("closed", concurrency=1, duration_s=None, requests=3))
    assert result.status.tolist() == [0, 0, 0] and sum(result.transport_errors.values()) == 3


@pytest.mark.slow
def test_a_run_against_a_closed_port_stops_reports_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gone.json"
    code = main(
        ["--url", f"http://127.0.0.1:{free_port()}", "--model", MODEL, "--features",
         str(FEATURES), "--sweep", "--concurrency", "4", "--requests", "1000000", "--warmup", "0",
         "--stop-after-refused", "5", "--verify", "0", "--no-plots", "--quiet", "--out", str(out)]
    )  # fmt: skip
    assert code == 3
    assert "run stopped early: the target refused 5 connections in a row" in capsys.readouterr().err
    report = json.loads(out.read_text())
    (run,) = report["runs"]  # the sweep's later levels were not run
    assert run["concurrency"] == 1 and run["requests"] == 5
    assert run["by_status"] == {"no_response": 5}
    assert "refused 5 connections" in report["stopped"] and run["stopped"] == report["stopped"]


@pytest.mark.slow
def test_an_api_key_reaches_requests_metadata_and_metrics(repository: Path, tmp_path: Path) -> None:
    flags = ("--api-key", "s3cret", "--api-key-protects-metrics")
    server = Server(repository, *flags, log_level="warning")
    try:
        out = tmp_path / "key.json"
        common = ["--url", server.url, "--model", MODEL, "--requests", "5", "--warmup", "0",
                  "--no-plots", "--quiet", "--out", str(out)]  # fmt: skip
        assert main(common) == 2  # the metadata needs the key
        assert main([*common, "--api-key", "s3cret"]) == 0
        (run,) = json.loads(out.read_text())["runs"]
        assert run["ok"] == 5 and run["server"]["requests"] == {"v2:200": 5}
    finally:
        server.stop()
