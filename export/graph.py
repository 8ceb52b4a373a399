"""Build the ONNX graph of an ``LSTMClassifier`` with ``onnx.helper``: native ``LSTM`` nodes whose
``sequence_lens`` is the graph input ``lengths``, so padding never reaches a result.

Why not ``torch.onnx.export``: it traces ``nn.LSTM`` on a padded tensor without lengths (wrong
final states and, when bidirectional, wrong outputs), and exporting packed sequences is fragile.

Shapes: ``B`` batch, ``T`` padded time, ``F`` input features, ``H_n`` hidden width of layer
``n``, ``dirs`` 1 or 2, ``D = dirs * H_last``, ``C`` classes. The ONNX ``LSTM`` runs with
``layout = 0`` (time-major): ``X`` ``(T, B, F)``, ``Y`` ``(T, dirs, B, H)``, ``Y_h`` and ``Y_c``
``(dirs, B, H)``.

Graph, stacked topology (one LSTM node per layer, ``direction`` forward or bidirectional)::

    inputs (B,T,F) ─Transpose→ (T,B,F) ─LSTM_0→ Y (T,dirs,B,H_0) ─Transpose,Reshape→ (T,B,dirs*H_0)
        ─LSTM_1→ ... ─LSTM_last→ Y ─Transpose,Reshape→ outputs (B,T,D)
    final_h_last (dirs,B,H) ─Transpose,Reshape→ (B,D) ─Gemm→ logits (B,C) ─Softmax→ probs

Per-direction topology (``LSTMClassifierConfig.topology``): one chain of LSTM nodes per direction,
``direction`` "forward" and "reverse" (ONNX reverses each sequence within its
``sequence_lens``), each layer reading only its own direction's layer below; the layer's initial
states are split by direction and its final states concatenated back to ``(2, B, H_n)``::

    (T,B,F) ─LSTM_0_fw→ Y (T,1,B,H_0) ─Squeeze→ (T,B,H_0) ─LSTM_1_fw→ ... ─LSTM_last_fw→ Y_fw ┐
    (T,B,F) ─LSTM_0_bw→ Y (T,1,B,H_0) ─Squeeze→ (T,B,H_0) ─LSTM_1_bw→ ... ─LSTM_last_bw→ Y_bw ┤
        Concat(axis 1) → Y (T,2,B,H) ─Transpose,Reshape→ outputs (B,T,D), head as above       ┘
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.names import (
    BATCH_DIM,
    INPUTS,
    LENGTHS,
    LOGITS,
    OUTPUTS,
    PROBS,
    TIME_DIM,
    final_c,
    final_h,
    initial_c,
    initial_h,
)
from models.architectures import LSTM_PARAMETERS, LSTMClassifier

OPSET = 21
"""The default ``ai.onnx`` opset: ``LSTM`` with ``layout`` (14+), ``Shape`` with start/end (15+).
The model's IR version is the one onnx released with the opset (10 for 21): onnx 1.23 would
write IR 14 by default, which onnxruntime 1.31 refuses (it reads at most IR 13)."""

# Row blocks of torch's (i, f, g, o) in ONNX's order (i, o, f, c): ONNX block k is torch block
# _ONNX_FROM_TORCH[k] (g and c are the same candidate gate).
_ONNX_FROM_TORCH = (0, 3, 1, 2)

# float16 later only changes these two; every weight and state goes through them.
_ELEM_TYPE = TensorProto.FLOAT
_NP_DTYPE = np.float32


def onnx_lstm_weights(
    weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: np.ndarray, bias_hh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction of a torch ``nn.LSTM`` layer in ONNX ``LSTM`` layout.

    Args:
        weight_ih: ``(4H, F)``; weight_hh: ``(4H, H)``; bias_ih, bias_hh: ``(4H,)``; row blocks
            in torch order (i, f, g, o).

    Returns:
        ``W`` ``(4H, F)``, ``R`` ``(4H, H)`` and ``B`` ``(8H,)`` (``Wb`` then ``Rb``), row blocks
        in ONNX order (i, o, f, c). A pure permutation: no arithmetic, so no rounding.
    """

    def reorder(array: np.ndarray) -> np.ndarray:
        blocks = np.split(np.asarray(array, dtype=_NP_DTYPE), 4, axis=0)
        return np.concatenate([blocks[k] for k in _ONNX_FROM_TORCH], axis=0)

    bias = np.concatenate([reorder(bias_ih), reorder(bias_hh)])
    return reorder(weight_ih), reorder(weight_hh), bias


def _layer_weights(model: LSTMClassifier, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W (dirs, 4H, W_n)``, ``R (dirs, 4H, H)``, ``B (dirs, 8H)`` of layer ``layer``; direction
    0 is forward, 1 backward (``LSTMClassifier.direction_weights``, either topology)."""
    per_direction = []
    for direction in range(model.config.num_directions):
        weights = model.direction_weights(layer, direction)
        arrays = [weights[name].detach().cpu().numpy() for name in LSTM_PARAMETERS]
        per_direction.append(onnx_lstm_weights(*arrays))
    w, r, b = (np.stack(parts) for parts in zip(*per_direction, strict=True))
    return w, r, b


class _GraphBuilder:
    """Collects nodes and initializers; names each intermediate after what it holds."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> list[str]:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0], **attrs))
        return outputs


def build_onnx_model(model: LSTMClassifier, *, opset: int = OPSET) -> onnx.ModelProto:
    """The ONNX graph of ``model`` (weights copied, no metadata yet), checked by
    ``onnx.checker.check_model``.

    Graph inputs: ``inputs (B, T, F)`` float32, ``lengths (B,)`` int32, and per layer ``n`` the
    overridable ``initial_c_n`` / ``initial_h_n`` ``(dirs, B, H_n)`` whose zero initializers are
    ``(dirs, 1, H_n)`` and are expanded to ``B`` in the graph. Outputs: ``logits``, ``probs``
    ``(B, C)``, ``outputs (B, T, D)``, ``final_c_n`` / ``final_h_n`` ``(dirs, B, H_n)``.
    """
    if opset < 15:
        raise ValueError(f"opset {opset} is too old: LSTM layout needs 14, Shape start/end 15")
    config = model.config
    dirs = config.num_directions
    g = _GraphBuilder()

    batch, time = BATCH_DIM, TIME_DIM
    graph_inputs = [
        helper.make_tensor_value_info(INPUTS, _ELEM_TYPE, [batch, time, config.input_size]),
        helper.make_tensor_value_info(LENGTHS, TensorProto.INT32, [batch]),
    ]
    graph_outputs = [
        helper.make_tensor_value_info(LOGITS, _ELEM_TYPE, [batch, config.num_classes]),
        helper.make_tensor_value_info(PROBS, _ELEM_TYPE, [batch, config.num_classes]),
        helper.make_tensor_value_info(OUTPUTS, _ELEM_TYPE, [batch, time, config.output_size]),
    ]

    # The states' target shape (dirs, B, H_n) needs B at run time: take it from the inputs.
    g.node("Shape", [INPUTS], ["batch_size"], start=0, end=1)
    g.const("dirs", np.array([dirs], dtype=np.int64))
    g.const("flatten_last_two", np.array([0, 0, -1], dtype=np.int64))

    layer_input = g.node("Transpose", [INPUTS], ["inputs_tbf"], perm=[1, 0, 2])[0]
    direction_inputs = [layer_input] * dirs  # per direction: what each chain reads next
    if config.per_direction:
        g.const("split_by_direction", np.array([1, 1], dtype=np.int64))
        g.const("direction_axis", np.array([1], dtype=np.int64))
    for n, hidden in enumerate(config.layer_sizes):
        w, r, b = _layer_weights(model, n)
        g.const(f"hidden_{n}", np.array([hidden], dtype=np.int64))
        state_shape = g.node(
            "Concat", ["dirs", "batch_size", f"hidden_{n}"], [f"state_shape_{n}"], axis=0
        )[0]
        states = {}
        for state_name in (initial_h(n), initial_c(n)):
            # Graph input + initializer = an overridable initializer: callers may leave it out.
            # Stored with batch 1 so the file does not depend on B; Expand broadcasts it, and a
            # full (dirs, B, H_n) state passed by a caller goes through Expand unchanged.
            g.const(state_name, np.zeros((dirs, 1, hidden), dtype=_NP_DTYPE))
            graph_inputs.append(
                helper.make_tensor_value_info(state_name, _ELEM_TYPE, [dirs, batch, hidden])
            )
            states[state_name] = g.node(
                "Expand", [state_name, state_shape], [f"{state_name}_expanded"]
            )[0]
        graph_outputs += [
            helper.make_tensor_value_info(final_c(n), _ELEM_TYPE, [dirs, batch, hidden]),
            helper.make_tensor_value_info(final_h(n), _ELEM_TYPE, [dirs, batch, hidden]),
        ]
        is_top = n + 1 == len(config.layer_sizes)
        if config.per_direction:
            ys = _per_direction_layer(
                g,
                n,
                hidden,
                direction_inputs,
                (w, r, b),
                states[initial_h(n)],
                states[initial_c(n)],
            )
            if not is_top:  # each chain reads its own direction: (T, 1, B, H) → (T, B, H)
                direction_inputs = [
                    g.node("Squeeze", [y, "direction_axis"], [f"X_{n + 1}_{way}"])[0]
                    for y, way in zip(ys, _WAYS, strict=True)
                ]
                continue
            y = g.node("Concat", ys, [f"Y_{n}"], axis=1)[0]  # (T, 2, B, H), as bidirectional
        else:
            g.const(f"W_{n}", w)
            g.const(f"R_{n}", r)
            g.const(f"B_{n}", b)
            y = g.node(
                "LSTM",
                [
                    direction_inputs[0],
                    f"W_{n}",
                    f"R_{n}",
                    f"B_{n}",
                    LENGTHS,
                    states[initial_h(n)],
                    states[initial_c(n)],
                ],
                [f"Y_{n}", final_h(n), final_c(n)],
                hidden_size=hidden,
                direction="bidirectional" if config.bidirectional else "forward",
                layout=0,
            )[0]
        # Y (T, dirs, B, H) → (T, B, dirs, H) → (T, B, dirs*H): forward half first, as torch.
        if is_top:
            y_btdh = g.node("Transpose", [y], [f"Y_{n}_btdh"], perm=[2, 0, 1, 3])[0]
            g.node("Reshape", [y_btdh, "flatten_last_two"], [OUTPUTS])
        else:
            y_tbdh = g.node("Transpose", [y], [f"Y_{n}_tbdh"], perm=[0, 2, 1, 3])[0]
            direction_inputs = [g.node("Reshape", [y_tbdh, "flatten_last_two"], [f"X_{n + 1}"])[0]]

    # Head on concat(h_fw, h_bw) of the top layer: (dirs, B, H) → (B, dirs, H) → (B, D).
    top = len(config.layer_sizes) - 1
    h_bdh = g.node("Transpose", [final_h(top)], ["top_h_bdh"], perm=[1, 0, 2])[0]
    g.const("flatten_to_2d", np.array([0, -1], dtype=np.int64))
    final = g.node("Reshape", [h_bdh, "flatten_to_2d"], ["top_h"])[0]
    g.const("head_weight", model.head.weight.detach().cpu().numpy().astype(_NP_DTYPE))  # (C, D)
    g.const("head_bias", model.head.bias.detach().cpu().numpy().astype(_NP_DTYPE))  # (C,)
    g.node("Gemm", [final, "head_weight", "head_bias"], [LOGITS], transB=1)
    g.node("Softmax", [LOGITS], [PROBS], axis=-1)

    graph = helper.make_graph(
        g.nodes, "lstm_classifier", graph_inputs, graph_outputs, initializer=g.initializers
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="lstm-serving export",
        producer_version="1",
    )
    proto.ir_version = _ir_version_for(opset)
    onnx.checker.check_model(proto, full_check=True)
    return proto


_WAYS = ("fw", "bw")
"""Direction 0 and 1 in the names of a per-direction graph."""


def _per_direction_layer(
    g: _GraphBuilder,
    n: int,
    hidden: int,
    inputs: list[str],
    weights: tuple[np.ndarray, np.ndarray, np.ndarray],
    initial_h_expanded: str,
    initial_c_expanded: str,
) -> list[str]:
    """Layer ``n`` (``hidden`` wide) of a per-direction graph: a "forward" LSTM node on
    ``inputs[0]`` and a "reverse" one on ``inputs[1]`` (each ``(T, B, W_n)``), both with
    ``sequence_lens``.

    ``weights`` are ``_layer_weights``' ``(2, ...)`` arrays; the expanded initial states
    ``(2, B, H_n)`` are split by direction, and the final states concatenated back into the
    graph outputs ``final_h_n`` / ``final_c_n`` ``(2, B, H_n)``. Returns ``[Y_fw, Y_bw]``, each
    ``(T, 1, B, H_n)`` in input time order, zero past each length.
    """
    split = {
        kind: g.node(
            "Split",
            [expanded, "split_by_direction"],
            [f"{expanded}_{way}" for way in _WAYS],
            axis=0,
        )
        for kind, expanded in (("h0", initial_h_expanded), ("c0", initial_c_expanded))
    }
    ys, final_hs, final_cs = [], [], []
    for direction, (way, onnx_direction) in enumerate(
        zip(_WAYS, ("forward", "reverse"), strict=True)
    ):
        w, r, b = (
            g.const(f"{kind}_{n}_{way}", array[direction : direction + 1])
            for kind, array in zip("WRB", weights, strict=True)
        )
        y, y_h, y_c = g.node(
            "LSTM",
            [inputs[direction], w, r, b, LENGTHS, split["h0"][direction], split["c0"][direction]],
            [f"Y_{n}_{way}", f"{final_h(n)}_{way}", f"{final_c(n)}_{way}"],
            hidden_size=hidden,
            direction=onnx_direction,
            layout=0,
        )
        ys.append(y)
        final_hs.append(y_h)
        final_cs.append(y_c)
    g.node("Concat", final_hs, [final_h(n)], axis=0)
    g.node("Concat", final_cs, [final_c(n)], axis=0)
    return ys


def _ir_version_for(opset: int) -> int:
    """The IR version that onnx released together with ``opset`` (so onnxruntime can load it)."""
    for _release, ir_version, ai_onnx, *_ in onnx.helper.VERSION_TABLE:
        if ai_onnx == opset:
            return int(ir_version)
    raise ValueError(f"opset {opset} is not in onnx.helper.VERSION_TABLE")
