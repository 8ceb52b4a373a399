"""A user's ``nn.Module`` of ``nn.LSTM`` layers and a linear head, as an ``LSTMClassifier``.

``map_module`` walks the module's children in registration order (containers such as
``nn.Sequential`` or the user's own sub-modules are walked into) and expects, in this order:

* one or more ``nn.LSTM``: each of its ``num_layers`` layers becomes one layer of the
  classifier, and consecutive ``nn.LSTM``s must chain (``input_size`` of the next is
  ``dirs * hidden_size`` of the one before) and agree on ``bidirectional``;
* exactly one ``nn.Linear``, the head, reading ``D = dirs * H_last`` features.

Parameter-free modules that do nothing in eval mode (``IGNORED``: identity, dropout) may stand
anywhere, and ``nn.Softmax`` after the head (whether the forward returns logits or probs is
found by ``forward_check``, not here). Anything else is refused by its attribute path and type:
another layer (a GRU, a Conv1d, an Embedding, a second head), an activation, or parameters or
buffers held by a container. ``proj_size`` is refused too: ONNX's LSTM operator has no
projection.

``to_classifier`` copies the weights of a mapped (and loaded) module into an
``LSTMClassifier``: ``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}[_reverse]``, ``bias_ih`` and
``bias_hh`` of each layer ``k`` (zeros where ``bias=False``), and the head's weight and bias.

Shapes: ``F`` input features, ``H_n`` hidden width of layer ``n``, ``dirs`` 1 or 2,
``D = dirs * H_last``, ``C`` classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from export.from_torch.errors import TorchImportError
from models.architectures import LSTMClassifier, LSTMClassifierConfig

IGNORED: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
"""Parameter-free modules that are the identity in eval mode: skipped wherever they stand."""

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
"""``nn.LSTM``'s parameters of one layer and direction, ``{name}_l{k}[_reverse]``."""


@dataclass(frozen=True)
class TorchLayout:
    """Where an ``LSTMClassifier``'s parts are in a user's module (attribute paths and modules).

    ``softmax``: the paths of ``nn.Softmax`` modules after the head (only noted: the forward
    check says whether the forward applies one)."""

    lstms: tuple[tuple[str, nn.LSTM], ...]
    head: tuple[str, nn.Linear]
    softmax: tuple[str, ...] = ()

    @property
    def batch_first(self) -> bool:
        """How the module reads its input: ``(B, T, F)`` if true, else ``(T, B, F)`` (the first
        ``nn.LSTM``'s ``batch_first``)."""
        return self.lstms[0][1].batch_first

    def config(self, labels: Sequence[str] = ()) -> LSTMClassifierConfig:
        """The classifier's config; ``labels`` default to ``"0"`` ... ``"C-1"``."""
        first, last = self.lstms[0][1], self.lstms[-1][1]
        sizes = tuple(lstm.hidden_size for _, lstm in self.lstms for _ in range(lstm.num_layers))
        head = self.head[1]
        try:
            return LSTMClassifierConfig(
                input_size=first.input_size,
                layer_sizes=sizes,
                num_classes=head.out_features,
                bidirectional=last.bidirectional,
                labels=tuple(labels),
            )
        except ValueError as error:  # labels that do not fit the head
            raise TorchImportError(
                f"{error} (the head {self.head[0]} has {head.out_features})"
            ) from error


def map_module(module: nn.Module) -> TorchLayout:
    """Find the LSTMs and the head of ``module`` (see the module docstring for what is allowed).

    Raises:
        TorchImportError: naming the first layer that cannot be mapped (path and type) and why.
    """
    _refuse_own_tensors(module, "the module")
    lstms: list[tuple[str, nn.LSTM]] = []
    head: tuple[str, nn.Linear] | None = None
    softmax: list[str] = []
    for path, leaf in _leaves(module, ""):
        where = f"{path} ({_type_name(leaf)})"
        if isinstance(leaf, IGNORED):
            continue
        if isinstance(leaf, nn.Softmax) and head is not None:
            softmax.append(path)
        elif isinstance(leaf, nn.LSTM):
            if head is not None:
                raise TorchImportError(
                    f"{where} comes after the head {head[0]}: the head must be last"
                )
            _check_lstm(where, leaf, lstms[-1] if lstms else None)
            lstms.append((path, leaf))
        elif isinstance(leaf, nn.Linear):
            if not lstms:
                raise TorchImportError(
                    f"{where} comes before any nn.LSTM: only the head may be an nn.Linear"
                )
            if head is not None:
                raise TorchImportError(
                    f"{where} is a second head (after {head[0]}): the graph has one linear head"
                )
            _check_head(where, leaf, lstms[-1][1])
            head = (path, leaf)
        else:
            raise TorchImportError(
                f"{where} cannot be mapped: the export takes nn.LSTM layers, then one nn.Linear "
                "head, and only identity, dropout (and a softmax after the head) besides"
            )
    if not lstms:
        raise TorchImportError("the module has no nn.LSTM")
    if head is None:
        raise TorchImportError(f"the module has no nn.Linear head after {lstms[-1][0]}")
    return TorchLayout(tuple(lstms), head, tuple(softmax))


def to_classifier(layout: TorchLayout, labels: Sequence[str] = ()) -> LSTMClassifier:
    """An ``LSTMClassifier`` (eval mode) holding the weights of ``layout``'s modules, as they are
    now (load the state_dict first)."""
    model = LSTMClassifier(layout.config(labels)).eval()
    targets = iter(model.layers)
    with torch.no_grad():
        for _, lstm in layout.lstms:
            directions = ("", "_reverse") if lstm.bidirectional else ("",)
            for k in range(lstm.num_layers):
                target = next(targets)
                for suffix in directions:
                    for name in WEIGHTS:
                        destination = getattr(target, f"{name}_l0{suffix}")
                        source = getattr(lstm, f"{name}_l{k}{suffix}", None)  # None: bias=False
                        if source is None:
                            destination.zero_()
                        else:
                            destination.copy_(source)
        head = layout.head[1]
        model.head.weight.copy_(head.weight)
        if head.bias is not None:
            model.head.bias.copy_(head.bias)
        else:
            model.head.bias.zero_()
    return model


def _leaves(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    """``(attribute path, module)`` of every layer under ``module``, in registration order: the
    LSTMs, Linears and childless modules; other modules are containers, walked into."""
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.LSTM | nn.Linear) or next(child.children(), None) is None:
            yield path, child
        else:
            _refuse_own_tensors(child, f"{path} ({_type_name(child)})")
            yield from _leaves(child, path)


def _refuse_own_tensors(module: nn.Module, where: str) -> None:
    """A container's own parameters or buffers would be used by its forward in ways the walk
    cannot see."""
    own = [name for name, _ in module.named_parameters(recurse=False)]
    own += [name for name, _ in module.named_buffers(recurse=False)]
    if own:
        raise TorchImportError(
            f"{where} holds its own tensors {own}: only nn.LSTM layers and the nn.Linear head "
            "may hold weights"
        )


def _check_lstm(where: str, lstm: nn.LSTM, previous: tuple[str, nn.LSTM] | None) -> None:
    if lstm.proj_size:
        raise TorchImportError(
            f"{where} has proj_size={lstm.proj_size}: ONNX's LSTM operator has no projection of "
            "the hidden state, so the graph cannot express it"
        )
    if previous is None:
        return
    path, before = previous
    if lstm.bidirectional != before.bidirectional:
        raise TorchImportError(
            f"{where} has bidirectional={lstm.bidirectional} but {path} has "
            f"{before.bidirectional}: every nn.LSTM must agree"
        )
    width = before.hidden_size * (2 if before.bidirectional else 1)
    if lstm.input_size != width:
        raise TorchImportError(
            f"{where} reads {lstm.input_size} features but {path} gives {width}: consecutive "
            "nn.LSTMs must chain"
        )


def _check_head(where: str, head: nn.Linear, top: nn.LSTM) -> None:
    dirs = 2 if top.bidirectional else 1
    if head.in_features != dirs * top.hidden_size:
        raise TorchImportError(
            f"{where} reads {head.in_features} features, but the graph's head reads the top "
            f"layer's final hidden state, {dirs} x {top.hidden_size} = {dirs * top.hidden_size} "
            "(concat(forward, backward) when bidirectional)"
        )


def _type_name(module: nn.Module) -> str:
    """``nn.GRU`` for torch's own layers, ``package.module.Class`` for the user's."""
    cls = type(module)
    if cls.__module__.startswith("torch.nn."):
        return f"nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"
