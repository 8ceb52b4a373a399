"""Test accuracy of an exported graph on JapaneseVowels (``models.data``), as served: batches of
sequences in arrival order, zero-padded, through the service's own session factory.

Only a model of the data set's shape (``F`` = 12 features, 9 classes) has a test accuracy; for
any other, ``test_accuracy`` says None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from contract.names import INPUTS, LENGTHS, PROBS
from models.architectures import LSTMClassifierConfig
from models.data import SequenceDataset, load_japanese_vowels
from padding import pad_sequences

DATASET = "JapaneseVowels test"
BATCH = 64
"""Sequences per run: the service's default ``max_batch_size``, so int8's per-batch input scale
is measured as it is served."""


@dataclass(frozen=True)
class Accuracy:
    correct: int
    total: int

    @property
    def value(self) -> float:
        return self.correct / self.total


def matching_test_set(config: LSTMClassifierConfig) -> SequenceDataset | None:
    """The JapaneseVowels test set if ``config`` is of its shape, else None."""
    data = load_japanese_vowels("test")
    if config.input_size != data.num_features or config.num_classes != len(data.labels):
        return None
    return data


def accuracy_on(session: ort.InferenceSession, data: SequenceDataset) -> Accuracy:
    """The share of ``data``'s sequences whose argmax of ``probs`` is their target."""
    correct = 0
    for start in range(0, len(data), BATCH):
        padded, lengths = pad_sequences(data.sequences[start : start + BATCH])
        (probs,) = session.run([PROBS], {INPUTS: padded, LENGTHS: lengths})
        correct += int(np.sum(probs.argmax(axis=1) == data.targets[start : start + BATCH]))
    return Accuracy(correct, len(data))
