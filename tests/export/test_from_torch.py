"""``python -m export --torch-module``: a user's own torch module (``tests.export.user_models``)
and its state_dict in, a verified model in the repository out, served in process with the
user's own numbers; and what it refuses, each with exit status 2 and a message naming why.

Shapes: ``B`` batch, ``T`` padded time, ``L`` one sequence's length, ``F`` features, ``C``
classes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from torch import nn

from export.cli import main
from export.from_torch import (
    TorchImportError,
    check_forward,
    import_torch_model,
    map_module,
    to_classifier,
)
from export.metadata import read_metadata
from export.reference import random_padded_batch
from export.verify import VerifySettings
from models.architectures import LSTMClassifier
from models.checkpoint import file_sha256, save_checkpoint
from tests.export import user_models
from tests.export.user_models import CLASSES, FEATURES
from tests.support.service_app import app_client
from tests.support.tiny_repository import tiny_settings
from tests.support.v2_bodies import v2_json

REPO_ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-5
FAST = ["--max-length", "24"]
USER = "tests.export.user_models"


def run_logits_net(model: nn.Module, sequence: np.ndarray) -> dict[str, np.ndarray]:
    """A batch-first module returning logits, on one sequence ``(L, F)``: logits, probs
    ``(C,)``."""
    with torch.no_grad():
        logits = model(torch.from_numpy(sequence)[None])[0]
    return {"logits": logits.numpy(), "probs": torch.softmax(logits, 0).numpy()}


def run_time_first_net(model: nn.Module, sequence: np.ndarray) -> dict[str, np.ndarray]:
    """``TimeFirstNet`` (input ``(L, 1, F)``, returns ``(probs, h_n)``): its probs, and its own
    head on its ``h_n`` for the logits."""
    with torch.no_grad():
        probs, h_n = model(torch.from_numpy(sequence)[:, None])
        logits = model.head(h_n[-1])
    return {"logits": logits[0].numpy(), "probs": probs[0].numpy()}


@dataclass(frozen=True)
class Case:
    """One user model: how to build it here, how the CLI names it, how to run it here."""

    name: str
    build: Callable[[], nn.Module]
    flags: tuple[str, ...]
    labels: tuple[str, ...]
    layer_sizes: list[int]
    bidirectional: bool
    run: Callable[[nn.Module, np.ndarray], dict[str, np.ndarray]]


CASES = {
    case.name: case
    for case in (
        Case(
            "bi3",  # nn.LSTM(12, 16, num_layers=3, bidirectional, batch_first), head on h_n
            lambda: user_models.BiLSTMNet(hidden=16, num_layers=3),
            ("--torch-module", f"{USER}:BiLSTMNet", "--torch-kwargs", '{"hidden": 16}')
            + ("--labels", "walk,run,sit"),
            ("walk", "run", "sit"),
            [16, 16, 16],
            True,
            run_logits_net,
        ),
        Case(
            "uni2",  # a factory: nn.LSTM(12, 10, num_layers=2) time first, forward ends in softmax
            lambda: user_models.build_unidirectional(hidden=10),
            ("--torch-module", f"{USER}:build_unidirectional"),
            ("0", "1", "2"),
            [10, 10],
            False,
            run_time_first_net,
        ),
        Case(
            "stacked",  # two nn.LSTMs of widths 9 and 5, bias=False on the second and the head
            user_models.StackedNet,
            ("--torch-module", f"{USER}:StackedNet"),
            ("0", "1", "2"),
            [9, 5],
            True,
            run_logits_net,
        ),
    )
}


def user_model(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """``build()`` with random weights (seeded), biases widened so that every gate matters, in
    eval mode."""
    torch.manual_seed(seed)
    model = build()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "bias" in name:
                parameter.uniform_(-1.0, 1.0)
    return model.eval()


def save_weights(model: nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


@dataclass(frozen=True)
class Exported:
    repository: Path
    users: dict[str, nn.Module]
    """The user's modules, by model name, holding the weights that were exported."""
    state_dicts: dict[str, Path]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Every ``CASES`` model exported through the CLI into one repository."""
    folder = tmp_path_factory.mktemp("from_torch")
    repository = folder / "repo"
    users, state_dicts = {}, {}
    for seed, case in enumerate(CASES.values()):
        users[case.name] = user_model(case.build, seed)
        state_dicts[case.name] = save_weights(users[case.name], folder / f"{case.name}.pt")
        argv = [*case.flags, "--state-dict", str(state_dicts[case.name]), "--name", case.name]
        assert main([*argv, "--repository", str(repository), *FAST]) == 0, case.name
    return Exported(repository, users, state_dicts)


def expected_of(exported: Exported, name: str, sequence: np.ndarray) -> dict[str, np.ndarray]:
    """The user's own module on one sequence ``(L, F)``, alone."""
    return CASES[name].run(exported.users[name], sequence)


def outputs_of(response: httpx.Response) -> dict[str, np.ndarray]:
    assert response.status_code == 200, response.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}


# -- what is exported and served -----------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_the_metadata_records_the_users_model(exported: Exported, name: str) -> None:
    case = CASES[name]
    metadata = read_metadata(exported.repository / name / "1" / "model.onnx")
    assert json.loads(metadata["layer_sizes"]) == case.layer_sizes
    assert metadata["bidirectional"] == ("true" if case.bidirectional else "false")
    assert metadata["input_size"] == str(FEATURES) and metadata["num_classes"] == str(CLASSES)
    assert tuple(json.loads(metadata["labels"])) == case.labels
    assert metadata["source_checkpoint_sha256"] == file_sha256(exported.state_dicts[name])


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CASES))
async def test_served_answers_equal_the_users_module_on_each_sequence_alone(
    exported: Exported, name: str
) -> None:
    """V2 with one sequence a request, and v1 with all of them in one request (batched by the
    service), against the user's module run on each sequence alone."""
    rng = np.random.default_rng(3)
    sequences = [rng.standard_normal((n, FEATURES)).astype(np.float32) for n in (1, 9, 23, 4)]
    labels = CASES[name].labels
    async with app_client(tiny_settings(exported.repository)) as http:
        for sequence in sequences:
            body = v2_json(sequence[None], [len(sequence)],
                           outputs=[{"name": "logits"}, {"name": "probs"}])  # fmt: skip
            got = outputs_of(await http.post(f"/v2/models/{name}/infer", json=body))
            want = expected_of(exported, name, sequence)
            np.testing.assert_allclose(got["logits"][0], want["logits"], atol=TOL)
            np.testing.assert_allclose(got["probs"][0], want["probs"], atol=TOL)
        body = {"sequences": [s.tolist() for s in sequences], "return": ["label", "probabilities"]}
        response = await http.post(f"/v1/models/{name}/predict", json=body)
    assert response.status_code == 200, response.text
    for sequence, result in zip(sequences, response.json()["results"], strict=True):
        want = expected_of(exported, name, sequence)
        np.testing.assert_allclose(result["probabilities"], want["probs"], atol=TOL)
        assert result["label"] == labels[int(np.argmax(want["probs"]))]


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CASES))
async def test_padded_batches_of_mixed_lengths_equal_the_users_module_alone(
    exported: Exported, name: str
) -> None:
    """Rows of padded V2 batches (garbage past each length) against the user's module on each
    row's sequence alone."""
    rng = np.random.default_rng(4)
    async with app_client(tiny_settings(exported.repository)) as http:
        for lengths in ([5, 1, 17, 9], [30, 2, 30]):
            batch, lengths_array = random_padded_batch(lengths, FEATURES, rng)
            body = v2_json(batch, lengths, outputs=[{"name": "logits"}, {"name": "probs"}])
            got = outputs_of(await http.post(f"/v2/models/{name}/infer", json=body))
            for row, length in enumerate(lengths_array):
                want = expected_of(exported, name, batch[row, :length])
                np.testing.assert_allclose(got["logits"][row], want["logits"], atol=TOL)
                np.testing.assert_allclose(got["probs"][row], want["probs"], atol=TOL)


def test_the_mapping_copies_every_layer_and_finds_what_the_forward_returns(
    tmp_path: Path,
) -> None:
    """``import_torch_model`` itself: the forward check says logits or probs; ``bias=False``
    gives zero biases; the classifier's layers hold the user's ``weight_*_l{k}``."""
    bi = user_model(CASES["bi3"].build)
    imported = import_torch_model(
        f"{USER}:BiLSTMNet", save_weights(bi, tmp_path / "bi.pt"), kwargs={"hidden": 16}
    )
    assert imported.check.output == "logits" and imported.check.sequences >= 2
    assert imported.model.config.labels == ("0", "1", "2")
    for k, layer in enumerate(imported.model.layers):  # layer k of the user's nn.LSTM
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            for suffix in ("", "_reverse"):
                mapped = getattr(layer, f"{name}_l0{suffix}")
                assert torch.equal(mapped, getattr(bi.lstm, f"{name}_l{k}{suffix}"))
    uni = user_model(CASES["uni2"].build)
    imported = import_torch_model(
        f"{USER}:build_unidirectional", save_weights(uni, tmp_path / "uni.pt")
    )
    assert imported.check.output == "probs"
    stacked = user_model(CASES["stacked"].build)
    imported = import_torch_model(f"{USER}:StackedNet", save_weights(stacked, tmp_path / "s.pt"))
    top = imported.model.layers[1]
    assert not top.bias_ih_l0.any() and not top.bias_hh_l0_reverse.any()
    assert not imported.model.head.bias.any()
    assert torch.equal(top.weight_hh_l0_reverse, stacked.second.weight_hh_l0_reverse)


def test_a_rerun_on_the_same_state_dict_writes_nothing(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES["stacked"]
    argv = [*case.flags, "--state-dict", str(exported.state_dicts["stacked"]), "--name", "stacked"]
    assert main([*argv, "--repository", str(exported.repository), *FAST]) == 0
    out = capsys.readouterr().out
    assert "up to date" in out and "importing" not in out
    assert not (exported.repository / "stacked" / "2").exists()


# -- what is refused -----------------------------------------------------------------------
def export_user(
    tmp_path: Path, import_path: str, build: Callable[[], nn.Module], *extra: str
) -> tuple[int, str, Path]:
    """``python -m export --torch-module import_path`` with ``build()``'s own state_dict: the
    exit status, what it printed (capsys is read by the caller) and the repository."""
    weights = save_weights(user_model(build), tmp_path / "weights.pt")
    repository = tmp_path / "repo"
    argv = ["--torch-module", import_path, "--state-dict", str(weights), "--name", "m"]
    code = main([*argv, "--repository", str(repository), *FAST, *extra])
    return code, str(weights), repository


@pytest.mark.parametrize(
    "attribute, build, messages",
    [
        ("ProjectedNet", user_models.ProjectedNet, ["lstm (nn.LSTM)", "proj_size=8", "ONNX"]),
        ("GRUNet", user_models.GRUNet, ["encoder.1 (nn.GRU)", "cannot be mapped"]),
        ("NarrowHeadNet", user_models.NarrowHeadNet, ["reads 16 features", "2 x 16 = 32"]),
        ("LastStepNet", user_models.LastStepNet, ["not the exported graph", "out[:, -1]"]),
    ],
)
def test_what_the_graph_cannot_be_exits_2_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    attribute: str,
    build: Callable[[], nn.Module],
    messages: list[str],
) -> None:
    code, _, repository = export_user(tmp_path, f"{USER}:{attribute}", build)
    out = capsys.readouterr().out
    assert code == 2
    (error,) = [line for line in out.splitlines() if line.startswith("error: ")]
    for message in messages:
        assert message in error
    assert not repository.exists()


def test_a_state_dict_that_does_not_fit_exits_2_naming_the_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 3 layers saved, 2 built: layer 2's weights are unexpected.
    code, weights, _ = export_user(tmp_path, f"{USER}:BiLSTMNet", CASES["bi3"].build,
                                   "--torch-kwargs", '{"num_layers": 2}')  # fmt: skip
    out = capsys.readouterr().out
    assert code == 2
    assert f"the state_dict {weights} does not fit the module" in out
    assert "unexpected keys [lstm.bias_hh_l2, lstm.bias_hh_l2_reverse" in out
    assert "missing" not in out

    state = torch.load(weights, weights_only=True)
    state["head.weights"] = state.pop("head.weight")  # a renamed key: missing and unexpected
    torch.save(state, weights)
    argv = ["--torch-module", f"{USER}:BiLSTMNet", "--state-dict", weights, "--name", "m"]
    assert main([*argv, "--repository", str(tmp_path / "repo"), *FAST]) == 2
    out = capsys.readouterr().out
    assert "missing keys [head.weight]; unexpected keys [head.weights]" in out


def test_a_file_that_is_no_state_dict_exits_2(
    make_model: Callable[..., LSTMClassifier], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--torch-module", f"{USER}:StackedNet", "--name", "m", "--repository", str(tmp_path)]
    missing = tmp_path / "missing.pt"
    assert main([*argv, "--state-dict", str(missing)]) == 2
    assert f"cannot read the state_dict {missing}: FileNotFoundError" in capsys.readouterr().out
    checkpoint = save_checkpoint(tmp_path / "ckpt.pt", make_model(False, (6, 4)))
    assert main([*argv, "--state-dict", str(checkpoint)]) == 2  # this project's own checkpoint
    assert f"{checkpoint} does not hold a state_dict" in capsys.readouterr().out


def test_a_forward_that_gives_nan_matches_nothing(tmp_path: Path) -> None:
    class NaNNet(user_models.StackedNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * float("nan")

    user = NaNNet()
    model = to_classifier(map_module(user))
    with pytest.raises(TorchImportError, match="differs from the graph's logits by inf"):
        check_forward(user, model, batch_first=True, settings=VerifySettings(max_length=8))


def test_a_softmax_module_is_noted_and_the_probs_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, repository = export_user(tmp_path, f"{USER}:build_unidirectional", CASES["uni2"].build)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "note: softmax (nn.Softmax) is not part of the graph" in out
    assert "its forward returns the graph's probs" in out
    assert (repository / "m" / "1" / "model.onnx").is_file()


@pytest.mark.parametrize(
    "import_path, message",
    [
        ("tests.export.user_models", "expected MODULE:NAME"),
        ("no_such_package.models:build", "cannot import no_such_package.models"),
        (f"{USER}:Missing", "has no attribute 'Missing'"),
        (f"{USER}:not_a_module", "returned int, not a torch.nn.Module"),
        (f"{USER}:FEATURES", "is int, not a torch.nn.Module class or factory"),
    ],
)
def test_a_bad_import_path_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], import_path: str, message: str
) -> None:
    code, _, _ = export_user(tmp_path, import_path, user_models.StackedNet)
    assert code == 2
    assert message in capsys.readouterr().out


def test_labels_that_do_not_fit_the_head_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = export_user(tmp_path, f"{USER}:StackedNet", user_models.StackedNet,
                             "--labels", "yes,no")  # fmt: skip
    assert code == 2
    assert "2 labels given for 3 classes" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ckpt.pt", "--torch-module", f"{USER}:StackedNet", "--state-dict", "w.pt"], "not both"),
        (["--torch-module", f"{USER}:StackedNet"], "needs --state-dict"),
        (["ckpt.pt", "--labels", "a,b"], "--labels: only with --torch-module"),
        ([], "give a checkpoint file, or --torch-module"),
        (["--torch-module", "m:f", "--state-dict", "w.pt", "--torch-kwargs", "[1]"], "object"),
        (["--labels", "a", "--labels-file", "l.txt"], "not allowed with"),
    ],
)
def test_flags_that_do_not_go_together_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--name", "m"])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_users_package_is_found_from_the_current_directory(tmp_path: Path) -> None:
    """As ``python -m`` does: a package in the directory the command runs in, not installed."""
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = Path(user_models.__file__).read_text()
    (package / "models.py").write_text(source + "\n\ndef build():\n    return StackedNet()\n")
    weights = save_weights(user_model(user_models.StackedNet), tmp_path / "weights.pt")
    labels = tmp_path / "labels.txt"
    labels.write_text("up\ndown\n\nleft\n")
    command = [sys.executable, "-m", "export", "--torch-module", "mypkg.models:build"]
    result = subprocess.run(
        [*command, "--state-dict", "weights.pt", "--labels-file", str(labels), "--name", "mine",
         "--repository", "repo", *FAST],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"weights of {Path('weights.pt')}" in result.stdout
    metadata = read_metadata(tmp_path / "repo" / "mine" / "1" / "model.onnx")
    assert json.loads(metadata["labels"]) == ["up", "down", "left"]
    assert metadata["source_checkpoint_sha256"] == file_sha256(weights)
