"""Example sequences written next to a model: ``<repo>/<name>/examples.json``.

The service shows them read-only (``GET /v1/models/{name}/examples``) and the console's "try it"
panel sends them. For the built-in models they are real JapaneseVowels test utterances (the
first of each class, in test-set order) with their true labels, so a person sees the model
answer data it was never trained on.

The file::

    {"source": "...", "examples": [{"name": "...", "label": "3", "sequence": [[F floats] x L]}]}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

EXAMPLES_FILENAME = "examples.json"


def write_examples(
    repository: str | Path,
    name: str,
    sequences: list[np.ndarray],
    labels: list[str],
    source: str,
    names: list[str] | None = None,
) -> Path:
    """Write ``sequences`` (each ``(L, F)``) and their true ``labels`` to
    ``<repository>/<name>/examples.json`` (replaced atomically); returns its path."""
    if len(sequences) != len(labels):
        raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels")
    names = names or [f"example {k}" for k in range(len(sequences))]
    examples = [
        {"name": n, "label": str(label), "sequence": np.asarray(seq, np.float32).tolist()}
        for n, label, seq in zip(names, labels, sequences, strict=True)
    ]
    path = Path(repository) / name / EXAMPLES_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps({"source": source, "examples": examples}))
    os.replace(partial, path)
    return path


def write_japanese_vowels_examples(
    repository: str | Path, name: str, data_dir: Path | None = None
) -> Path:
    """The first JapaneseVowels test utterance of each class, as ``name``'s examples."""
    from models.data import load_japanese_vowels

    test = load_japanese_vowels("test", data_dir)
    first: dict[int, int] = {}
    for index, target in enumerate(test.targets.tolist()):
        first.setdefault(int(target), index)
    chosen = [first[t] for t in sorted(first)]
    labels = [test.labels[int(test.targets[i])] for i in chosen]
    return write_examples(
        repository,
        name,
        [test.sequences[i] for i in chosen],
        labels,
        source="JapaneseVowels test set (not seen in training)",
        names=[f"test utterance #{i}" for i in chosen],
    )
