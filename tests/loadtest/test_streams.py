"""``loadtest.streams`` and ``python -m loadtest --streams`` against a real server on the tiny
repository's unidirectional model (``tiny_uni``: stacked [8, 12], F=5, 3 classes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from loadtest.cli import main
from loadtest.payloads import decode_response
from loadtest.streams import StreamPlan, encode_chunk, model_state_sizes, run_streams
from tests.support.servers import Server, metric

MODEL = "tiny_uni"


@pytest.fixture(scope="module")
def uni_server(repository: Path) -> Iterator[Server]:
    running = Server(repository, log_level="warning")
    yield running
    running.stop()


def _plan(**changes: object) -> StreamPlan:
    fields: dict[str, object] = {
        "model": MODEL, "features": 5, "streams": 3, "chunk_steps": 4, "chunks_per_stream": 3,
        "think_ms": 5.0, "duration_s": 1.0, "state_sizes": (8, 12),
    }  # fmt: skip
    fields.update(changes)
    return StreamPlan(**fields)  # type: ignore[arg-type]


def test_state_sizes_come_from_the_final_state_outputs() -> None:
    metadata = {
        "outputs": [
            {"name": "probs", "shape": [-1, 3]},
            {"name": "final_c_0", "shape": [1, -1, 8]},
            {"name": "final_c_1", "shape": [1, -1, 12]},
        ]
    }
    assert model_state_sizes(metadata) == (8, 12)
    assert model_state_sizes({"outputs": [{"name": "probs", "shape": [-1, 3]}]}) == ()


def test_a_binary_chunk_carries_its_tensors_after_the_header() -> None:
    chunk = np.arange(10, dtype=np.float32).reshape(1, 2, 5)
    body, headers = encode_chunk(
        "v2-binary", [("inputs", chunk, "FP32")], ["probs"], {"sequence_id": "a"}
    )
    split = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:split])
    assert header["parameters"] == {"sequence_id": "a"}
    assert header["inputs"][0]["parameters"]["binary_data_size"] == 40
    assert np.array_equal(np.frombuffer(body[split:], "<f4"), chunk.ravel())


def test_a_plan_refuses_what_cannot_stream() -> None:
    with pytest.raises(ValueError, match="mode"):
        _plan(mode="sideways")
    with pytest.raises(ValueError, match="v2"):
        _plan(protocol="v1")
    with pytest.raises(ValueError, match="state_sizes"):
        _plan(mode="client-state", state_sizes=())


@pytest.mark.parametrize("protocol", ["v2-json", "v2-binary"])
def test_server_held_streams_are_answered_and_end(uni_server: Server, protocol: str) -> None:
    run = asyncio.run(run_streams(uni_server.url, _plan(protocol=protocol)))
    summary = run.summary()
    assert set(run.status) == {200}, run.error_bodies
    assert summary["chunks_ok"] == len(run.status) > 0
    assert run.started == run.finished + run.unfinished and run.finished >= 3
    assert run.broken == 0 and len(run.final_probs) == run.finished
    assert summary["steps_per_s"] == pytest.approx(4 * summary["chunks_per_s"])
    # At most the 3 slots' streams live at once, besides those an earlier run left.
    before = summary["streams_live_at_start"]
    assert before is not None and summary["streams_live_max"] is not None
    assert 1 <= summary["streams_live_max"] <= before + 3
    for probs in run.final_probs.values():
        assert probs.shape == (3,) and abs(float(probs.sum()) - 1.0) < 1e-5
    # Every finished stream sent sequence_end: only the unfinished ones may still be live.
    live = metric(uni_server.metrics(), "lstm_streams_live", 0.0)
    assert live <= before + run.unfinished


def test_the_three_modes_give_each_stream_the_same_answer(uni_server: Server) -> None:
    runs = {
        mode: asyncio.run(run_streams(uni_server.url, _plan(mode=mode, think_ms=0.0)))
        for mode in ("server-state", "client-state", "resend-history")
    }
    for run in runs.values():
        assert set(run.status) == {200}, run.error_bodies
    common = set.intersection(*(set(run.final_probs) for run in runs.values()))
    assert len(common) >= 3
    reference = runs["server-state"].final_probs
    for key in common:
        for mode in ("client-state", "resend-history"):
            np.testing.assert_allclose(runs[mode].final_probs[key], reference[key], atol=1e-4)
    # The last chunk of a re-sent history carries N x K steps; the others K.
    sizes = {mode: run.summary()["request_bytes_per_chunk"] for mode, run in runs.items()}
    assert sizes["resend-history"] > sizes["server-state"]


def test_the_whole_stream_at_once_matches_its_chunks(uni_server: Server) -> None:
    import httpx

    from loadtest.streams import stream_frames

    plan = _plan(streams=1, think_ms=0.0, duration_s=0.5)
    run = asyncio.run(run_streams(uni_server.url, plan))
    (slot, number), probs = next(iter(run.final_probs.items()))
    frames = stream_frames(plan, slot, number)[None]
    lengths = np.array([frames.shape[1]], np.int32)
    body, headers = encode_chunk(
        "v2-json", [("inputs", frames, "FP32"), ("lengths", lengths, "INT32")], ["probs"]
    )
    response = httpx.post(
        f"{uni_server.url}/v2/models/{MODEL}/infer", content=body, headers=headers
    )
    whole = decode_response("v2-json", response.content, None).probs[0]
    np.testing.assert_allclose(probs, whole, atol=1e-4)


def test_the_cli_reports_and_writes_a_streaming_run(
    uni_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "streams.json"
    argv = [
        "--url", uni_server.url, "--model", MODEL, "--streams", "2", "--chunk-steps", "3",
        "--chunks-per-stream", "2", "--think-ms", "2", "--duration", "0.8",
        "--stream-mode", "client-state", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "chunks/s" in err and "lstm_streams_live" in err
    written = json.loads(out.read_text())
    assert written["config"]["stream_mode"] == "client-state"
    assert written["streams"]["chunks_failed"] == 0 and written["streams"]["chunks_ok"] > 0


def test_the_cli_refuses_v1_streams(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--model", MODEL, "--streams", "2", "--protocol", "v1"])
    assert raised.value.code == 2
    assert "v2-json" in capsys.readouterr().err
