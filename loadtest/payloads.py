"""Request bodies for the three protocols, encoded once before a run, and response decoders.

Shapes: ``B`` sequences in a request, ``T`` the longest of them, ``F`` features, ``C`` classes.

* ``v1``: ``POST /v1/models/{model}/predict`` with ``{"sequences": [...], "return": [...]}``;
* ``v2-json``: ``POST /v2/models/{model}/infer`` with ``inputs`` ``[B, T, F]`` FP32 (zero
  padded) and ``lengths`` ``[B]`` INT32 as JSON data, asking for ``probs`` in JSON;
* ``v2-binary``: the same tensors as raw little-endian bytes after a JSON header
  (``Inference-Header-Content-Length``), asking for ``probs`` as binary data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from loadtest.distributions import IntDistribution
from padding import pad_sequences

PROTOCOLS = ("v1", "v2-json", "v2-binary")
HEADER_LENGTH = "Inference-Header-Content-Length"
_DTYPES: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "FP16": np.dtype("<f2"),
}


@dataclass(frozen=True)
class EncodedRequest:
    """One pre-encoded request: what the client sends, and what went into it."""

    path: str
    body: bytes
    headers: dict[str, str]
    lengths: tuple[int, ...]
    """Length of each sequence in the request (``B`` entries)."""

    @property
    def sequences(self) -> int:
        return len(self.lengths)


@dataclass(frozen=True)
class PoolSpec:
    """Everything that determines a pool of requests; the same spec always gives the same pool."""

    protocol: str
    model: str
    features: int
    lengths: IntDistribution
    sequences_per_request: IntDistribution
    size: int
    seed: int
    version: str | None = None
    outputs: tuple[str, ...] = field(default=("probs",))
    """V2 outputs asked for; v1 always asks for label and probabilities."""


def route(protocol: str, model: str, version: str | None = None) -> str:
    base = f"/models/{model}" + (f"/versions/{version}" if version else "")
    if protocol == "v1":
        return f"/v1{base}/predict"
    if protocol in ("v2-json", "v2-binary"):
        return f"/v2{base}/infer"
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def _json(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A JSON request body (numpy arrays allowed) and its headers."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), {
        "Content-Type": "application/json"
    }


def encode_v1(sequences: list[np.ndarray]) -> tuple[bytes, dict[str, str]]:
    body = {"sequences": sequences, "return": ["label", "probabilities"]}
    return _json(body)


def encode_v2_json(
    sequences: list[np.ndarray], outputs: tuple[str, ...] = ("probs",)
) -> tuple[bytes, dict[str, str]]:
    batch, lengths = pad_sequences(sequences)
    body = {
        "inputs": [
            {
                "name": "inputs",
                "shape": list(batch.shape),
                "datatype": "FP32",
                "data": batch.ravel(),
            },
            {"name": "lengths", "shape": [len(lengths)], "datatype": "INT32", "data": lengths},
        ],
        "outputs": [{"name": name} for name in outputs],
    }
    return _json(body)


def encode_v2_binary(
    sequences: list[np.ndarray], outputs: tuple[str, ...] = ("probs",)
) -> tuple[bytes, dict[str, str]]:
    batch, lengths = pad_sequences(sequences)
    blobs = [batch.astype("<f4").tobytes(), lengths.astype("<i4").tobytes()]
    header = {
        "inputs": [
            {
                "name": "inputs",
                "shape": list(batch.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(blobs[0])},
            },
            {
                "name": "lengths",
                "shape": [len(lengths)],
                "datatype": "INT32",
                "parameters": {"binary_data_size": len(blobs[1])},
            },
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
    }
    encoded = orjson.dumps(header)
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(encoded))}
    return encoded + b"".join(blobs), headers


def encode(
    protocol: str, sequences: list[np.ndarray], outputs: tuple[str, ...] = ("probs",)
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one request carrying ``sequences`` (each ``(L, F)`` float32)."""
    if protocol == "v1":
        return encode_v1(sequences)
    if protocol == "v2-json":
        return encode_v2_json(sequences, outputs)
    if protocol == "v2-binary":
        return encode_v2_binary(sequences, outputs)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def pool_sequences(spec: PoolSpec) -> list[list[np.ndarray]]:
    """The sequences of each request of the pool: random normal features, seeded."""
    rng = np.random.default_rng(spec.seed)
    counts = spec.sequences_per_request.sample(rng, spec.size)
    lengths = spec.lengths.sample(rng, int(counts.sum()))
    requests, k = [], 0
    for count in counts:
        requests.append(
            [
                rng.standard_normal((int(length), spec.features), dtype=np.float32)
                for length in lengths[k : k + count]
            ]
        )
        k += count
    return requests


def build_pool(spec: PoolSpec) -> list[EncodedRequest]:
    """``spec.size`` pre-encoded requests (a run cycles through them)."""
    path = route(spec.protocol, spec.model, spec.version)
    pool = []
    for sequences in pool_sequences(spec):
        body, headers = encode(spec.protocol, sequences, spec.outputs)
        pool.append(EncodedRequest(path, body, headers, tuple(len(s) for s in sequences)))
    return pool


# -- responses -------------------------------------------------------------------------------
class DecodeError(ValueError):
    """A response body that does not have the protocol's form."""


@dataclass
class DecodedResponse:
    """What a response says: ``probs`` ``(B, C)``, and for v1 the labels given."""

    probs: np.ndarray
    labels: list[str] | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def _v2_outputs(header: dict[str, Any], binary: memoryview | None) -> dict[str, np.ndarray]:
    outputs: dict[str, np.ndarray] = {}
    offset = 0
    for entry in header.get("outputs") or []:
        name, shape = entry["name"], tuple(entry["shape"])
        dtype = _DTYPES.get(entry.get("datatype", "FP32"))
        if dtype is None:
            raise DecodeError(f"output {name!r} has datatype {entry.get('datatype')!r}")
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if binary is None or offset + size > len(binary):
                raise DecodeError(f"output {name!r}: binary data shorter than {size} bytes")
            array = np.frombuffer(binary[offset : offset + size], dtype=dtype)
            offset += size
        else:
            array = np.asarray(entry["data"], dtype=dtype)
        if array.size != int(np.prod(shape)):
            raise DecodeError(f"output {name!r}: {array.size} values for shape {list(shape)}")
        outputs[name] = array.reshape(shape)
    if binary is not None and offset != len(binary):
        raise DecodeError(f"{len(binary) - offset} bytes of binary data belong to no output")
    return outputs


def decode_response(protocol: str, body: bytes, header_length: str | None) -> DecodedResponse:
    """Decode a successful response; raises ``DecodeError`` when it is not well formed."""
    try:
        if protocol == "v1":
            content = orjson.loads(body)
            results = content["results"]
            probs = np.array([r["probabilities"] for r in results], dtype=np.float32)
            return DecodedResponse(probs, labels=[r["label"] for r in results])
        if header_length is not None:
            split = int(header_length)
            header, binary = orjson.loads(body[:split]), memoryview(body)[split:]
        else:
            header, binary = orjson.loads(body), None
        outputs = _v2_outputs(header, binary)
        if "probs" not in outputs:
            raise DecodeError(f"no 'probs' output among {sorted(outputs)}")
        return DecodedResponse(outputs["probs"], outputs=outputs)
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as error:
        raise DecodeError(f"{protocol} response not understood: {error!r}") from None
