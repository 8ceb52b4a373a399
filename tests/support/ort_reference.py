"""What the service must answer for a sequence: that sequence run alone, unpadded, through an
in-process ONNX Runtime session of the same ``model.onnx`` (``export.reference.onnx_outputs``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contract.sessions import create_session
from contract.spec import batch_axis
from export.reference import onnx_outputs


class Reference:
    """Each sequence run alone through in-process ORT, for the models ``names`` of the
    repository ``repo`` (version 1)."""

    def __init__(
        self, repo: Path, names: tuple[str, ...] | list[str] = ("tiny_bi", "tiny_uni")
    ) -> None:
        self.sessions = {
            name: create_session(repo / name / "1" / "model.onnx", "cpu", intra_op_threads=0)[0]
            for name in names
        }

    def run(self, model: str, sequence: np.ndarray, **states: np.ndarray) -> dict[str, np.ndarray]:
        """``sequence`` ``(L, F)`` alone through ``model``, from ``states`` (``initial_c_0=``...,
        each ``(dirs, H_n)``; zeros for any not given): every output without its batch axis
        (``outputs`` ``(L, D)``, ``final_*`` ``(dirs, H_n)``, ``logits``/``probs`` ``(C,)``)."""
        out = onnx_outputs(
            self.sessions[model],
            sequence[np.newaxis].astype(np.float32),
            np.array([len(sequence)]),
            {k: v[:, np.newaxis] for k, v in states.items()},
        )
        return {k: np.take(v, 0, axis=batch_axis(k)) for k, v in out.items()}
