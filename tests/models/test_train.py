"""``python -m models.train``: a tiny run writes a loadable, reproducible checkpoint."""

from __future__ import annotations

import pytest
import torch

from models.checkpoint import load_checkpoint
from models.train import main

pytestmark = pytest.mark.slow

TINY = ["--layers", "8", "--epochs", "2", "--batch-size", "64"]


def _train(tmp_path, name: str, *extra: str):
    out = tmp_path / f"{name}.pt"
    assert main([*TINY, *extra, "--out", str(out)]) == 0
    return load_checkpoint(out)


def test_train_writes_a_checkpoint_with_its_record(tmp_path):
    model, record = _train(tmp_path, "bi", "--arch", "bidirectional", "--seed", "3")
    config = model.config
    assert config.bidirectional and config.layer_sizes == (8,)
    assert config.input_size == 12 and config.num_classes == 9
    assert config.labels == tuple(str(k) for k in range(1, 10))
    assert 0.0 <= record["test_accuracy"] <= 1.0
    assert record["test_size"] == 370
    assert record["settings"]["seed"] == 3 and record["settings"]["epochs"] == 2
    assert [row["epoch"] for row in record["history"]] == [1, 2]
    assert all(row["loss"] > 0 for row in record["history"])


def test_training_is_reproducible_from_the_seed(tmp_path):
    first, record_a = _train(tmp_path, "a", "--arch", "stacked", "--seed", "7")
    second, record_b = _train(tmp_path, "b", "--arch", "stacked", "--seed", "7")
    other, _ = _train(tmp_path, "c", "--arch", "stacked", "--seed", "8")
    weights_a, weights_b = first.state_dict(), second.state_dict()
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    assert record_a["history"] == record_b["history"]
    assert record_a["test_accuracy"] == record_b["test_accuracy"]
    weights_c = other.state_dict()
    assert not all(torch.equal(weights_a[name], weights_c[name]) for name in weights_a)


def test_topology_flag_trains_one_stack_per_direction(tmp_path):
    model, record = _train(
        tmp_path, "pd", "--arch", "bidirectional", "--topology", "per_direction",
        "--layers", "8", "6",
    )  # fmt: skip
    config = model.config
    assert config.topology == "per_direction" and config.layer_sizes == (8, 6)
    # Layer 1 of each direction reads its own direction's 8-wide layer 0, not 16.
    assert [model.direction_weights(1, d)["weight_ih"].shape[1] for d in (0, 1)] == [8, 8]
    assert record["test_size"] == 370 and all(row["loss"] > 0 for row in record["history"])


def test_topology_per_direction_needs_two_bidirectional_layers(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main([*TINY, "--topology", "per_direction", "--out", str(tmp_path / "x.pt")])
    assert raised.value.code == 2
    assert "needs a bidirectional model of two or more layers" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
