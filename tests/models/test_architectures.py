"""``models.architectures``: the fused ``nn.LSTM`` classifier equals the cell-by-cell path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.architectures import (
    PER_DIRECTION,
    LSTMClassifier,
    LSTMClassifierConfig,
    reference_forward,
)
from models.rnn import (
    BasicLSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
    reverse_sequence,
)
from tests.support.numpy_tf_rnn import padded_batch, random_lstm_weights

F, C, T = 5, 4, 9
LENGTHS = [9, 3, 7, 1, 5, 9]  # unsorted, with ties
TOL = {"rtol": 1e-5, "atol": 1e-5}

CONFIGS = {
    "stacked": LSTMClassifierConfig(F, (16, 24), C),
    "bidirectional": LSTMClassifierConfig(F, (16, 16), C, bidirectional=True),
    "bidirectional_sizes_dropout": LSTMClassifierConfig(
        F, (8, 12, 6), C, bidirectional=True, dropout=0.4, forget_bias=0.5
    ),
    "per_direction": LSTMClassifierConfig(
        F, (8, 12, 6), C, bidirectional=True, forget_bias=0.5, topology="per_direction"
    ),
}


@pytest.fixture(params=list(CONFIGS))
def model(request):
    built = LSTMClassifier(CONFIGS[request.param])
    with torch.no_grad():  # biases and head far from zero, so every weight matters
        for param in built.parameters():
            param.add_(0.2 * torch.randn_like(param))
    return built.eval()


@pytest.fixture
def batch(rng):
    return padded_batch(rng, LENGTHS, T, F), torch.tensor(LENGTHS)


def _assert_same(got, want, tol=TOL):
    torch.testing.assert_close(got.logits, want.logits, **tol)
    torch.testing.assert_close(got.probs, want.probs, **tol)
    torch.testing.assert_close(got.outputs, want.outputs, **tol)
    assert len(got.states) == len(want.states)
    for got_state, want_state in zip(got.states, want.states, strict=True):
        torch.testing.assert_close(got_state.c, want_state.c, **tol)
        torch.testing.assert_close(got_state.h, want_state.h, **tol)


def test_fused_path_equals_reference_forward(model, batch):
    inputs, lengths = batch
    with torch.no_grad():
        fused = model(inputs, lengths)
        reference = reference_forward(model, inputs, lengths)
    config = model.config
    dirs = config.num_directions
    assert fused.logits.shape == fused.probs.shape == (len(LENGTHS), C)
    assert fused.outputs.shape == (len(LENGTHS), T, config.output_size)
    assert len(fused.states) == len(config.layer_sizes)
    for state, size in zip(fused.states, config.layer_sizes, strict=True):
        assert state.c.shape == state.h.shape == (dirs, len(LENGTHS), size)
    _assert_same(fused, reference)


def test_outputs_zero_past_length_and_states_aligned(model, batch):
    inputs, lengths = batch
    with torch.no_grad():
        out = model(inputs, lengths)
    size = model.config.layer_sizes[-1]
    top = out.states[-1]
    for b, length in enumerate(LENGTHS):
        assert torch.count_nonzero(out.outputs[b, length:]) == 0
        torch.testing.assert_close(out.outputs[b, length - 1, :size], top.h[0, b])
        if model.config.bidirectional:
            torch.testing.assert_close(out.outputs[b, 0, size:], top.h[1, b])
    # The head reads concat([h_fw, h_bw]) of the top layer.
    final = torch.cat(list(top.h), dim=1)
    expected = final @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(out.logits, expected, **TOL)
    torch.testing.assert_close(out.probs.sum(dim=1), torch.ones(len(LENGTHS)))
    torch.testing.assert_close(out.probs, torch.softmax(expected, dim=1), **TOL)


def test_fused_model_padding_invariance(model, batch, rng):
    inputs, lengths = batch
    nan_padded = inputs.clone()
    for b, length in enumerate(LENGTHS):
        nan_padded[b, length:] = float("nan")
    with torch.no_grad():
        padded = model(inputs, lengths)
        for b, length in enumerate(LENGTHS):
            alone = model(inputs[b : b + 1, :length], lengths[b : b + 1])
            torch.testing.assert_close(padded.logits[b], alone.logits[0], **TOL)
            torch.testing.assert_close(padded.outputs[b, :length], alone.outputs[0], **TOL)
            for got, want in zip(padded.states, alone.states, strict=True):
                torch.testing.assert_close(got.c[:, b], want.c[:, 0], **TOL)
                torch.testing.assert_close(got.h[:, b], want.h[:, 0], **TOL)
        # Whatever the padding holds, even NaN, nothing changes; a longer T changes nothing.
        _assert_same(model(nan_padded, lengths), padded)
        longer = torch.cat([inputs, torch.full((len(LENGTHS), 3, F), 7e2)], dim=1)
        wider = model(longer, lengths)
    torch.testing.assert_close(wider.logits, padded.logits, **TOL)
    torch.testing.assert_close(wider.outputs[:, :T], padded.outputs, **TOL)
    assert torch.count_nonzero(wider.outputs[:, T:]) == 0


def test_dropout_only_in_training(batch):
    model = LSTMClassifier(CONFIGS["bidirectional_sizes_dropout"])
    inputs, lengths = batch
    model.train()
    torch.manual_seed(0)
    first = model(inputs, lengths).logits
    second = model(inputs, lengths).logits
    assert not torch.allclose(first, second)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(inputs, lengths).logits, model(inputs, lengths).logits)


def test_load_tf_layers_reproduces_tf_cells(rng, batch):
    """TF weights loaded into the fused model compute what TF cells with those weights do."""
    config = LSTMClassifierConfig(F, (6, 4), C, bidirectional=True, forget_bias=0.8)
    model = LSTMClassifier(config).eval()
    layers = [
        [random_lstm_weights(rng, F, 6), random_lstm_weights(rng, F, 6)],
        [random_lstm_weights(rng, 12, 4), random_lstm_weights(rng, 12, 4)],
    ]
    head_w = rng.standard_normal((8, C)).astype(np.float32)
    head_b = rng.standard_normal(C).astype(np.float32)
    model.load_tf_layers(layers, (head_w, head_b))

    inputs, lengths = batch
    layer_input = inputs
    for n, size in enumerate(config.layer_sizes):
        cells = []
        for kernel, bias in layers[n]:
            cell = BasicLSTMCell(size, forget_bias=0.8)
            cell.load_tf_weights(kernel, bias)
            cells.append(cell)
        (fw, bw), (sf, sb) = bidirectional_dynamic_rnn(*cells, layer_input, lengths)
        layer_input = torch.cat([fw, bw], dim=-1)
    with torch.no_grad():
        out = model(inputs, lengths)
        logits = torch.cat([sf.h, sb.h], dim=1) @ torch.from_numpy(head_w) + torch.from_numpy(
            head_b
        )
    torch.testing.assert_close(out.outputs, layer_input, **TOL)
    torch.testing.assert_close(out.states[-1].c, torch.stack([sf.c, sb.c]), **TOL)
    torch.testing.assert_close(out.logits, logits, **TOL)

    # to_tf_cells gives the TF weights back (f bias up to one float32 rounding).
    cells_fw, cells_bw = model.to_tf_cells()
    for n in range(2):
        for direction, cell in enumerate((cells_fw[n], cells_bw[n])):
            kernel, bias = layers[n][direction]
            np.testing.assert_array_equal(cell.kernel.detach().numpy(), kernel)
            np.testing.assert_allclose(cell.bias.detach().numpy(), bias, rtol=0, atol=1e-6)
            assert cell.forget_bias == 0.8


def test_load_tf_layers_unidirectional_equals_dynamic_rnn(rng, batch):
    model = LSTMClassifier(LSTMClassifierConfig(F, (6,), C)).eval()
    kernel, bias = random_lstm_weights(rng, F, 6)
    model.load_tf_layers([[(kernel, bias)]], (np.zeros((6, C)), np.arange(C)))
    cell = BasicLSTMCell(6)
    cell.load_tf_weights(kernel, bias)
    inputs, lengths = batch
    with torch.no_grad():
        out = model(inputs, lengths)
    expected_out, state = dynamic_rnn(cell, inputs, lengths)
    torch.testing.assert_close(out.outputs, expected_out, **TOL)
    torch.testing.assert_close(out.states[0].h[0], state.h, **TOL)
    torch.testing.assert_close(out.logits, torch.arange(C, dtype=torch.float32).expand(6, C))


def test_load_tf_layers_shape_checks(rng):
    model = LSTMClassifier(LSTMClassifierConfig(F, (6, 4), C, bidirectional=True))
    good = [
        [random_lstm_weights(rng, F, 6), random_lstm_weights(rng, F, 6)],
        [random_lstm_weights(rng, 12, 4), random_lstm_weights(rng, 12, 4)],
    ]
    head = (np.zeros((8, C)), np.zeros(C))
    with pytest.raises(ValueError, match="expected weights for 2 layers, got 1"):
        model.load_tf_layers(good[:1], head)
    with pytest.raises(ValueError, match="expected 2 directions, got 1"):
        model.load_tf_layers([good[0][:1], good[1]], head)
    wrong_input = [good[0], [random_lstm_weights(rng, 6, 4), good[1][1]]]  # reads 6, not 12
    with pytest.raises(ValueError, match=r"weight_ih: expected \(16, 12\), got \(16, 6\)"):
        model.load_tf_layers(wrong_input, head)
    wrong_width = [good[0], [random_lstm_weights(rng, 10, 6), good[1][1]]]  # 6 units, not 4
    with pytest.raises(ValueError, match="expected"):
        model.load_tf_layers(wrong_width, head)
    with pytest.raises(ValueError, match=r"head weight: expected \(8, 4\), got \(4, 8\)"):
        model.load_tf_layers(good, (np.zeros((C, 8)), np.zeros(C)))
    with pytest.raises(ValueError, match=r"head bias: expected \(4,\), got \(1,\)"):
        model.load_tf_layers(good, (np.zeros((8, C)), np.zeros(1)))


def test_initial_states_bidirectional_match_cells(rng, batch):
    model = LSTMClassifier(LSTMClassifierConfig(F, (6,), C, bidirectional=True)).eval()
    inputs, lengths = batch
    c0 = torch.randn(2, len(LENGTHS), 6)
    h0 = torch.randn(2, len(LENGTHS), 6)
    with torch.no_grad():
        out = model(inputs, lengths, initial_states=(LSTMStateTuple(c0, h0),))
    (cell_fw,), (cell_bw,) = model.to_tf_cells()
    (fw, bw), (sf, sb) = bidirectional_dynamic_rnn(
        cell_fw,
        cell_bw,
        inputs,
        lengths,
        initial_state_fw=LSTMStateTuple(c0[0], h0[0]),
        initial_state_bw=LSTMStateTuple(c0[1], h0[1]),
    )
    torch.testing.assert_close(out.outputs, torch.cat([fw, bw], dim=-1), **TOL)
    torch.testing.assert_close(out.states[0].c, torch.stack([sf.c, sb.c]), **TOL)
    torch.testing.assert_close(out.states[0].h, torch.stack([sf.h, sb.h]), **TOL)


def test_per_direction_layers_read_only_their_own_direction(rng, batch):
    """Each direction's layer 1 reads that direction's layer 0 (width H_0, not 2*H_0): the
    backward stack alone, run as a MultiRNNCell over reversed sequences, gives the backward
    half, so nothing of the forward stack reaches it (and the other way round)."""
    config = LSTMClassifierConfig(F, (6, 5), C, bidirectional=True, topology=PER_DIRECTION)
    model = LSTMClassifier(config).eval()
    assert config.layer_input_sizes == (F, 6)
    assert [[d.input_size for d in layer] for layer in model.layers] == [[F, F], [6, 6]]
    inputs, lengths = batch
    c0 = [torch.randn(2, len(LENGTHS), size) for size in config.layer_sizes]
    h0 = [torch.randn(2, len(LENGTHS), size) for size in config.layer_sizes]
    initial = tuple(LSTMStateTuple(c, h) for c, h in zip(c0, h0, strict=True))
    with torch.no_grad():
        out = model(inputs, lengths, initial_states=initial)
        cells_fw, cells_bw = model.to_tf_cells()
        for direction, cells in enumerate((cells_fw, cells_bw)):
            start = tuple(
                LSTMStateTuple(c[direction], h[direction]) for c, h in zip(c0, h0, strict=True)
            )
            # The backward stack reads each sequence reversed within its own length.
            seen = reverse_sequence(inputs, lengths) if direction else inputs
            half, states = dynamic_rnn(MultiRNNCell(cells), seen, lengths, start)
            half = reverse_sequence(half, lengths) if direction else half
            width = config.layer_sizes[-1]
            got = out.outputs[..., direction * width : (direction + 1) * width]
            torch.testing.assert_close(got, half, **TOL)
            for n, state in enumerate(states):
                torch.testing.assert_close(out.states[n].c[direction], state.c, **TOL)
                torch.testing.assert_close(out.states[n].h[direction], state.h, **TOL)


def test_per_direction_differs_from_stacked_with_the_same_cells(batch):
    """Not a relabelling: the same first layers wired the two ways give other results above."""
    per_direction = LSTMClassifier(
        LSTMClassifierConfig(F, (6, 6), C, bidirectional=True, topology=PER_DIRECTION)
    ).eval()
    stacked = LSTMClassifier(LSTMClassifierConfig(F, (6, 6), C, bidirectional=True)).eval()
    inputs, lengths = batch
    with torch.no_grad():
        for direction in range(2):
            for name, param in stacked.direction_weights(0, direction).items():
                param.copy_(per_direction.direction_weights(0, direction)[name])
        a, b = per_direction(inputs, lengths), stacked(inputs, lengths)
    torch.testing.assert_close(a.states[0].h, b.states[0].h)
    assert not torch.allclose(a.states[1].h, b.states[1].h, atol=1e-3)


def test_forward_input_validation():
    model = LSTMClassifier(LSTMClassifierConfig(F, (4,), C)).eval()
    inputs = torch.zeros(2, 5, F)
    with pytest.raises(ValueError, match=r"inputs must be \(B, T, 5\), got \(2, 5, 3\)"):
        model(torch.zeros(2, 5, 3), torch.tensor([5, 5]))
    with pytest.raises(ValueError, match=r"inputs must be \(B, T, 5\)"):
        model(torch.zeros(5, F), torch.tensor([5]))
    with pytest.raises(ValueError, match=r"lengths must be \(2,\), got \(3,\)"):
        model(inputs, torch.tensor([5, 5, 5]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        model(inputs, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        model(inputs, torch.tensor([6, 5]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        reference_forward(model, inputs, torch.tensor([6, 5]))


# -- config -----------------------------------------------------------------------------------


def test_config_derived_values_and_round_trip():
    config = LSTMClassifierConfig(12, [128, 256], 9, bidirectional=True, labels=list("123456789"))
    assert config.layer_sizes == (128, 256) and config.labels == tuple("123456789")
    assert config.architecture == "bidirectional_lstm"
    assert config.num_directions == 2 and config.output_size == 512
    data = json.loads(json.dumps(config.to_dict()))  # plain JSON types only
    assert LSTMClassifierConfig.from_dict(data) == config
    plain = LSTMClassifierConfig(3, (8,), 3)
    assert plain.labels == ("0", "1", "2")
    assert plain.architecture == "stacked_lstm" and plain.output_size == 8
    model = LSTMClassifier(config)
    assert [layer.input_size for layer in model.layers] == [12, 256]
    assert [layer.hidden_size for layer in model.layers] == [128, 256]
    assert model.head.in_features == 512 and model.head.out_features == 9
    assert config.topology == "stacked" and config.layer_input_sizes == (12, 256)


def test_config_topology_round_trip_and_old_configs():
    config = LSTMClassifierConfig(12, (32, 24), 9, bidirectional=True, topology=PER_DIRECTION)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["topology"] == "per_direction"
    assert LSTMClassifierConfig.from_dict(data) == config
    assert config.layer_input_sizes == (12, 32) and config.output_size == 48
    del data["topology"]  # a config saved before topologies existed
    assert LSTMClassifierConfig.from_dict(data).topology == "stacked"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": 0}, "input_size and num_classes must be positive"),
        ({"num_classes": 0}, "input_size and num_classes must be positive"),
        ({"layer_sizes": ()}, "layer_sizes must be positive widths"),
        ({"layer_sizes": (8, 0)}, "layer_sizes must be positive widths"),
        ({"labels": ("a", "b")}, "2 labels given for 3 classes"),
        ({"topology": "sideways"}, "topology must be one of"),
        ({"topology": "per_direction"}, "needs a bidirectional model of two or more layers"),
        (
            {"topology": "per_direction", "bidirectional": True},
            r"got bidirectional=True, 1 layer\(s\)",
        ),
        (
            {"topology": "per_direction", "layer_sizes": (8, 8)},
            "got bidirectional=False, 2 layer",
        ),
    ],
)
def test_config_validation_errors(kwargs, message):
    base = {"input_size": 4, "layer_sizes": (8,), "num_classes": 3}
    with pytest.raises(ValueError, match=message):
        LSTMClassifierConfig(**{**base, **kwargs})
