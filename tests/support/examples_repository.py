"""A copy of the tiny model repository with an ``examples.json`` next to ``tiny_bi`` and
``tiny_uni`` (``export.examples``), for the tests of the examples route, the console and the
client: random sequences whose label is the class in-process ORT gives them, so a test knows
the class a server must answer."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from export.examples import write_examples
from tests.support.ort_reference import Reference
from tests.support.tiny_repository import FEATURES, LABELS

EXAMPLE_LENGTHS = (7, 12, 4)


def with_examples(source: Path, target: Path) -> Path:
    """``source`` (the tiny repository) copied to ``target``, with examples written; ``target``."""
    shutil.copytree(source, target)
    reference = Reference(target)
    rng = np.random.default_rng(7)
    for name in ("tiny_bi", "tiny_uni"):
        sequences = [rng.normal(size=(n, FEATURES)).astype(np.float32) for n in EXAMPLE_LENGTHS]
        labels = [LABELS[int(np.argmax(reference.run(name, s)["probs"]))] for s in sequences]
        write_examples(target, name, sequences, labels, source="tests", names=None)
    return target
