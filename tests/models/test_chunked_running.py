"""Chunked running, a property of two modules at once: the final state of one chunk, fed as the
initial state of the next, gives the numbers of one run over the whole sequence (unidirectional
models), on the cell path (``models.rnn``: cells through ``dynamic_rnn``) and on the fused
classifier (``models.architectures``). Hence beside the package rather than in one module's
tests."""

from __future__ import annotations

import pytest
import torch

from models.architectures import LSTMClassifier, LSTMClassifierConfig
from models.rnn import BasicLSTMCell, LSTMCell, MultiRNNCell, dynamic_rnn
from tests.support.numpy_tf_rnn import padded_batch

F, T, SPLIT = 3, 9, 4
TOL = {"rtol": 1e-5, "atol": 1e-5}


def test_cell_path_two_chunks_equal_whole_run(rng):
    cell = MultiRNNCell([BasicLSTMCell(5, input_size=F), LSTMCell(4, use_peepholes=True)])
    cell.build(F)
    with torch.no_grad():
        for param in cell.parameters():
            param.uniform_(-0.5, 0.5)
    lengths = torch.tensor([9, 2, 4, 7, 0])  # some end inside the first chunk
    inputs = padded_batch(rng, lengths.tolist(), T, F)

    whole_out, whole_state = dynamic_rnn(cell, inputs, lengths)
    first_len = lengths.clamp(max=SPLIT)
    second_len = (lengths - SPLIT).clamp(min=0)
    out1, state1 = dynamic_rnn(cell, inputs[:, :SPLIT], first_len)
    out2, state2 = dynamic_rnn(cell, inputs[:, SPLIT:], second_len, initial_state=state1)

    torch.testing.assert_close(torch.cat([out1, out2], dim=1), whole_out, **TOL)
    for got, want in zip(state2, whole_state, strict=True):
        torch.testing.assert_close(got.c, want.c, **TOL)
        torch.testing.assert_close(got.h, want.h, **TOL)


@pytest.mark.parametrize("layer_sizes", [(6,), (6, 8)])
def test_classifier_two_chunks_equal_whole_run(rng, layer_sizes):
    model = LSTMClassifier(LSTMClassifierConfig(F, layer_sizes, num_classes=3)).eval()
    lengths = torch.tensor([9, 5, 7, 6])  # every chunk has at least one real step
    inputs = padded_batch(rng, lengths.tolist(), T, F)
    with torch.no_grad():
        whole = model(inputs, lengths)
        first = model(inputs[:, :SPLIT], torch.full_like(lengths, SPLIT))
        second = model(inputs[:, SPLIT:], lengths - SPLIT, initial_states=first.states)
        cold = model(inputs[:, SPLIT:], lengths - SPLIT)

    torch.testing.assert_close(second.logits, whole.logits, **TOL)
    torch.testing.assert_close(second.probs, whole.probs, **TOL)
    torch.testing.assert_close(
        torch.cat([first.outputs, second.outputs], dim=1), whole.outputs, **TOL
    )
    for got, want in zip(second.states, whole.states, strict=True):
        torch.testing.assert_close(got.c, want.c, **TOL)
        torch.testing.assert_close(got.h, want.h, **TOL)
    assert not torch.allclose(cold.logits, whole.logits, **TOL)  # the carried state matters
