"""``models.checkpoint``: weights + config + record round trip, loaded with
``weights_only=True``."""

from __future__ import annotations

import hashlib

import pytest
import torch

from models.architectures import LSTMClassifier, LSTMClassifierConfig
from models.checkpoint import CHECKPOINT_FORMAT, file_sha256, load_checkpoint, save_checkpoint
from tests.support.numpy_tf_rnn import padded_batch


class NotAPlainType:
    """Pickled into a checkpoint, this would run code on load without ``weights_only``."""

    def __init__(self) -> None:
        self.value = 1


@pytest.fixture
def model() -> LSTMClassifier:
    config = LSTMClassifierConfig(
        4, (6, 5), 3, bidirectional=True, labels=("a", "b", "c"), dropout=0.1, forget_bias=0.5
    )
    return LSTMClassifier(config)


RECORD = {
    "dataset": "synthetic",
    "test_accuracy": 0.75,
    "settings": {"epochs": 2, "seed": 3},
    "history": [{"epoch": 1, "loss": 1.5}, {"epoch": 2, "loss": 1.25}],
}


def test_round_trip_restores_weights_config_and_record(tmp_path, model, rng):
    path = save_checkpoint(tmp_path / "nested" / "dir" / "model.pt", model, RECORD)
    assert path.is_file()
    loaded, record = load_checkpoint(path)
    assert record == RECORD
    assert loaded.config == model.config
    assert not loaded.training
    original = model.state_dict()
    restored = loaded.state_dict()
    assert original.keys() == restored.keys()
    for name, tensor in original.items():
        assert torch.equal(restored[name], tensor), name
    inputs = padded_batch(rng, [4, 2, 3], 4, 4)
    lengths = torch.tensor([4, 2, 3])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(inputs, lengths).logits, model.eval()(inputs, lengths).logits, rtol=0, atol=0
        )


def test_file_holds_plain_types_only(tmp_path, model):
    path = save_checkpoint(tmp_path / "model.pt", model)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT
    assert payload["record"] == {}
    assert payload["config"]["layer_sizes"] == [6, 5]
    assert load_checkpoint(path)[1] == {}


def test_a_checkpoint_with_pickled_objects_is_refused(tmp_path, model):
    """load_checkpoint reads with weights_only=True: an arbitrary object is never unpickled."""
    path = tmp_path / "evil.pt"
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "config": model.config.to_dict(),
            "state_dict": model.state_dict(),
            "record": {"note": NotAPlainType()},
        },
        path,
    )
    with pytest.raises(ValueError, match="is not a lstm-serving/checkpoint-v1 checkpoint"):
        load_checkpoint(path)


def test_wrong_files_are_rejected(tmp_path, model):
    other_format = tmp_path / "other.pt"
    torch.save({"format": "something-else", "state_dict": model.state_dict()}, other_format)
    plain_list = tmp_path / "list.pt"
    torch.save([1, 2, 3], plain_list)
    text = tmp_path / "text.pt"
    text.write_text("definitely not a checkpoint\n")
    for path in (other_format, plain_list, text):
        with pytest.raises(ValueError, match="is not a lstm-serving/checkpoint-v1 checkpoint"):
            load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_file_sha256_over_several_chunks(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * (3 * 4096 + 7)  # a bit over 3 MiB: several 1 MiB chunks
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(b"")
    assert file_sha256(path) == hashlib.sha256(b"").hexdigest()
