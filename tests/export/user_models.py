"""Users' own torch models, as ``python -m export --torch-module`` imports them
(``tests.export.user_models:NAME``), for ``test_from_torch.py``: some the export maps, some it
must refuse (each docstring says which and why).

Shapes: ``B`` batch, ``T`` time, ``F`` features, ``H`` hidden width, ``C`` classes.
"""

from __future__ import annotations

import torch
from torch import nn

FEATURES = 12
CLASSES = 3


class BiLSTMNet(nn.Module):
    """Mapped: ``nn.LSTM(12, 16, num_layers=3, bidirectional, batch_first)`` and a head on
    ``h_n``'s last layer, both directions. Input ``(B, T, F)``, output logits ``(B, C)``."""

    def __init__(self, hidden: int = 16, num_layers: int = 3) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_size=FEATURES,
            hidden_size=hidden,
            num_layers=num_layers,
            bidirectional=True,
            batch_first=True,
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(2 * hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(x)  # h_n: (num_layers * 2, B, H), the last layer's two last
        return self.head(self.dropout(torch.cat([h_n[-2], h_n[-1]], dim=1)))


def build_unidirectional(hidden: int = 10) -> nn.Module:
    """Mapped (a factory): ``nn.LSTM(12, hidden, num_layers=2)``, time first, in an
    ``nn.Sequential`` container, and a head; the forward returns ``(probs, h_n)``."""
    return TimeFirstNet(hidden)


class TimeFirstNet(nn.Module):
    """Input ``(T, B, F)``; returns ``(softmax(logits) (B, C), h_n)``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Identity(), nn.LSTM(FEATURES, hidden, num_layers=2))
        self.head = nn.Linear(hidden, CLASSES)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (h_n, _) = self.body[1](self.body[0](x))
        return self.softmax(self.head(h_n[-1])), h_n


class StackedNet(nn.Module):
    """Mapped: two ``nn.LSTM``s of different widths (12 → 2 x 9 → 2 x 5, bidirectional,
    ``bias=False`` on the second) and a head without bias."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.LSTM(FEATURES, 9, batch_first=True, bidirectional=True)
        self.second = nn.LSTM(18, 5, batch_first=True, bidirectional=True, bias=False)
        self.head = nn.Linear(10, CLASSES, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.first(x)
        _, (h_n, _) = self.second(out)
        return self.head(torch.cat([h_n[0], h_n[1]], dim=1))


class LastStepNet(BiLSTMNet):
    """Refused by the forward check: the head reads ``out[:, -1]``, whose backward half is the
    backward direction after a single step, not its final state."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class ProjectedNet(nn.Module):
    """Refused: ``proj_size`` (ONNX's LSTM has no projection)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, 16, proj_size=8, batch_first=True)
        self.head = nn.Linear(8, CLASSES)


class GRUNet(nn.Module):
    """Refused: a GRU between the LSTM and the head (``encoder.1``)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.LSTM(FEATURES, 8, batch_first=True), nn.GRU(8, 8, batch_first=True)
        )
        self.head = nn.Linear(8, CLASSES)


class NarrowHeadNet(nn.Module):
    """Refused: the head reads one direction's width of a bidirectional LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, 16, bidirectional=True)
        self.head = nn.Linear(16, CLASSES)


def not_a_module() -> int:
    """Refused: a factory that builds no ``nn.Module``."""
    return 3
