"""The spec of a served model (``contract.spec``): its JSON round trip, the axis rules of the
outputs, ``decode_metadata``, and that it imports no ONNX Runtime (the codec processes and the
load tester read it).

Shapes: ``B`` batch, ``T`` padded time, ``C`` classes, ``D`` per-step width, ``dirs``
directions, ``H_n`` width of layer ``n``.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from contract.names import LOGITS, OUTPUTS, PROBS, final_c, final_h, output_names
from contract.sessions import create_session, read_spec
from contract.spec import ModelSpec, batch_axis, decode_metadata, is_per_step


@pytest.mark.parametrize("name", ["tiny_bi", "tiny_uni"])
def test_a_spec_survives_json_and_pickle(model_repository: Path, name: str) -> None:
    session, _ = create_session(model_repository / name / "1" / "model.onnx", "cpu", 1)
    spec = read_spec(name, "1", session)
    assert spec.metadata["parity"] and spec.state_inputs  # something nested to round-trip
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_a_dict_missing_a_field_is_refused(model_repository: Path) -> None:
    session, _ = create_session(model_repository / "tiny_uni" / "1" / "model.onnx", "cpu", 1)
    data = read_spec("tiny_uni", "1", session).to_dict()
    del data["state_inputs"]
    with pytest.raises(KeyError):
        ModelSpec.from_dict(data)


def test_the_batch_is_on_axis_1_of_the_final_states_only() -> None:
    for layer in (0, 3):
        assert batch_axis(final_c(layer)) == batch_axis(final_h(layer)) == 1  # (dirs, B, H_n)
    assert batch_axis(LOGITS) == batch_axis(PROBS) == batch_axis(OUTPUTS) == 0
    assert [batch_axis(n) for n in output_names(2)] == [0, 0, 0, 1, 1, 1, 1]


def test_only_outputs_has_a_time_axis() -> None:
    assert [is_per_step(n) for n in output_names(2)] == [
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]


def test_the_spec_imports_no_onnx_runtime() -> None:
    # The codec processes and the load tester read the spec; ONNX Runtime takes ~0.5 s to import.
    code = (
        "import contract.spec, contract.names, sys; "
        "heavy = {'onnxruntime', 'torch', 'fastapi', 'numpy'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_only_json_objects_and_lists_are_decoded() -> None:
    props = {
        "parity": '{"limit": 1e-05, "checks": {"padding": 0.0}}',
        "layer_sizes": " [128, 256]",
        "broken": "[not json",
        "number": "12",
        "flag": "false",
        "quoted": '"text"',
        "empty": "",
    }
    assert decode_metadata(props) == {
        "parity": {"limit": 1e-05, "checks": {"padding": 0.0}},
        "layer_sizes": [128, 256],
        "broken": "[not json",
        "number": "12",
        "flag": "false",
        "quoted": '"text"',
        "empty": "",
    }


def test_text_that_only_starts_like_json_is_kept_as_stored() -> None:
    props = {"n": "[1] trailing", "s": '{"a": 1', "ok": json.dumps({"a": [1, 2]})}
    assert decode_metadata(props) == {"n": "[1] trailing", "s": '{"a": 1', "ok": {"a": [1, 2]}}
