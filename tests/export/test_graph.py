"""The graph's structure: native LSTM nodes wired to ``lengths``, the contract's I/O, versions."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from contract import names as contract
from export.graph import OPSET, build_onnx_model, onnx_lstm_weights
from models.architectures import LSTMClassifier


def _attribute(node: onnx.NodeProto, name: str) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return None


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [
        d.dim_param if d.HasField("dim_param") else d.dim_value
        for d in value_info.type.tensor_type.shape.dim
    ]


def test_every_lstm_layer_is_a_native_node_fed_by_the_lengths_input(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto
) -> None:
    config = torch_model.config
    lstm_nodes = [node for node in onnx_model.graph.node if node.op_type == "LSTM"]
    # Stacked: one node per layer; per direction: a forward and a reverse node per layer.
    if config.per_direction:
        expected = [(d, h) for h in config.layer_sizes for d in (b"forward", b"reverse")]
    else:
        direction = b"bidirectional" if config.bidirectional else b"forward"
        expected = [(direction, h) for h in config.layer_sizes]
    graph_inputs = {i.name for i in onnx_model.graph.input}
    initializers = {i.name for i in onnx_model.graph.initializer}
    assert [(_attribute(n, "direction"), _attribute(n, "hidden_size")) for n in lstm_nodes] == (
        expected
    )
    for node in lstm_nodes:
        # ONNX LSTM inputs: X, W, R, B, sequence_lens, initial_h, initial_c.
        assert node.input[4] == contract.LENGTHS
        assert contract.LENGTHS in graph_inputs and contract.LENGTHS not in initializers
        assert _attribute(node, "layout") == 0
    assert not any(node.op_type in ("Loop", "Scan") for node in onnx_model.graph.node)


@pytest.mark.parametrize("architecture", ["per_direction"])
def test_per_direction_chains_read_only_their_own_direction(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto
) -> None:
    """Each upper node's X comes from the same direction's node below, through a Squeeze;
    its W reads H_{n-1} inputs (not 2 * H_{n-1})."""
    producers = {out: node for node in onnx_model.graph.node for out in node.output}
    weights = {i.name: i for i in onnx_model.graph.initializer}
    lstm_nodes = [node for node in onnx_model.graph.node if node.op_type == "LSTM"]
    below = torch_model.config.layer_sizes[0]
    for node in lstm_nodes[2:]:  # layer 1's forward and reverse nodes
        squeeze = producers[node.input[0]]
        assert squeeze.op_type == "Squeeze"
        source = producers[squeeze.input[0]]
        assert source.op_type == "LSTM" and source in lstm_nodes[:2]
        assert _attribute(source, "direction") == _attribute(node, "direction")
        assert list(weights[node.input[1]].dims) == [
            1,
            4 * torch_model.config.layer_sizes[1],
            below,
        ]


def test_opset_and_ir_version_load_in_onnxruntime(onnx_model: onnx.ModelProto) -> None:
    opsets = {o.domain: o.version for o in onnx_model.opset_import}
    assert opsets == {"": OPSET}
    # onnx writes IR 14 by default, which onnxruntime 1.31 refuses; the builder pins it.
    assert onnx_model.ir_version == 10
    onnx.checker.check_model(onnx_model, full_check=True)
    ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_batch_and_time_are_dynamic_and_io_follows_the_contract(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto
) -> None:
    config = torch_model.config
    dirs = config.num_directions
    inputs = {i.name: i for i in onnx_model.graph.input}
    assert _dims(inputs[contract.INPUTS]) == ["batch", "time", config.input_size]
    assert _dims(inputs[contract.LENGTHS]) == ["batch"]
    assert inputs[contract.LENGTHS].type.tensor_type.elem_type == onnx.TensorProto.INT32
    outputs = {o.name: _dims(o) for o in onnx_model.graph.output}
    expected = {
        contract.LOGITS: ["batch", config.num_classes],
        contract.PROBS: ["batch", config.num_classes],
        contract.OUTPUTS: ["batch", "time", dirs * config.layer_sizes[-1]],
    }
    for n, hidden in enumerate(config.layer_sizes):
        expected[contract.final_c(n)] = [dirs, "batch", hidden]
        expected[contract.final_h(n)] = [dirs, "batch", hidden]
    assert outputs == expected
    assert list(outputs) == contract.output_names(len(config.layer_sizes))


def test_initial_states_are_overridable_zero_initializers(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto, session: ort.InferenceSession
) -> None:
    dirs = torch_model.config.num_directions
    assert [i.name for i in session.get_inputs()] == [contract.INPUTS, contract.LENGTHS]
    overridable = {i.name: i.shape for i in session.get_overridable_initializers()}
    initializers = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    expected = {}
    for n, hidden in enumerate(torch_model.config.layer_sizes):
        for name in (contract.initial_c(n), contract.initial_h(n)):
            expected[name] = [dirs, "batch", hidden]
            assert initializers[name].shape == (dirs, 1, hidden)
            assert not initializers[name].any()
    assert overridable == expected


def test_weights_are_reordered_from_torch_ifgo_to_onnx_iofc() -> None:
    hidden, features = 3, 2
    # Give every gate block its own constant, so the permutation is visible.
    blocks = {"i": 1.0, "f": 2.0, "g": 3.0, "o": 4.0}
    torch_order = np.concatenate([np.full(hidden, v, np.float32) for v in blocks.values()])
    weight_ih = np.repeat(torch_order[:, None], features, axis=1)
    weight_hh = np.repeat(torch_order[:, None], hidden, axis=1)
    w, r, b = onnx_lstm_weights(weight_ih, weight_hh, torch_order, 10 * torch_order)
    onnx_order = [blocks[k] for k in "iofg"]  # ONNX i, o, f, c (c is torch's g)
    assert w.shape == (4 * hidden, features) and r.shape == (4 * hidden, hidden)
    assert b.shape == (8 * hidden,)
    assert w[::hidden, 0].tolist() == onnx_order
    assert r[::hidden, 0].tolist() == onnx_order
    assert b[: 4 * hidden : hidden].tolist() == onnx_order  # Wb from bias_ih
    assert b[4 * hidden :: hidden].tolist() == [10 * v for v in onnx_order]  # Rb from bias_hh


@pytest.mark.parametrize("architecture", ["bidirectional", "per_direction"])
def test_builder_copies_each_direction_and_the_head(
    torch_model: LSTMClassifier, onnx_model: onnx.ModelProto
) -> None:
    """Stacked: ``W_1`` holds both directions; per direction: ``W_1_fw`` and ``W_1_bw`` one
    each. The torch side is read by parameter name, not through the builder's accessor."""
    initializers = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    per_direction = torch_model.config.per_direction
    for direction, (suffix, way) in enumerate((("", "fw"), ("_reverse", "bw"))):
        module = torch_model.layers[1][direction] if per_direction else torch_model.layers[1]
        w, r, b = onnx_lstm_weights(
            *(
                getattr(module, f"{name}_l0{'' if per_direction else suffix}").detach().numpy()
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
        )
        for kind, array in zip("WRB", (w, r, b), strict=True):
            if per_direction:
                stored = initializers[f"{kind}_1_{way}"][0]
            else:
                stored = initializers[f"{kind}_1"][direction]
            np.testing.assert_array_equal(stored, array)
    np.testing.assert_array_equal(
        initializers["head_weight"], torch_model.head.weight.detach().numpy()
    )


@pytest.mark.parametrize("architecture", ["stacked"])
def test_build_rejects_an_opset_without_lstm_layout(torch_model: LSTMClassifier) -> None:
    with pytest.raises(ValueError, match="opset"):
        build_onnx_model(torch_model, opset=13)


@pytest.mark.parametrize("architecture", ["stacked"])
def test_building_leaves_the_model_untouched(torch_model: LSTMClassifier) -> None:
    before = {k: v.clone() for k, v in torch_model.state_dict().items()}
    build_onnx_model(torch_model)
    after = torch_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
