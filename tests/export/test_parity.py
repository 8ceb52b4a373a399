"""ONNX Runtime vs torch and the contract's invariants, measured on the exported graphs.

These tests make their own checks (they do not go through ``export.verify``), so a bug shared
by the verifier and the checks it makes would still show here. Both sides come from
``export.reference``, as the verifier's do; ``test_reference.py`` holds those to the model and the
session themselves.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from contract.names import LOGITS, OUTPUTS, final_c, final_h, initial_c, initial_h
from export.reference import (
    onnx_outputs,
    random_initial_states,
    random_padded_batch,
    torch_outputs,
)
from models.architectures import LSTMClassifier
from padding import pad_sequences

TOLERANCE = 1e-5
LENGTHS = [7, 1, 30, 12, 30, 2, 19]  # unsorted, with 1 and the maximum


def _batch(
    model: LSTMClassifier, rng: np.random.Generator, pad_value: float = 1e3
) -> tuple[np.ndarray, np.ndarray]:
    """``LENGTHS`` as a random batch for ``model``, ``±pad_value`` in the padding."""
    return random_padded_batch(LENGTHS, model.config.input_size, rng, pad_value)


def _assert_close(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=0, atol=TOLERANCE, err_msg=name)


def test_ort_matches_torch_on_a_padded_batch_with_garbage_padding(
    torch_model: LSTMClassifier, session: ort.InferenceSession
) -> None:
    inputs, lengths = _batch(torch_model, np.random.default_rng(1))
    _assert_close(
        onnx_outputs(session, inputs, lengths), torch_outputs(torch_model, inputs, lengths)
    )


def test_initial_states_override_the_zero_default(
    torch_model: LSTMClassifier, session: ort.InferenceSession
) -> None:
    rng = np.random.default_rng(2)
    inputs, lengths = _batch(torch_model, rng)
    states = random_initial_states(torch_model.config, len(LENGTHS), rng)
    with_states = onnx_outputs(session, inputs, lengths, states)
    _assert_close(with_states, torch_outputs(torch_model, inputs, lengths, states))
    # The states must change the results, or the comparison above would prove nothing.
    without = onnx_outputs(session, inputs, lengths)
    assert np.abs(with_states[LOGITS] - without[LOGITS]).max() > 1e-3


def test_a_batch_of_one_state_broadcasts_like_explicit_zeros(
    torch_model: LSTMClassifier, session: ort.InferenceSession
) -> None:
    inputs, lengths = _batch(torch_model, np.random.default_rng(3))
    zeros = {
        name: np.zeros_like(value)
        for name, value in random_initial_states(
            torch_model.config, len(LENGTHS), np.random.default_rng(0)
        ).items()
    }
    _assert_close(
        onnx_outputs(session, inputs, lengths, zeros), onnx_outputs(session, inputs, lengths)
    )


def test_outputs_past_each_length_are_exactly_zero(
    torch_model: LSTMClassifier, session: ort.InferenceSession
) -> None:
    inputs, lengths = _batch(torch_model, np.random.default_rng(4))
    outputs = onnx_outputs(session, inputs, lengths)[OUTPUTS]
    for row, length in enumerate(LENGTHS):
        assert outputs[row, length:].size == 0 or not outputs[row, length:].any()
        assert np.abs(outputs[row, length - 1]).max() > 0  # the last real step is not zero


def test_each_sequence_alone_equals_its_row_in_the_batch(
    torch_model: LSTMClassifier, session: ort.InferenceSession
) -> None:
    inputs, lengths = _batch(torch_model, np.random.default_rng(5))
    together = onnx_outputs(session, inputs, lengths)
    for row, length in enumerate(LENGTHS):
        alone = onnx_outputs(session, inputs[row : row + 1, :length], lengths[row : row + 1])
        np.testing.assert_allclose(
            alone[OUTPUTS][0], together[OUTPUTS][row, :length], atol=TOLERANCE
        )
        np.testing.assert_allclose(alone[LOGITS][0], together[LOGITS][row], atol=TOLERANCE)
        for n in range(len(torch_model.config.layer_sizes)):
            for name in (final_c(n), final_h(n)):
                np.testing.assert_allclose(
                    alone[name][:, 0], together[name][:, row], atol=TOLERANCE, err_msg=name
                )


@pytest.mark.parametrize("pad_value", [1e3, -np.inf, np.nan])
def test_padding_values_never_reach_a_result(
    torch_model: LSTMClassifier, session: ort.InferenceSession, pad_value: float
) -> None:
    reference_inputs, lengths = _batch(torch_model, np.random.default_rng(6), pad_value=0.0)
    inputs = reference_inputs.copy()
    for row, length in enumerate(LENGTHS):
        inputs[row, length:] = pad_value
    _assert_close(
        onnx_outputs(session, inputs, lengths), onnx_outputs(session, reference_inputs, lengths)
    )


@pytest.mark.parametrize("architecture", ["bidirectional"])
def test_backward_direction_reads_each_sequence_from_its_own_end(
    torch_model: LSTMClassifier, session: ort.InferenceSession
) -> None:
    inputs, lengths = _batch(torch_model, np.random.default_rng(7))
    result = onnx_outputs(session, inputs, lengths)
    top = len(torch_model.config.layer_sizes) - 1
    hidden = torch_model.config.layer_sizes[-1]
    # state_bw.h equals output_bw[0] (invariant 3): the backward pass ends at step 0.
    np.testing.assert_array_equal(result[final_h(top)][1], result[OUTPUTS][:, 0, hidden:])
    for row, length in enumerate(LENGTHS):
        np.testing.assert_array_equal(
            result[final_h(top)][0, row],
            result[OUTPUTS][row, length - 1, :hidden],
        )


@pytest.mark.parametrize("architecture", ["stacked"])
def test_chunked_run_with_initial_states_equals_the_whole_run(
    torch_model: LSTMClassifier, session: ort.InferenceSession
) -> None:
    rng = np.random.default_rng(8)
    lengths = [9, 30, 2, 17]
    splits = [4, 11, 1, 16]  # each chunk at least one step long
    inputs, lengths_array = random_padded_batch(lengths, torch_model.config.input_size, rng)
    whole = onnx_outputs(session, inputs, lengths_array)

    first_lengths = np.array(splits, dtype=np.int32)
    second_lengths = lengths_array - first_lengths
    cuts = list(zip(inputs, lengths, splits, strict=True))
    first, _ = pad_sequences([x[:split] for x, _, split in cuts], pad_value=1e3)
    second, _ = pad_sequences([x[split:length] for x, length, split in cuts], pad_value=-1e3)
    head = onnx_outputs(session, first, first_lengths)
    states = {}
    for n in range(len(torch_model.config.layer_sizes)):
        states[initial_c(n)] = head[final_c(n)]
        states[initial_h(n)] = head[final_h(n)]
    tail = onnx_outputs(session, second, second_lengths, states)

    for row, (length, split) in enumerate(zip(lengths, splits, strict=True)):
        joined = np.concatenate([head[OUTPUTS][row, :split], tail[OUTPUTS][row, : length - split]])
        np.testing.assert_allclose(joined, whole[OUTPUTS][row, :length], atol=TOLERANCE)
    for name in [LOGITS] + [f"final_{s}_{n}" for n in range(2) for s in "ch"]:
        np.testing.assert_allclose(tail[name], whole[name], atol=TOLERANCE, err_msg=name)
