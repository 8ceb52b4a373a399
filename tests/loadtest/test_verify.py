"""``loadtest.verify``: answers checked against in-process ORT; wrong, short, unreadable or
missing answers fail the verification. (That the real app's answers pass:
``test_payloads.py``.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from loadtest.payloads import pool_sequences
from loadtest.verify import OrtReference, verify_samples
from tests.support.pools import pool_spec


def test_verification_catches_wrong_answers(model_file: Path) -> None:
    protocol = "v2-json"
    sequences = pool_sequences(pool_spec(protocol))[0]
    reference = OrtReference(model_file)
    good = np.stack([reference.probs(s) for s in sequences])

    def body(probs: np.ndarray) -> bytes:
        output = {"name": "probs", "datatype": "FP32", "shape": list(probs.shape),
                  "data": probs.ravel().tolist()}  # fmt: skip
        return orjson.dumps({"outputs": [output]})

    info = None
    ok = verify_samples([(0, 200, body(good), None)], pool_spec(protocol), info, model_file)
    assert ok["passed"] and ok["max_abs_error_vs_ort"] <= 1e-6
    shifted = np.roll(good, 1, axis=1)
    wrong = verify_samples([(0, 200, body(shifted), None)], pool_spec(protocol), info, model_file)
    assert not wrong["passed"] and "vs in-process ORT" in wrong["failures"][0]
    short = verify_samples([(0, 200, body(good[:, :2]), None)], pool_spec(protocol), info, None)
    assert not short["passed"]
    garbage = verify_samples([(0, 200, b"not json", None)], pool_spec(protocol), info, None)
    assert not garbage["passed"] and garbage["failure_count"] == 1
    assert not verify_samples([], pool_spec(protocol), info, None)["passed"]  # nothing checked
