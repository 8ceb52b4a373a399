"""Bring your own torch model: a user's ``nn.Module`` of ``nn.LSTM`` layers and a linear head,
with its state_dict, as an ``LSTMClassifier`` that ``export.exporter.export_model`` exports.

``python -m export --torch-module mypkg.models:build --state-dict weights.pt --name NAME`` is
the command (``export.cli``); ``import_torch_model`` does the work, in three modules:

* ``loading``: import the user's class or factory (this runs the user's code) and load the
  state_dict (``weights_only=True``), keys and shapes exactly the module's;
* ``mapping``: the module's layers onto an ``LSTMClassifierConfig`` and its weights, refusing
  what the graph cannot express by attribute path and type;
* ``forward_check``: the user's own forward against the mapped classifier, so a forward that
  reads its LSTMs differently from the graph is refused rather than exported.

Every failure is a ``TorchImportError`` (a ``ValueError``) with a one-line message. Imports point
one way: ``export.cli`` → ``export.from_torch`` → ``models``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.from_torch.errors import TorchImportError
from export.from_torch.forward_check import ForwardCheck, check_forward
from export.from_torch.loading import build_module, load_weights
from export.from_torch.mapping import TorchLayout, map_module, to_classifier
from export.verify import VerifySettings
from models.architectures import LSTMClassifier
from models.checkpoint import file_sha256

__all__ = [
    "ForwardCheck",
    "ImportedModel",
    "TorchImportError",
    "TorchLayout",
    "build_module",
    "check_forward",
    "import_torch_model",
    "load_weights",
    "map_module",
    "to_classifier",
]


@dataclass(frozen=True)
class ImportedModel:
    """A user's module as an ``LSTMClassifier`` (eval mode, CPU), where it came from, and the
    outcome of the check of its forward."""

    model: LSTMClassifier
    layout: TorchLayout
    source_sha256: str
    """SHA-256 of the state_dict file: the export's ``source_checkpoint_sha256``."""
    check: ForwardCheck


def import_torch_model(
    import_path: str,
    state_dict: str | Path,
    *,
    kwargs: Mapping[str, Any] | None = None,
    labels: Sequence[str] = (),
    settings: VerifySettings | None = None,
) -> ImportedModel:
    """Build ``import_path`` (``package.module:name``) with ``kwargs``, load ``state_dict``,
    map it onto an ``LSTMClassifier`` named with ``labels`` (default ``"0"`` ... ``"C-1"``) and
    check its forward against the classifier with ``settings``' tolerance and seed.

    Raises:
        TorchImportError: naming what cannot be imported, mapped, loaded or matched.
    """
    path = Path(state_dict)
    module = build_module(import_path, kwargs)
    layout = map_module(module)  # before the weights: a layer it cannot map is the first news
    load_weights(module, path)
    model = to_classifier(layout, labels)
    check = check_forward(
        module, model, batch_first=layout.batch_first, settings=settings, what=import_path
    )
    return ImportedModel(model, layout, file_sha256(path), check)
