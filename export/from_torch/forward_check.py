"""Does the user's own forward compute what the exported graph will? ``check_forward`` runs both.

The mapping (``export.from_torch.mapping``) sees the module's layers, not its ``forward``: a
forward that reads ``out[:, -1]`` of a bidirectional LSTM (the backward direction after one
step), pools over time, or transforms the state before the head holds the same layers as the
graph and is another model. So the user's module (eval mode) runs on random sequences, each
alone (a batch of one, no padding, laid out as its first ``nn.LSTM``'s ``batch_first`` says),
and its output, a ``(1, C)`` tensor or the first element of a returned tuple or list, must equal
the mapped ``LSTMClassifier``'s logits or, for a forward that ends in a softmax, its probs.

The limit is the export verifier's (``export.verify``): ``tolerance + noise_factor * e32``,
``e32`` the classifier's own float32 error (float32 vs float64 on the same sequences).

Shapes: ``L`` one sequence's length, ``F`` input features, ``C`` classes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.names import LOGITS, PROBS
from export.from_torch.errors import TorchImportError, one_line
from export.reference import torch_outputs
from export.verify import VerifySettings
from models.architectures import LSTMClassifier

WHAT_THE_GRAPH_COMPUTES = (
    "the exported graph classifies from the top LSTM layer's final hidden state (h_n of its "
    "last layer, concat(forward, backward) when bidirectional) through the head, with nothing "
    "in between; a forward that reads out[:, -1] of a bidirectional LSTM, pools over time or "
    "changes the state before the head is another model, so it is not exported"
)


@dataclass(frozen=True)
class ForwardCheck:
    """The check's outcome: which of the graph's outputs the user's forward returns (``logits``
    or ``probs``), the largest abs error against it over ``sequences`` sequences, the limit."""

    output: str
    max_abs_error: float
    limit: float
    sequences: int

    def format(self) -> str:
        return (
            f"its forward returns the graph's {self.output} (max abs error {self.max_abs_error:.1e}"
            f", limit {self.limit:.1e}, {self.sequences} sequences)"
        )


def check_forward(
    user: nn.Module,
    model: LSTMClassifier,
    *,
    batch_first: bool,
    settings: VerifySettings | None = None,
    what: str = "the module",
) -> ForwardCheck:
    """Compare ``user``'s forward with ``model``'s logits and probs on ``settings.batch_size``
    random sequences of lengths in ``[1, settings.max_length]`` (1 and ``max_length`` among
    them), seeded with ``settings.seed``. Puts ``user`` in eval mode. ``what`` names the module
    in messages.

    Raises:
        TorchImportError: the forward raised, returned something that is not ``(1, C)``, or
            matches neither output.
    """
    settings = settings or VerifySettings()
    config = model.config
    rng = np.random.default_rng(settings.seed)
    lengths = [1, settings.max_length]
    lengths += rng.integers(1, settings.max_length + 1, size=settings.batch_size - 2).tolist()
    exact = copy.deepcopy(model).double()
    user.eval()
    errors: dict[str, list[tuple[float, int]]] = {LOGITS: [], PROBS: []}
    floor = 0.0
    for length in lengths:
        sequence = rng.standard_normal((1, length, config.input_size)).astype(np.float32)
        returned = _run_user(user, sequence, batch_first, what)
        if tuple(returned.shape) != (1, config.num_classes):
            raise TorchImportError(
                f"the forward of {what} returned a tensor of shape {tuple(returned.shape)} for "
                f"one sequence; expected (1, {config.num_classes}): (batch, classes)"
            )
        ours = torch_outputs(model, sequence, np.array([length]))
        reference = torch_outputs(exact, sequence, np.array([length]))
        for name, found in errors.items():
            error = float(np.max(np.abs(returned - ours[name])))
            found.append((error if math.isfinite(error) else math.inf, length))  # NaN: worst
            floor = max(floor, float(np.max(np.abs(ours[name] - reference[name]))))
    limit = settings.resolved_tolerance + settings.noise_factor * floor
    worst = {name: max(found) for name, found in errors.items()}
    for name in (LOGITS, PROBS):
        if worst[name][0] <= limit:
            return ForwardCheck(name, worst[name][0], limit, len(lengths))
    (logit_error, length), (prob_error, _) = worst[LOGITS], worst[PROBS]
    raise TorchImportError(
        f"the forward of {what} is not the exported graph: on a sequence of length {length} "
        f"its output differs from the graph's logits by {logit_error:.2g} and from its probs by "
        f"{prob_error:.2g} (limit {limit:.1g}); {WHAT_THE_GRAPH_COMPUTES}"
    )


def _run_user(user: nn.Module, sequence: np.ndarray, batch_first: bool, what: str) -> np.ndarray:
    """``user`` on one sequence ``(1, L, F)`` (given as ``(L, 1, F)`` unless ``batch_first``),
    its output as float64."""
    parameter = next(user.parameters())
    inputs = torch.from_numpy(sequence if batch_first else sequence.transpose(1, 0, 2).copy())
    try:
        with torch.no_grad():
            returned: Any = user(inputs.to(parameter.device, parameter.dtype))
    except Exception as error:
        raise TorchImportError(
            f"the forward of {what} raised {one_line(error)} on one sequence of "
            f"shape {tuple(inputs.shape)} ({'batch_first' if batch_first else 'time first'})"
        ) from error
    if isinstance(returned, tuple | list) and returned:
        returned = returned[0]
    if not isinstance(returned, torch.Tensor):
        raise TorchImportError(
            f"the forward of {what} returned {type(returned).__name__}; expected a (1, C) "
            "tensor, or a tuple or list whose first element is one"
        )
    return returned.detach().cpu().double().numpy()
