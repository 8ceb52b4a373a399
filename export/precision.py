"""The precision variants of an exported graph: int8 for the CPU, fp16 for the GPU.

Both are made from the verified fp32 graph (``export.graph``), so the contract's inputs, outputs
and states stay float32 at the boundary and clients do not change:

* **int8**: ONNX Runtime's dynamic quantization. Each ``LSTM`` becomes
  ``com.microsoft.DynamicQuantizeLSTM`` (weights int8, per tensor; each run quantizes its input
  to uint8 with a scale taken from the whole input tensor, padding included: the service pads
  with zeros, which is why the verification does too) and the head's ``Gemm`` an integer
  ``MatMul``. Its kernels exist on the CPU only.
* **fp16**: each ``LSTM`` node runs in float16 (weights, inputs, states) between ``Cast`` nodes;
  everything else (the transposes, the head, the softmax) stays float32, so the probabilities
  are computed in float32 from fp16 hidden states. A GPU variant: it halves the memory traffic
  of each step there.

Shapes: ``B`` batch, ``T`` time, ``F`` features, ``H`` hidden width, ``C`` classes.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.precision import FP16, FP32, INT8, PRECISIONS

VERIFIED_ON = {FP32: ("cpu", "cuda"), INT8: ("cpu",), FP16: ("cuda", "cpu")}
"""Where each variant can be verified: int8's kernels are CPU-only; ONNX Runtime's CPU provider
runs a float16 LSTM correctly (so an fp16 variant can be made and checked without a GPU)."""
# Where each is served: contract.precision.SERVED_ON.

# The LSTM node's float inputs that carry data (X, initial_h, initial_c) and its weights
# (W, R, B): positions in ONNX's LSTM signature.
_DATA_INPUTS = (0, 5, 6)
_WEIGHT_INPUTS = (1, 2, 3)


def quantize_int8(fp32: onnx.ModelProto) -> onnx.ModelProto:
    """``fp32`` with its LSTMs and head dynamically quantized (weights int8), its IR version and
    metadata kept."""
    # Imported here: onnxruntime.quantization pulls in a large module tree, needed only now.
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        onnx.save(fp32, source)
        # The quantizer logs advice for image models on the root logger ("run pre-processing",
        # "parameters for tensor top_h not specified": the head's input, quantized at run time
        # as intended); the export's own report says what was made and checked.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        quantized = onnx.load(target)
    quantized.ir_version = fp32.ir_version  # the quantizer may stamp its onnx's default (14)
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(fp32.metadata_props)
    return quantized


def lstm_to_fp16(fp32: onnx.ModelProto) -> onnx.ModelProto:
    """``fp32`` with every ``LSTM`` node in float16: its weights stored as float16, its data
    inputs cast to float16 before it and its outputs cast back to float32 after it."""
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "LSTM":
            nodes.append(node)
            continue
        for position in _WEIGHT_INPUTS:
            name = node.input[position]
            tensor = initializers[name]
            if name in graph_inputs:  # overridable: its type is the graph input's float32
                raise ValueError(f"LSTM weight {name} is a graph input; it cannot be float16")
            tensor.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), name)
            )
        for position in _DATA_INPUTS:
            if position < len(node.input) and node.input[position]:
                name = node.input[position]
                half = f"{name}_fp16_for_{node.name}"
                nodes.append(
                    helper.make_node("Cast", [name], [half], name=half, to=TensorProto.FLOAT16)
                )
                node.input[position] = half
        casts = []
        for k, name in enumerate(node.output):
            if not name:
                continue
            half = f"{name}_fp16"
            node.output[k] = half
            casts.append(
                helper.make_node(
                    "Cast", [half], [name], name=f"{name}_to_fp32", to=TensorProto.FLOAT
                )
            )
        nodes.append(node)
        nodes.extend(casts)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # intermediate types changed; ORT infers them again
    onnx.checker.check_model(model, full_check=True)
    return model


def make_variant(fp32: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """The ``precision`` variant of the verified ``fp32`` graph (``fp32`` itself for fp32)."""
    if precision == FP32:
        return fp32
    if precision == INT8:
        return quantize_int8(fp32)
    if precision == FP16:
        return lstm_to_fp16(fp32)
    raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
