"""Variable-length sequence data: the JapaneseVowels set and padded batches.

JapaneseVowels (UCI; M. Kudo, J. Toyama, M. Shimbo, 1999; CC BY 4.0): 9 speakers, 12 LPC
cepstrum coefficients per step, lengths 7-29; 270 training and 370 test utterances. It ships as
``JapaneseVowels_TRAIN.ts`` / ``JapaneseVowels_TEST.ts`` inside the ``aeon`` package (and
``sktime``); this module reads the files from the installed package, with no download and without
importing the package itself.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from padding import pad_sequences

_PACKAGED_LOCATIONS = {
    "aeon": "datasets/data/JapaneseVowels",
    "sktime": "datasets/data/JapaneseVowels",
}


@dataclass(frozen=True)
class SequenceDataset:
    """Sequences of different lengths with integer targets.

    ``sequences[i]`` is ``(L_i, F)`` float32; ``targets[i]`` indexes ``labels``.
    """

    sequences: list[np.ndarray]
    targets: np.ndarray
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def num_features(self) -> int:
        return int(self.sequences[0].shape[1])

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences], dtype=np.int64)


def parse_ts(text: str) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Parse a multivariate ``.ts`` file (sktime/aeon format) of unequal-length series.

    Returns ``(sequences, class_labels_per_sequence, declared_class_labels)``; each sequence is
    ``(L, F)`` with the ``F`` dimensions that the file separates by ``:``.
    """
    declared: list[str] = []
    sequences: list[np.ndarray] = []
    targets: list[str] = []
    in_data = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            lowered = line.lower()
            if lowered.startswith("@classlabel"):
                parts = line.split()
                if len(parts) > 2 and parts[1].lower() == "true":
                    declared = parts[2:]
            elif lowered.startswith("@data"):
                in_data = True
            continue
        *dimensions, label = line.split(":")
        if not dimensions:
            raise ValueError(f"line {number}: expected dimensions and a class label")
        columns = [np.array(dim.split(","), dtype=np.float32) for dim in dimensions]
        if len({len(c) for c in columns}) != 1:
            raise ValueError(f"line {number}: dimensions of one series have different lengths")
        if sequences and len(columns) != sequences[0].shape[1]:
            raise ValueError(
                f"line {number}: {len(columns)} dimensions, the first series has "
                f"{sequences[0].shape[1]}"
            )
        sequences.append(np.stack(columns, axis=1))
        targets.append(label.strip())
    if not sequences:
        raise ValueError("no @data section with series found")
    return sequences, targets, declared


def find_packaged_file(filename: str) -> Path:
    """Locate a data file shipped inside ``aeon`` or ``sktime`` without importing them."""
    for package, folder in _PACKAGED_LOCATIONS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            candidate = Path(root) / folder / filename
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{filename} not found: install the 'aeon' package (pip install -e '.[train]'), or pass "
        "--data-dir pointing to a folder holding the JapaneseVowels .ts files"
    )


def load_japanese_vowels(split: str, data_dir: str | Path | None = None) -> SequenceDataset:
    """The ``"train"`` or ``"test"`` split of JapaneseVowels, labels ``"1"`` ... ``"9"``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    filename = f"JapaneseVowels_{split.upper()}.ts"
    path = Path(data_dir) / filename if data_dir else find_packaged_file(filename)
    sequences, names, declared = parse_ts(path.read_text())
    labels = tuple(declared) if declared else tuple(sorted(set(names), key=str))
    index = {label: k for k, label in enumerate(labels)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ValueError(f"{path}: class labels {unknown} are not declared in @classLabel")
    targets = np.array([index[name] for name in names], dtype=np.int64)
    return SequenceDataset(sequences, targets, labels)


def iterate_batches(
    dataset: SequenceDataset, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(inputs (B, T, F), lengths (B,), targets (B,))`` batches, shuffled if ``rng`` is set."""
    order = rng.permutation(len(dataset)) if rng is not None else np.arange(len(dataset))
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        inputs, lengths = pad_sequences([dataset.sequences[i] for i in chosen])
        yield inputs, lengths, dataset.targets[chosen]
