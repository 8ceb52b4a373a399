"""The two ways of wiring a bidirectional LSTM stack (stdlib only: no torch, so the TF importer's
description module can name them without loading torch).

``B`` batch, ``T`` time, ``H_n`` width of layer ``n``.
"""

from __future__ import annotations

STACKED = "stacked"
"""Layer ``n`` of each direction reads ``concat(out_fw, out_bw)`` of layer ``n-1``, ``(B, T,
2 * H_{n-1})``: ``stack_bidirectional_dynamic_rnn``, torch's ``nn.LSTM(bidirectional=True,
num_layers=k)``. The default, and the only wiring of unidirectional and one-layer models."""
PER_DIRECTION = "per_direction"
"""One stack per direction, ``bidirectional_dynamic_rnn(MultiRNNCell(fw), MultiRNNCell(bw))``:
layer ``n`` of a direction reads only that direction's layer ``n-1``, ``(B, T, H_{n-1})``; the
two directions meet only at the top."""
TOPOLOGIES = (STACKED, PER_DIRECTION)
