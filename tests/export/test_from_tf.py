"""``python -m export.from_tf``: a TF 1.x checkpoint in, a verified ONNX model in the repository
out, served over HTTP (and by the app in process) with TensorFlow's own numbers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from export.from_tf import main
from export.metadata import read_metadata
from export.reference import onnx_outputs
from tests.support.ort_reference import Reference
from tests.support.servers import Server
from tests.support.service_app import app_client
from tests.support.tf1_shipped import MODELS, load_expected, load_manifest, model_dir
from tests.support.tiny_repository import tiny_settings
from tests.support.v2_bodies import v2_json

TOL = 1e-5


def export(name: str, repo: Path, *extra: str) -> int:
    folder = model_dir(name)
    return main(
        [
            str(folder),
            "--description",
            str(folder / "manifest.json"),
            "--reference",
            str(folder / "expected.npz"),
            "--name",
            name,
            "--repository",
            str(repo),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def tf_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("tf_repository")
    for name in MODELS:
        assert export(name, repo) == 0
    return repo


def tf_outputs(name: str, expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TensorFlow's arrays under the contract's output names (states ``(dirs, B, H)``)."""
    out = {"logits": expected["logits"], "probs": expected["probs"]}
    if "outputs_fw" in expected:
        out["outputs"] = np.concatenate([expected["outputs_fw"], expected["outputs_bw"]], axis=2)
        layers = sum(cell["direction"] == "fw" for cell in load_manifest(name)["cells"])
        for n in range(layers):
            # Several layers: final_{c,h}_{n}_{fw,bw}; one (bidi_lstm): final_{c,h}_{fw,bw}.
            layer = f"_{n}" if layers > 1 else ""
            for state in ("c", "h"):
                out[f"final_{state}_{n}"] = np.stack(
                    [expected[f"final_{state}{layer}_{way}"] for way in ("fw", "bw")]
                )
    else:
        out["outputs"] = expected["outputs"]
        layers = len(load_manifest(name)["cells"])
        for n in range(layers):
            out[f"final_c_{n}"] = expected[f"final_c_{n}"][np.newaxis]
            out[f"final_h_{n}"] = expected[f"final_h_{n}"][np.newaxis]
    return out


def test_list_variables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(model_dir("multi_lstm")), "--list-variables"]) == 0
    printed = capsys.readouterr().out
    assert "rnn/multi_rnn_cell/cell_1/lstm_cell/kernel" in printed and "[80, 192]" in printed
    assert "Adam" not in printed.split("(and")[0]  # optimizer slots summarised, not listed


def test_written_description_round_trips(tmp_path: Path) -> None:
    description = tmp_path / "desc.json"
    assert main([str(model_dir("basic_lstm")), "--write-description", str(description)]) == 0
    repo = tmp_path / "repo"
    code = main(
        [
            str(model_dir("basic_lstm")),
            "--description", str(description),
            "--reference", str(model_dir("basic_lstm") / "expected.npz"),
            "--name", "guessed",
            "--repository", str(repo),
        ]
    )  # fmt: skip
    assert code == 0 and (repo / "guessed" / "1" / "model.onnx").is_file()


@pytest.mark.parametrize("name", MODELS)
def test_exported_onnx_reproduces_tensorflow(name: str, tf_repository: Path) -> None:
    path = tf_repository / name / "1" / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = load_expected(name)
    lengths = expected["lengths"].astype(np.int32)
    names = [o.name for o in session.get_outputs()]
    got = dict(
        zip(
            names,
            session.run(names, {"inputs": expected["inputs"], "lengths": lengths}),
            strict=True,
        )
    )
    for key, value in tf_outputs(name, expected).items():
        np.testing.assert_allclose(got[key], value, atol=TOL, err_msg=key)
    # padding invariance: each sequence alone gives what it gave in the padded batch
    for b, length in enumerate(lengths):
        alone = session.run(["probs"], {"inputs": expected["inputs"][b : b + 1, :length],
                                        "lengths": lengths[b : b + 1]})[0]  # fmt: skip
        np.testing.assert_allclose(alone[0], got["probs"][b], atol=TOL)
    metadata = read_metadata(path)
    assert metadata["labels"] == '["1", "2", "3", "4", "5", "6", "7", "8", "9"]'
    assert metadata["source_checkpoint_sha256"]


def test_wrong_forget_bias_fails_the_reference_and_writes_nothing(tmp_path: Path) -> None:
    manifest = load_manifest("basic_lstm")
    for cell in manifest["cells"]:
        cell["forget_bias"] = 0.0
    description = tmp_path / "wrong.json"
    description.write_text(json.dumps(manifest))
    code = main(
        [
            str(model_dir("basic_lstm")),
            "--description", str(description),
            "--reference", str(model_dir("basic_lstm") / "expected.npz"),
            "--name", "wrong",
            "--repository", str(tmp_path / "repo"),
        ]
    )  # fmt: skip
    assert code == 1
    assert not (tmp_path / "repo" / "wrong").exists()


def test_corrupt_checkpoint_exits_2_naming_the_tensor(
    tf1_copy: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tf1_copy("basic_lstm")
    data = folder / "model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert main([str(folder), "--name", "x", "--repository", str(folder / "repo")]) == 2
    printed = capsys.readouterr().out
    assert "CRC32C mismatch" in printed and "rnn/basic_lstm_cell/kernel/Adam" in printed


@pytest.fixture(scope="module")
def tf_server(tf_repository: Path) -> Iterator[Server]:
    server = Server(tf_repository)
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_served_over_http_returns_tensorflow_numbers(name: str, tf_server: Server) -> None:
    expected = load_expected(name)
    inputs, lengths = expected["inputs"], expected["lengths"]
    body = {
        "inputs": [
            {"name": "inputs", "shape": list(inputs.shape), "datatype": "FP32",
             "data": inputs.ravel().tolist()},
            {"name": "lengths", "shape": [len(lengths)], "datatype": "INT32",
             "data": lengths.tolist()},
        ]
    }  # fmt: skip
    response = httpx.post(f"{tf_server.url}/v2/models/{name}/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    got = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}
    for key, value in tf_outputs(name, expected).items():
        np.testing.assert_allclose(got[key], value, atol=TOL, err_msg=key)
    labels = httpx.post(
        f"{tf_server.url}/v1/models/{name}/predict",
        json={"sequences": [inputs[b, :n].tolist() for b, n in enumerate(lengths)]},
        timeout=30,
    ).json()["results"]
    assert [r["label"] for r in labels] == [str(k + 1) for k in expected["logits"].argmax(1)]


@pytest.mark.anyio
async def test_per_direction_model_served_in_process_equals_ort_and_tensorflow(
    tf_repository: Path,
) -> None:
    """``bidi_multi_lstm`` (one MultiRNNCell stack per direction) in the service's app, in
    process: V2 answers equal in-process ORT on the same batch, v1 answers equal ORT on each
    sequence alone, and both equal TensorFlow's recorded numbers."""
    name = "bidi_multi_lstm"
    expected = load_expected(name)
    inputs, lengths = expected["inputs"], expected["lengths"].astype(np.int32)
    tf = tf_outputs(name, expected)
    path = tf_repository / name / "1" / "model.onnx"
    batch = onnx_outputs(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]),
                         inputs, lengths)  # fmt: skip
    alone = Reference(tf_repository, (name,))
    labels = load_manifest(name)["labels"]
    async with app_client(tiny_settings(tf_repository)) as http:
        summary = (await http.get(f"/v1/models/{name}")).json()
        assert summary["layers"] == 2 and summary["metadata"]["topology"] == "per_direction"

        answer = await http.post(f"/v2/models/{name}/infer", json=v2_json(inputs, lengths.tolist()))
        assert answer.status_code == 200, answer.text
        got = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer.json()["outputs"]}
        assert set(got) == set(batch) and set(tf) <= set(got)
        for key, value in batch.items():
            np.testing.assert_allclose(got[key], value, rtol=0, atol=TOL, err_msg=key)
        for key, value in tf.items():
            np.testing.assert_allclose(got[key], value, rtol=0, atol=TOL, err_msg=key)

        sequences = [inputs[b, :n] for b, n in enumerate(lengths)]
        body = {
            "sequences": [s.tolist() for s in sequences],
            "return": ["label", "probabilities", "outputs", "final_state"],
        }
        answer = await http.post(f"/v1/models/{name}/predict", json=body)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
    assert len(results) == len(sequences)
    for b, (sequence, result) in enumerate(zip(sequences, results, strict=True)):
        own = alone.run(name, sequence)
        assert result["label"] == labels[int(np.argmax(tf["logits"][b]))]
        for got_value, ort_value, tf_value in (
            (result["probabilities"], own["probs"], tf["probs"][b]),
            (result["outputs"], own["outputs"], tf["outputs"][b, : len(sequence)]),
        ):
            np.testing.assert_allclose(got_value, ort_value, rtol=0, atol=TOL)
            np.testing.assert_allclose(got_value, tf_value, rtol=0, atol=TOL)
        assert len(result["final_state"]) == 2
        for n, state in enumerate(result["final_state"]):
            for kind in ("c", "h"):
                # (dirs, H_n): both directions of layer n, forward first
                np.testing.assert_allclose(state[kind], own[f"final_{kind}_{n}"], rtol=0, atol=TOL)
                np.testing.assert_allclose(
                    state[kind], tf[f"final_{kind}_{n}"][:, b], rtol=0, atol=TOL
                )
