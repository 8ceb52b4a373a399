"""``export.reference``: both sides of the checks, held to the model and the session themselves
(the verifier, the parity tests and ``bench/gpu_check.py`` all compare through them)."""

from __future__ import annotations

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch

from contract import names as contract
from export.reference import (
    fill_padding,
    onnx_outputs,
    random_initial_states,
    random_padded_batch,
    torch_outputs,
)
from models.architectures import LSTMClassifier
from models.rnn import LSTMStateTuple

LENGTHS = [5, 1, 9, 3]


def test_torch_outputs_are_the_models_own_under_the_graphs_names(
    torch_model: LSTMClassifier,
) -> None:
    config = torch_model.config
    inputs, lengths = random_padded_batch(LENGTHS, config.input_size, np.random.default_rng(0))
    states = random_initial_states(config, len(LENGTHS), np.random.default_rng(1))
    got = torch_outputs(torch_model, inputs, lengths, states)
    assert list(got) == contract.output_names(len(config.layer_sizes))

    initial = tuple(
        LSTMStateTuple(
            torch.from_numpy(states[contract.initial_c(n)]),
            torch.from_numpy(states[contract.initial_h(n)]),
        )
        for n in range(len(config.layer_sizes))
    )
    with torch.no_grad():
        direct = torch_model(torch.from_numpy(inputs), torch.from_numpy(lengths), initial)
    np.testing.assert_array_equal(got[contract.LOGITS], direct.logits.numpy())
    np.testing.assert_array_equal(got[contract.PROBS], direct.probs.numpy())
    np.testing.assert_array_equal(got[contract.OUTPUTS], direct.outputs.numpy())
    for n, state in enumerate(direct.states):
        np.testing.assert_array_equal(got[contract.final_c(n)], state.c.numpy())
        np.testing.assert_array_equal(got[contract.final_h(n)], state.h.numpy())
    assert all(value.dtype == np.float32 for value in got.values())


@pytest.mark.parametrize("architecture", ["stacked"])
def test_torch_outputs_run_in_the_models_dtype(torch_model: LSTMClassifier) -> None:
    inputs, lengths = random_padded_batch(LENGTHS, 5, np.random.default_rng(2))
    single = torch_outputs(torch_model, inputs, lengths)
    double = torch_outputs(copy.deepcopy(torch_model).double(), inputs, lengths)
    assert all(value.dtype == np.float64 for value in double.values())
    for name, value in single.items():
        np.testing.assert_allclose(value, double[name], atol=1e-5, err_msg=name)


def test_onnx_outputs_are_the_sessions_outputs_by_name(session: ort.InferenceSession) -> None:
    inputs, lengths = random_padded_batch(LENGTHS, 5, np.random.default_rng(3))
    names = [o.name for o in session.get_outputs()]
    got = onnx_outputs(session, inputs, lengths.astype(np.int64))  # fed as int32 all the same
    direct = session.run(names, {contract.INPUTS: inputs, contract.LENGTHS: lengths})
    assert list(got) == names
    for name, value in zip(names, direct, strict=True):
        np.testing.assert_array_equal(got[name], value)
    only = onnx_outputs(session, inputs, lengths, names=[contract.PROBS])
    assert list(only) == [contract.PROBS]
    np.testing.assert_array_equal(only[contract.PROBS], got[contract.PROBS])


def test_random_padded_batch_has_garbage_exactly_past_each_length() -> None:
    inputs, lengths = random_padded_batch(LENGTHS, 3, np.random.default_rng(4), pad_value=7.0)
    assert inputs.shape == (4, 9, 3) and inputs.dtype == np.float32
    assert lengths.dtype == np.int32 and lengths.tolist() == LENGTHS
    for row, length in enumerate(LENGTHS):
        assert np.all(np.abs(inputs[row, length:]) == 7.0)
        assert np.all(np.abs(inputs[row, :length]) < 7.0)  # standard normal, not padding
    assert set(np.sign(inputs[3, 3:]).ravel().tolist()) == {-1.0, 1.0}  # random signs


def test_fill_padding_writes_only_past_each_length() -> None:
    inputs = np.zeros((2, 4, 2), np.float32)
    fill_padding(inputs, np.array([4, 1]), 5.0, np.random.default_rng(5))
    assert not inputs[0].any() and not inputs[1, 0].any()
    assert np.all(np.abs(inputs[1, 1:]) == 5.0)


def test_random_initial_states_name_and_shape_every_layer(torch_model: LSTMClassifier) -> None:
    config = torch_model.config
    states = random_initial_states(config, 3, np.random.default_rng(6), scale=0.5)
    assert list(states) == [
        name
        for n in range(len(config.layer_sizes))
        for name in (contract.initial_c(n), contract.initial_h(n))
    ]
    for n, hidden in enumerate(config.layer_sizes):
        for name in (contract.initial_c(n), contract.initial_h(n)):
            assert states[name].shape == (config.num_directions, 3, hidden)
            assert states[name].dtype == np.float32 and np.abs(states[name]).max() > 0
