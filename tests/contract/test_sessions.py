"""The one session factory and the contract check of a session (``contract.sessions``), on the
tiny exported models (``tests.support.tiny_repository``): ``create_session``'s options and
provider, and ``read_spec``'s checks of the model contract and what it reads.

Shapes: ``F`` = 5 features, ``C`` = 3 classes, ``D`` per-step output width (16 for ``tiny_bi``,
12 for ``tiny_uni``), ``dirs`` directions, ``H_n`` width of layer ``n``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from contract import sessions as sessions_module
from contract.providers import CPU, CUDA, ProviderUnavailableError
from contract.sessions import create_session, read_spec, session_options
from contract.spec import ContractError, StateInput, decode_metadata
from export.metadata import read_metadata
from tests.support.tiny_repository import FEATURES, LABELS

LAYERS = {"tiny_bi": (2, (8, 8)), "tiny_uni": (1, (8, 12))}  # dirs, (H_0, H_1)
WIDTH = {"tiny_bi": 16, "tiny_uni": 12}  # D: dirs x H_last


def model_file(repo: Path, name: str) -> Path:
    return repo / name / "1" / "model.onnx"


@pytest.fixture(scope="module")
def sessions(model_repository: Path) -> dict[str, ort.InferenceSession]:
    """``tiny_bi`` and ``tiny_uni`` on the CPU, one thread."""
    return {
        name: create_session(model_file(model_repository, name), "cpu", 1)[0]
        for name in ("tiny_bi", "tiny_uni")
    }


# -- create_session: the options and the provider of every session ------------------------------
def test_a_cpu_session_says_it_runs_on_the_cpu(model_repository: Path) -> None:
    session, provider = create_session(model_file(model_repository, "tiny_uni"), "cpu", 2)
    assert provider == CPU == "CPUExecutionProvider" == session.get_providers()[0]
    options = session.get_session_options()
    assert (options.intra_op_num_threads, options.enable_cpu_mem_arena) == (2, True)


def test_a_session_opens_from_bytes_as_from_a_file(model_repository: Path) -> None:
    path = model_file(model_repository, "tiny_bi")
    from_bytes, provider = create_session(path.read_bytes(), "cpu", 1, cpu_mem_arena=False)
    assert provider == CPU
    assert from_bytes.get_session_options().enable_cpu_mem_arena is False
    from_file, _ = create_session(str(path), "cpu", 1)
    assert read_spec("m", "1", from_bytes) == read_spec("m", "1", from_file)


def test_an_unknown_provider_is_refused(model_repository: Path) -> None:
    with pytest.raises(ValueError, match="provider must be one of"):
        create_session(model_file(model_repository, "tiny_uni"), "tpu", 1)


class FallbackSession:
    """What ORT gives where CUDA is asked for but does not load: a session on the CPU."""

    def __init__(self, *args: Any, providers: list[Any], **kwargs: Any) -> None:
        self.asked = providers

    def get_providers(self) -> list[str]:
        return [CPU]


def _cuda_looks_possible_but_falls_back(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    asked: list[Any] = []

    def fallback(*args: Any, providers: list[Any], **kwargs: Any) -> FallbackSession:
        asked.extend(providers)
        return FallbackSession(providers=providers)

    monkeypatch.setattr(sessions_module, "candidate_providers", lambda preference: [CUDA, CPU])
    monkeypatch.setattr(sessions_module.ort, "InferenceSession", fallback)
    return asked


def test_auto_falls_back_to_the_cpu_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    asked = _cuda_looks_possible_but_falls_back(monkeypatch)
    with caplog.at_level(logging.WARNING, logger=sessions_module.__name__):
        _, provider = create_session(b"model", "auto", 4, cuda_device_id=3)
    assert provider == CPU
    assert asked == [(CUDA, {"use_tf32": "0", "device_id": "3"}), CPU]  # exact FP32 on CUDA
    assert "CUDA provider did not load" in caplog.text


def test_cuda_asked_for_never_falls_back_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    _cuda_looks_possible_but_falls_back(monkeypatch)
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider was asked for"):
        create_session(b"model", "cuda", 4)


def test_tf32_is_asked_for_only_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _cuda_looks_possible_but_falls_back(monkeypatch)
    create_session(b"model", "auto", 1, tf32=True)
    assert asked[0] == (CUDA, {"use_tf32": "1", "device_id": "0"})


def test_session_options_keep_the_arena_unless_told() -> None:
    assert session_options(1).enable_cpu_mem_arena is True
    assert session_options(1, cpu_mem_arena=False).enable_cpu_mem_arena is False


def test_session_options_are_the_services() -> None:
    options = session_options(3)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.log_severity_level == 3
    # Idle ORT threads do not spin (they would take the event loop's cores).
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


# -- read_spec: what a session says, checked against the contract --------------------------------
@dataclass
class Arg:
    """What ``read_spec`` reads of an ORT ``NodeArg``."""

    name: str
    type: str
    shape: list[Any]


@dataclass
class SessionView:
    """What ``read_spec`` reads of an ORT session, copied from a real one so that a test can break
    one thing of it at a time."""

    inputs: list[Arg]
    outputs: list[Arg]
    initializers: list[Arg]
    metadata: dict[str, str] = field(default_factory=dict)
    session: ort.InferenceSession | None = None
    """The real session, which runs what ``read_spec`` runs to find the outputs' axes."""

    @classmethod
    def of(cls, session: ort.InferenceSession) -> SessionView:
        def args(node_args: list[Any]) -> list[Arg]:
            return [Arg(a.name, a.type, list(a.shape)) for a in node_args]

        return cls(
            args(session.get_inputs()),
            args(session.get_outputs()),
            args(session.get_overridable_initializers()),
            dict(session.get_modelmeta().custom_metadata_map),
            session,
        )

    def run(self, names: list[str], feeds: dict[str, Any]) -> list[Any]:
        assert self.session is not None
        return list(self.session.run(names, feeds))

    def get_inputs(self) -> list[Arg]:
        return self.inputs

    def get_outputs(self) -> list[Arg]:
        return self.outputs

    def get_overridable_initializers(self) -> list[Arg]:
        return self.initializers

    def get_modelmeta(self) -> SimpleNamespace:
        return SimpleNamespace(custom_metadata_map=self.metadata)


def broken(view: SessionView, kind: str, name: str, changes: dict[str, Any] | None) -> SessionView:
    """``view`` with its ``kind`` (``inputs``, ``outputs``, ``initializers``) named ``name``
    dropped (``changes`` None), changed, or added with ``changes`` if it has none of that name."""
    args: list[Arg] = getattr(view, kind)
    if changes is None:
        assert any(a.name == name for a in args), name
        new = [a for a in args if a.name != name]
    elif any(a.name == name for a in args):
        new = [replace(a, **changes) if a.name == name else a for a in args]
    else:
        new = [*args, Arg(name, **changes)]
    result = replace(view)
    setattr(result, kind, new)
    return result


@pytest.fixture
def view(sessions: dict[str, ort.InferenceSession]) -> SessionView:
    """``tiny_uni``'s session as ``read_spec`` sees it, to break."""
    return SessionView.of(sessions["tiny_uni"])


@pytest.mark.parametrize("name", ["tiny_bi", "tiny_uni"])
def test_read_spec_describes_the_exported_model(
    sessions: dict[str, ort.InferenceSession], model_repository: Path, name: str
) -> None:
    dirs, (h0, h1) = LAYERS[name]
    spec = read_spec(name, "7", sessions[name])
    assert (spec.name, spec.version) == (name, "7")
    assert (spec.input_size, spec.num_classes, spec.labels) == (FEATURES, 3, list(LABELS))
    assert spec.layers == 2
    assert spec.state_inputs == [  # sorted by name
        StateInput("initial_c_0", "final_c_0", dirs, h0),
        StateInput("initial_c_1", "final_c_1", dirs, h1),
        StateInput("initial_h_0", "final_h_0", dirs, h0),
        StateInput("initial_h_1", "final_h_1", dirs, h1),
    ]
    assert spec.output_names == [
        "logits", "probs", "outputs", "final_c_0", "final_h_0", "final_c_1", "final_h_1",
    ]  # fmt: skip
    assert spec.input_shapes == {"inputs": [-1, -1, FEATURES], "lengths": [-1]}
    assert spec.output_shapes["probs"] == [-1, 3]
    assert spec.output_shapes["outputs"] == [-1, -1, WIDTH[name]]
    assert spec.output_shapes["final_h_1"] == [dirs, -1, h1]
    stored = read_metadata(model_file(model_repository, name))
    assert spec.metadata == decode_metadata(stored)
    assert spec.metadata["layer_sizes"] == [h0, h1] and spec.metadata["version"] == "1"


def test_read_spec_reads_a_view_as_it_reads_the_session(
    sessions: dict[str, ort.InferenceSession], view: SessionView
) -> None:
    # The view the contract tests below break is faithful to the session it was copied from.
    real = read_spec("tiny_uni", "1", sessions["tiny_uni"])
    assert read_spec("tiny_uni", "1", view) == real  # type: ignore[arg-type]


BROKEN = [
    # (what is broken: which of the view's args, its name, the change or None to drop it; the
    # words of the ContractError)
    ("an extra input", "inputs", "mask", {"type": "tensor(bool)", "shape": [1]},
     "inputs ['mask'] are neither"),
    ("integer inputs", "inputs", "inputs", {"type": "tensor(int32)"},
     "no input can be the sequence: none is float of rank 3"),
    ("inputs of rank 2", "inputs", "inputs", {"shape": ["b", 5]},
     "no input can be the sequence"),
    ("two sequences", "inputs", "more", {"type": "tensor(float)", "shape": ["b", "t", 5]},
     "inputs ['inputs', 'more'] could each be the sequence input: name it with the config.pbtxt "
     "parameter sequence_input"),
    ("two lengths", "inputs", "more", {"type": "tensor(int64)", "shape": ["b"]},
     "could each be the lengths input"),
    ("a dynamic F", "inputs", "inputs", {"shape": ["b", "t", "f"]},
     "the feature size F of 'inputs' is not fixed"),
    ("a fixed batch", "inputs", "inputs", {"shape": [1, "t", 5]},
     "input 'inputs' has a fixed batch size 1"),
    ("a fixed time", "inputs", "inputs", {"shape": ["b", 30, 5]},
     "input 'inputs' has a fixed time size 30"),
    ("lengths of a fixed batch", "inputs", "lengths", {"shape": [4]},
     "input 'lengths' has a fixed batch size 4"),
    ("a state without its final state", "outputs", "final_c_1", None,
     "state input initial_c_1 has no matching output final_c_1"),
    ("a state of rank 2", "initializers", "initial_h_0", {"shape": [1, 8]},
     "state input initial_h_0 has no matching output final_h_0"),
    ("a state of dynamic width", "initializers", "initial_h_1", {"shape": [1, "b", "w"]},
     "initial_h_1 must be a fixed size, got 'w'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "kind", "name", "changes", "words"), BROKEN, ids=[b[0] for b in BROKEN]
)
def test_read_spec_refuses_what_breaks_the_contract(
    view: SessionView, what: str, kind: str, name: str, changes: dict[str, Any] | None, words: str
) -> None:
    with pytest.raises(ContractError) as raised:
        read_spec("tiny_uni", "1", broken(view, kind, name, changes))  # type: ignore[arg-type]
    assert words in str(raised.value), (what, str(raised.value))


def test_a_model_without_probabilities_classifies_from_its_logits(view: SessionView) -> None:
    spec = read_spec("tiny_uni", "1", broken(view, "outputs", "probs", None))  # type: ignore[arg-type]
    assert (spec.probs_output, spec.logits_output, spec.class_output) == (None, "logits", "logits")
    assert spec.labels == list(LABELS)


def test_a_model_without_class_outputs_has_no_labels(view: SessionView) -> None:
    view = broken(broken(view, "outputs", "probs", None), "outputs", "logits", None)
    spec = read_spec("tiny_uni", "1", view)  # type: ignore[arg-type]
    assert (spec.class_output, spec.num_classes, spec.labels) == (None, 0, [])
    assert spec.output_names == ["outputs", "final_c_0", "final_h_0", "final_c_1", "final_h_1"]


def test_read_spec_ignores_initializers_that_are_not_states(view: SessionView) -> None:
    before = read_spec("tiny_uni", "1", view)  # type: ignore[arg-type]
    view.initializers.append(Arg("dropout_ratio", "tensor(float)", []))
    assert read_spec("tiny_uni", "1", view).state_inputs == before.state_inputs  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (None, ["0", "1", "2"]),  # none stored: the class indices
        ('["x", "y"]', ["0", "1", "2"]),  # not one per class
        ("[7, 8, 9]", ["7", "8", "9"]),  # names, whatever their JSON type
    ],
    ids=["none stored", "not one per class", "numbers"],
)
def test_labels_are_one_name_per_class_or_the_indices(
    view: SessionView, labels: str | None, expected: list[str]
) -> None:
    view.metadata.pop("labels")
    if labels is not None:
        view.metadata["labels"] = labels
    assert read_spec("tiny_uni", "1", view).labels == expected  # type: ignore[arg-type]


def _identity_model(opset: int, ir_version: int) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("opset", "ir_version", "words", "fix"),
    [
        (17, 14, "ONNX IR version 14; ONNX Runtime", "m.ir_version = 13"),
        (40, 10, "the graph uses opset 40 of ai.onnx; ONNX Runtime", "opset_version="),
    ],
)
def test_a_file_newer_than_onnx_runtime_fails_with_what_to_do(
    opset: int, ir_version: int, words: str, fix: str
) -> None:
    with pytest.raises(ContractError) as raised:
        create_session(_identity_model(opset, ir_version), "cpu", 1)
    assert words in str(raised.value) and fix in str(raised.value)


def test_an_older_opset_and_ir_version_load() -> None:
    session, _ = create_session(_identity_model(13, 7), "cpu", 1)
    assert [i.name for i in session.get_inputs()] == ["x"]
