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
