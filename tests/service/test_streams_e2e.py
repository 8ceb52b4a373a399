"""Streams against a real server with 2 frontends and one engine, through ``tritonclient``'s own
sequence arguments (``infer(..., sequence_id=, sequence_start=, sequence_end=)``): each chunk on a
new connection, so chunks of one stream reach either frontend, and the engine's state carries
them on; interleaved streams answer what their whole sequences answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.ort_reference import Reference
from tests.support.servers import Server, metric
from tests.support.tiny_repository import FEATURES

pytestmark = pytest.mark.slow
STATES = ("final_c_1", "final_h_1")


def test_tritonclient_streams_through_two_frontends_equal_the_whole_sequences(
    model_repository: Path, reference: Reference
) -> None:
    import tritonclient.http as triton

    rng = np.random.default_rng(8)
    streams = {sid: rng.standard_normal((40, FEATURES)).astype(np.float32) for sid in (11, 12, 13)}
    server = Server(model_repository, "--workers", "2")
    host = server.url.removeprefix("http://")
    try:
        got: dict[int, list[np.ndarray]] = {sid: [] for sid in streams}
        last: dict[int, dict[str, np.ndarray]] = {}
        for k, (lo, hi) in enumerate([(0, 7), (7, 8), (8, 25), (25, 40)]):
            for sid, x in streams.items():
                client = triton.InferenceServerClient(host)  # a new connection per chunk
                inputs = [triton.InferInput("inputs", [1, hi - lo, FEATURES], "FP32")]
                inputs[0].set_data_from_numpy(x[np.newaxis, lo:hi], binary_data=k % 2 == 0)
                wanted = [triton.InferRequestedOutput(n) for n in ("outputs", *STATES)]
                result = client.infer(
                    "tiny_uni",
                    inputs,
                    outputs=wanted,
                    sequence_id=sid,
                    sequence_start=k == 0,
                    sequence_end=k == 3,
                )
                client.close()
                got[sid].append(result.as_numpy("outputs")[0])
                last[sid] = {s: result.as_numpy(s)[:, 0] for s in STATES}
        for sid, x in streams.items():
            whole = reference.run("tiny_uni", x)
            np.testing.assert_allclose(np.concatenate(got[sid]), whole["outputs"], atol=1e-5)
            for state in STATES:
                np.testing.assert_allclose(last[sid][state], whole[state], atol=1e-5)
        metrics = server.metrics()
        assert metric(metrics, 'lstm_stream_events_total{event="started"}') == 3
        assert metric(metrics, 'lstm_stream_events_total{event="ended"}') == 3
        assert metric(metrics, "lstm_streams_live") == 0
        sequences = metric(metrics, 'lstm_sequences_total{model="tiny_uni"}')
        assert sequences == 12  # every chunk counted once, whichever frontend took it
    finally:
        log = server.stop()
    assert log.count("Application startup complete") == 2, log
