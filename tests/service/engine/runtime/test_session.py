"""One ONNX Runtime session per model version (``service.engine.runtime.session``), on the tiny
exported models (``tests.support.tiny_repository``): a graph outside the contract refused at load,
the CPU memory arena a setting (on by default: faster, measured in
bench/results/cpu-arena-2026-12-01.md), and ``ModelRuntime.run_batch``, which pads, runs and splits:
each sequence's results are those of it run alone, cut to its length, from its own initial states.

Shapes: ``B`` batch, ``L_b`` length of sequence ``b``, ``F`` = 5 features, ``C`` = 3 classes,
``D`` per-step output width (16 for ``tiny_bi``, 12 for ``tiny_uni``), ``dirs`` directions,
``H_n`` width of layer ``n``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from contract.spec import ContractError
from service.engine.loading import onnx_runtime_factory
from service.engine.runtime.session import ModelRuntime
from service.settings import Settings
from tests.support.ort_reference import Reference
from tests.support.tiny_repository import FEATURES

TOL = 1e-5
LAYERS = {"tiny_bi": (2, (8, 8)), "tiny_uni": (1, (8, 12))}  # dirs, (H_0, H_1)
WIDTH = {"tiny_bi": 16, "tiny_uni": 12}  # D: dirs x H_last


def model_file(repo: Path, name: str) -> Path:
    return repo / name / "1" / "model.onnx"


@pytest.fixture(scope="module")
def runtimes(model_repository: Path) -> dict[str, ModelRuntime]:
    """``tiny_bi`` and ``tiny_uni`` as the service loads them, on the CPU, one thread."""
    return {
        name: ModelRuntime(model_file(model_repository, name), name, "1", "cpu", 1)
        for name in ("tiny_bi", "tiny_uni")
    }


def random_sequences(seed: int, lengths: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, FEATURES)).astype(np.float32) for n in lengths]


def random_states(name: str, seed: int) -> dict[str, np.ndarray]:
    """Non-zero ``initial_{c|h}_{n}`` ``(dirs, H_n)`` for one sequence of model ``name``."""
    rng = np.random.default_rng(seed)
    dirs, widths = LAYERS[name]
    return {
        f"initial_{kind}_{n}": rng.standard_normal((dirs, width)).astype(np.float32)
        for n, width in enumerate(widths)
        for kind in ("c", "h")
    }


def zero_states(name: str) -> dict[str, np.ndarray]:
    return {key: np.zeros_like(value) for key, value in random_states(name, 0).items()}


def assert_close(actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> None:
    """The same outputs, each of the same shape and values within ``TOL``."""
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key].shape == value.shape, key
        np.testing.assert_allclose(actual[key], value, atol=TOL, err_msg=key)


def test_a_graph_outside_the_contract_is_refused_when_loaded(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    with pytest.raises(
        ContractError, match=r"no input can be the sequence: none is float of rank 3"
    ):
        ModelRuntime(tmp_path / "model.onnx", "other", "1", "cpu", 1)


@pytest.mark.parametrize("arena", [True, False])
def test_the_service_session_follows_the_setting(model_repository: Path, arena: bool) -> None:
    settings = Settings(model_repository=model_repository, provider="cpu", ort_cpu_mem_arena=arena)
    path = model_repository / "tiny_uni" / "1" / "model.onnx"
    runtime = onnx_runtime_factory(path, "tiny_uni", "1", settings)
    assert runtime.session.get_session_options().enable_cpu_mem_arena is arena  # type: ignore[attr-defined]


# -- ModelRuntime: pad, run, split ----------------------------------------------------------------
def test_the_runtime_says_what_it_runs_and_where(
    runtimes: dict[str, ModelRuntime], model_repository: Path
) -> None:
    runtime = runtimes["tiny_bi"]
    assert runtime.provider == "CPUExecutionProvider" and runtime.on_gpu is False
    assert runtime.path == model_file(model_repository, "tiny_bi")
    assert (runtime.spec.name, runtime.spec.version) == ("tiny_bi", "1")
    assert runtime.session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize("name", ["tiny_bi", "tiny_uni"])
def test_a_batch_gives_each_sequence_its_results_alone(
    runtimes: dict[str, ModelRuntime], reference: Reference, name: str
) -> None:
    runtime = runtimes[name]
    sequences = random_sequences(1, [7, 1, 30, 12])
    results = runtime.run_batch(sequences, [None] * 4, runtime.spec.output_names)
    assert len(results) == 4
    for sequence, result in zip(sequences, results, strict=True):
        assert_close(result, reference.run(name, sequence))


@pytest.mark.parametrize("name", ["tiny_bi", "tiny_uni"])
def test_outputs_are_cut_to_each_length_and_states_are_per_sequence(
    runtimes: dict[str, ModelRuntime], name: str
) -> None:
    runtime = runtimes[name]
    dirs, widths = LAYERS[name]
    lengths = [3, 11, 1]
    results = runtime.run_batch(random_sequences(2, lengths), [None] * 3, runtime.spec.output_names)
    for length, result in zip(lengths, results, strict=True):
        assert result["outputs"].shape == (length, WIDTH[name])  # (L_b, D), not (T, D)
        assert result["logits"].shape == result["probs"].shape == (3,)
        np.testing.assert_allclose(result["probs"].sum(), 1.0, atol=1e-6)
        for n, width in enumerate(widths):
            for kind in ("c", "h"):
                state = result[f"final_{kind}_{n}"]
                assert state.shape == (dirs, width)  # (dirs, H_n): the batch axis taken out
                assert state.flags.c_contiguous  # a copy, not a strided view of the batch


def test_padding_never_reaches_a_result(runtimes: dict[str, ModelRuntime]) -> None:
    runtime = runtimes["tiny_bi"]
    short = random_sequences(3, [4])[0]
    alone = runtime.run_batch([short], [None], runtime.spec.output_names)[0]
    for companion in (50, 120):  # padded to T = 50, then 120, beside a longer sequence
        beside = runtime.run_batch(
            [short, *random_sequences(companion, [companion])], [None] * 2, ["outputs", "probs"]
        )[0]
        assert_close(beside, {k: alone[k] for k in ("outputs", "probs")})


def test_only_the_outputs_asked_for_are_returned(runtimes: dict[str, ModelRuntime]) -> None:
    runtime = runtimes["tiny_uni"]
    sequences = random_sequences(4, [5, 2])
    full = runtime.run_batch(sequences, [None, None], runtime.spec.output_names)
    some = runtime.run_batch(sequences, [None, None], {"probs", "final_h_1", "no_such_output"})
    for whole, part in zip(full, some, strict=True):
        assert_close(part, {k: whole[k] for k in ("probs", "final_h_1")})
    # ORT returns every output for an empty list of names: run_batch returns none.
    assert runtime.run_batch(sequences, [None, None], []) == [{}, {}]


def test_initial_states_are_each_sequences_own(
    runtimes: dict[str, ModelRuntime], reference: Reference
) -> None:
    runtime = runtimes["tiny_uni"]
    sequences = random_sequences(5, [6, 9, 4])
    given = random_states("tiny_uni", 6)
    partial = {"initial_h_1": random_states("tiny_uni", 7)["initial_h_1"]}
    # Row 0 from its states, row 1 from zeros (None), row 2 from one state and zeros elsewhere.
    results = runtime.run_batch(sequences, [given, None, partial], runtime.spec.output_names)
    expected = [
        reference.run("tiny_uni", sequences[0], **given),
        reference.run("tiny_uni", sequences[1], **zero_states("tiny_uni")),
        reference.run("tiny_uni", sequences[2], **(zero_states("tiny_uni") | partial)),
    ]
    for result, wanted in zip(results, expected, strict=True):
        assert_close(result, wanted)
    # The states changed the answer: a run from zeros differs.
    from_zeros = runtime.run_batch(sequences[:1], [None], ["probs"])[0]["probs"]
    assert np.abs(from_zeros - results[0]["probs"]).max() > 1e-3


def test_a_run_continued_from_its_final_states_equals_the_whole_run(
    runtimes: dict[str, ModelRuntime],
) -> None:
    runtime = runtimes["tiny_uni"]  # one direction: the first chunk does not see the second
    names = runtime.spec.output_names
    whole_sequence = random_sequences(8, [25])[0]
    (whole,) = runtime.run_batch([whole_sequence], [None], names)
    (first,) = runtime.run_batch([whole_sequence[:10]], [None], names)
    states = {s.name: first[s.output] for s in runtime.spec.state_inputs}
    (second,) = runtime.run_batch([whole_sequence[10:]], [states], names)
    assert_close({k: v for k, v in second.items() if k != "outputs"},
                 {k: v for k, v in whole.items() if k != "outputs"})  # fmt: skip
    np.testing.assert_allclose(
        np.concatenate([first["outputs"], second["outputs"]]), whole["outputs"], atol=TOL
    )


class WrongBatchSession:
    """A session whose outputs carry one row too many on their batch axis."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = self.session.run(names, feeds)
        return [
            np.concatenate([o, o[:, :1]], axis=1)
            if name.startswith("final_")
            else np.concatenate([o, o[:1]])
            for name, o in zip(names, outputs, strict=True)
        ]


@pytest.mark.parametrize(
    ("output", "words"),
    [("probs", "output probs has batch 3 (axis 0), expected 2"),
     ("final_c_0", "output final_c_0 has batch 3 (axis 1), expected 2")],
    ids=["probs", "final_c_0"],
)  # fmt: skip
def test_an_output_with_another_batch_is_refused_before_splitting(
    runtimes: dict[str, ModelRuntime], monkeypatch: pytest.MonkeyPatch, output: str, words: str
) -> None:
    runtime = runtimes["tiny_uni"]
    monkeypatch.setattr(runtime, "session", WrongBatchSession(runtime.session))
    with pytest.raises(RuntimeError, match=f"^{re.escape(words)}$"):
        runtime.run_batch(random_sequences(9, [3, 4]), [None, None], [output])


def test_warmup_runs_every_batch_size_and_length_once(
    runtimes: dict[str, ModelRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtimes["tiny_bi"]
    ran: list[tuple[list[int], list[Any], frozenset[str]]] = []
    run_batch = runtime.run_batch

    def recording(sequences, initial_states, output_names):  # type: ignore[no-untyped-def]
        assert all(s.shape[1] == FEATURES and s.dtype == np.float32 for s in sequences)
        ran.append(([len(s) for s in sequences], list(initial_states), frozenset(output_names)))
        return run_batch(sequences, initial_states, output_names)

    monkeypatch.setattr(runtime, "run_batch", recording)
    seconds = runtime.warmup([1, 3], [2, 5])
    everything = frozenset(runtime.spec.output_names)
    assert ran == [
        ([2], [None], everything),
        ([5], [None], everything),
        ([2, 2, 2], [None] * 3, everything),
        ([5, 5, 5], [None] * 3, everything),
    ]
    assert isinstance(seconds, float) and seconds >= 0


def test_an_int8_model_on_a_gpu_server_gets_a_cpu_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where CUDA loads, an int8 graph is moved to a CPU session of its own: its kernels are
    # CPU-only. CUDA is stood in for (no GPU here): the first session claims to run on it.
    import torch

    from contract.providers import CPU, CUDA
    from export.exporter import export_model
    from export.verify import VerifySettings
    from models.architectures import LSTMClassifier, LSTMClassifierConfig
    from service.engine.runtime import session as session_module

    torch.manual_seed(0)
    model = LSTMClassifier(LSTMClassifierConfig(FEATURES, (8,), 3))
    fast = VerifySettings(max_length=24, batch_size=6, num_batches=2)
    path = export_model(model, tmp_path, "m_int8", 1, verify=fast, precision="int8").model_path
    real, asked = session_module.create_session, []

    def on_cuda_first(source: Any, preference: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(preference)
        session, provider = real(source, "cpu", *args, **kwargs)
        return session, CUDA if preference == "cuda" else provider

    monkeypatch.setattr(session_module, "create_session", on_cuda_first)
    runtime = ModelRuntime(path, "m_int8", "1", "cuda", 2)
    assert asked == ["cuda", "cpu"] and runtime.provider == CPU and not runtime.on_gpu
    assert runtime.spec.precision == "int8"
