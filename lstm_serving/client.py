"""``Client`` and ``AsyncClient``: classify sequences on an lstm-serving server (or any server
of the Open Inference Protocol that serves this project's models).

V2 (KServe) with the binary tensor extension by default: the sequences are padded into one
``(B, T, F)`` FP32 tensor plus their lengths, and the probabilities come back as raw bytes;
``protocol="v1"`` uses the simple JSON API instead. Streams (the server holds the LSTM state
between chunks) go through ``stream()``. Every error the server answers is raised as
``ServerError`` with its status and message.

Shapes: ``B`` sequences, ``L_i`` steps each, ``F`` features, ``C`` classes.

>>> client = Client("http://127.0.0.1:8000")
>>> result = client.predict("bilstm", [np.random.rand(20, 12)])
>>> result.labels, result.probabilities.shape
(['3'], (1, 9))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import httpx
import numpy as np

Protocol = Literal["v2", "v1"]
HEADER_LENGTH = "Inference-Header-Content-Length"
_DTYPES = {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2", "INT32": "<i4", "INT64": "<i8"}


class ServerError(Exception):
    """An error the server answered: ``status`` (HTTP), ``message`` and ``error_type`` as its
    error body gives them (``{"error": ..., "error_type": ...}``)."""

    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status}{', ' + error_type if error_type else ''})")
        self.status = status
        self.message = message
        self.error_type = error_type


@dataclass(frozen=True)
class Prediction:
    """The answer for ``B`` sequences."""

    model: str
    version: str
    labels: list[str | None]
    """Each sequence's class (None for a model without a class output)."""
    class_index: np.ndarray
    """``(B,)`` int: the index of each sequence's class in ``class_names`` (-1 without one)."""
    probabilities: np.ndarray | None
    """``(B, C)`` float32, or None for a model without a class output."""
    class_names: list[str]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    """Every output the server returned, by name (V2: as the server sent it, ``(B, ...)``)."""


@dataclass(frozen=True)
class _ModelInfo:
    name: str
    sequence_input: str
    lengths_input: str | None
    lengths_datatype: str
    time_major: bool
    class_names: list[str]
    probabilities_output: str | None
    logits_output: str | None

    @classmethod
    def from_v2(cls, body: dict[str, Any]) -> _ModelInfo:
        params = body.get("parameters", {})
        inputs = {i["name"]: i for i in body.get("inputs", [])}
        lengths = params.get("lengths_input")
        return cls(
            name=body["name"],
            sequence_input=params.get("sequence_input") or next(iter(inputs)),
            lengths_input=lengths,
            lengths_datatype=inputs[lengths]["datatype"] if lengths in inputs else "INT32",
            time_major=params.get("sequence_layout") == "time_major",
            class_names=[str(x) for x in params.get("labels", [])],
            probabilities_output=params.get("probabilities_output"),
            logits_output=params.get("logits_output"),
        )


def as_sequences(sequences: Any) -> list[np.ndarray]:
    """One sequence ``(L, F)`` or several (a list of ``(L_i, F)``, or ``(B, T, F)``) as a list of
    float32 ``(L_i, F)`` arrays."""
    if isinstance(sequences, np.ndarray):
        if sequences.ndim == 2:
            return [sequences.astype(np.float32, copy=False)]
        if sequences.ndim == 3:
            return [s.astype(np.float32, copy=False) for s in sequences]
        raise ValueError(f"expected (L, F) or (B, T, F), got shape {sequences.shape}")
    items = [np.asarray(s, dtype=np.float32) for s in sequences]
    if items and items[0].ndim == 1:  # a list of steps: one sequence
        return [np.asarray(sequences, dtype=np.float32)]
    for k, s in enumerate(items):
        if s.ndim != 2:
            raise ValueError(f"sequence {k}: expected (L, F), got shape {s.shape}")
    return items


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        message, error_type = str(body["error"]), body.get("error_type")
    except (ValueError, KeyError, TypeError):
        message, error_type = response.text.strip() or response.reason_phrase, None
    raise ServerError(response.status_code, message, error_type)


def _v2_request(
    info: _ModelInfo, sequences: list[np.ndarray], parameters: dict[str, Any]
) -> tuple[bytes, dict[str, str]]:
    """The binary V2 body: the JSON header, then the padded ``(B, T, F)`` batch and the
    ``(B,)`` lengths."""
    if not sequences:
        raise ValueError("no sequences to send")
    lengths = np.array([len(s) for s in sequences])
    features = {s.shape[1] for s in sequences}
    if len(features) != 1:
        raise ValueError(f"sequences differ in their number of features: {sorted(features)}")
    if info.lengths_input is None and len(set(lengths.tolist())) > 1:
        raise ValueError(f"model {info.name!r} takes no lengths: send sequences of one length")
    batch = np.zeros((len(sequences), int(lengths.max()), features.pop()), np.float32)
    for k, s in enumerate(sequences):
        batch[k, : len(s)] = s
    if info.time_major:
        batch = np.ascontiguousarray(batch.transpose(1, 0, 2))
    tensors = [(info.sequence_input, "FP32", batch)]
    if info.lengths_input is not None:
        dtype = _DTYPES.get(info.lengths_datatype, "<i4")
        tensors.append((info.lengths_input, info.lengths_datatype, lengths.astype(dtype)))
    wanted = [n for n in (info.probabilities_output, info.logits_output) if n][:1]
    header: dict[str, Any] = {
        "inputs": [
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": array.nbytes},
            }
            for name, datatype, array in tensors
        ],
        "parameters": {"binary_data_output": True, **parameters},
    }
    if wanted:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in wanted]
    head = json.dumps(header).encode()
    body = head + b"".join(array.tobytes() for _, _, array in tensors)
    headers = {HEADER_LENGTH: str(len(head)), "Content-Type": "application/octet-stream"}
    return body, headers


def _v2_outputs(response: httpx.Response) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    content = response.content
    length = response.headers.get(HEADER_LENGTH)
    head = json.loads(content[: int(length)] if length is not None else content)
    offset = int(length) if length is not None else len(content)
    outputs: dict[str, np.ndarray] = {}
    for out in head.get("outputs", []):
        dtype = np.dtype(_DTYPES.get(out["datatype"], "<f4"))
        size = out.get("parameters", {}).get("binary_data_size")
        if size is not None:
            array = np.frombuffer(content, dtype, int(size) // dtype.itemsize, offset)
            offset += int(size)
        else:
            array = np.asarray(out["data"], dtype)
        outputs[out["name"]] = array.reshape(out["shape"])
    return head, outputs


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def _v2_prediction(info: _ModelInfo, response: httpx.Response) -> Prediction:
    head, outputs = _v2_outputs(response)
    probabilities: np.ndarray | None = None
    if info.probabilities_output in outputs:
        probabilities = outputs[str(info.probabilities_output)]
    elif info.logits_output in outputs:
        probabilities = _softmax(outputs[str(info.logits_output)])
    if probabilities is None:
        count = next(iter(outputs.values())).shape[0] if outputs else 0
        index = np.full(count, -1)
        labels: list[str | None] = [None] * count
    else:
        index = probabilities.argmax(axis=-1)
        labels = [info.class_names[i] if i < len(info.class_names) else str(i) for i in index]
    return Prediction(
        model=str(head.get("model_name", info.name)),
        version=str(head.get("model_version", "")),
        labels=labels,
        class_index=index,
        probabilities=probabilities,
        class_names=info.class_names,
        outputs=outputs,
    )


def _v1_request(sequences: list[np.ndarray], parameters: dict[str, Any]) -> dict[str, Any]:
    return {"sequences": [s.tolist() for s in sequences], **parameters}


def _v1_prediction(body: dict[str, Any]) -> Prediction:
    results = body["results"]
    names = [str(x) for x in body.get("labels", [])]
    has_class = bool(results) and "probabilities" in results[0]
    probabilities = (
        np.array([r["probabilities"] for r in results], np.float32) if has_class else None
    )
    return Prediction(
        model=body["model"],
        version=str(body["version"]),
        labels=[r.get("label") for r in results],
        class_index=np.array([r.get("class_index", -1) for r in results]),
        probabilities=probabilities,
        class_names=names,
        outputs={} if has_class else {"results": np.array(results, dtype=object)},
    )


def _stream_parameters(
    sequence_id: int | str | None, start: bool, end: bool, n: int
) -> dict[str, Any]:
    if sequence_id is None:
        return {}
    if n != 1:
        raise ValueError(f"a stream's chunk is one sequence, got {n}")
    return {"sequence_id": sequence_id, "sequence_start": start, "sequence_end": end}


def _path(model: str, version: str | None, action: str, prefix: str) -> str:
    where = f"{prefix}/models/{model}" + (f"/versions/{version}" if version else "")
    return f"{where}/{action}" if action else where


class Client:
    """A synchronous client: ``Client(url, api_key=None, protocol="v2", timeout_s=30)``.

    ``api_key`` is sent as ``Authorization: Bearer KEY``. Use it as a context manager, or call
    ``close()``.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        protocol: Protocol = "v2",
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.protocol = protocol
        self._http = httpx.Client(
            base_url=url, headers=headers, timeout=timeout_s, transport=transport
        )
        self._models: dict[tuple[str, str | None], _ModelInfo] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str) -> Any:
        response = self._http.get(path)
        _raise_for_error(response)
        return response.json()

    def models(self) -> list[dict[str, Any]]:
        """Every model version the server holds, with its metadata (``GET /v1/models``)."""
        return list(self._get("/v1/models")["models"])

    def ready(self) -> bool:
        """Whether every model can serve (``/v2/health/ready``)."""
        return self._http.get("/v2/health/ready").status_code == 200

    def examples(self, model: str) -> list[dict[str, Any]]:
        """The example sequences shipped with ``model`` (``name``, ``label``, ``sequence``)."""
        return list(self._get(f"/v1/models/{model}/examples")["examples"])

    def _info(self, model: str, version: str | None) -> _ModelInfo:
        key = (model, version)
        if key not in self._models:
            self._models[key] = _ModelInfo.from_v2(self._get(_path(model, version, "", "/v2")))
        return self._models[key]

    def predict(
        self,
        model: str,
        sequences: Any,
        *,
        version: str | None = None,
        protocol: Protocol | None = None,
        sequence_id: int | str | None = None,
        sequence_start: bool = False,
        sequence_end: bool = False,
    ) -> Prediction:
        """Classify ``sequences``: one ``(L, F)`` array or list of steps, or several (a list of
        ``(L_i, F)``, or ``(B, T, F)`` of full length). ``sequence_id`` (with
        ``sequence_start``/``sequence_end``) sends one chunk of a stream; ``stream()`` is
        easier."""
        items = as_sequences(sequences)
        params = _stream_parameters(sequence_id, sequence_start, sequence_end, len(items))
        if (protocol or self.protocol) == "v1":
            response = self._http.post(
                _path(model, version, "predict", "/v1"), json=_v1_request(items, params)
            )
            _raise_for_error(response)
            return _v1_prediction(response.json())
        info = self._info(model, version)
        body, headers = _v2_request(info, items, params)
        response = self._http.post(
            _path(model, version, "infer", "/v2"), content=body, headers=headers
        )
        _raise_for_error(response)
        return _v2_prediction(info, response)

    def stream(self, model: str, sequence_id: int | str, version: str | None = None) -> Stream:
        """A stream of chunks of one sequence whose LSTM state the server holds between them
        (unidirectional models): ``s.send(chunk)`` … ``s.send(last, end=True)``."""
        return Stream(self, model, sequence_id, version)


class _StreamState:
    """What a stream's next chunk is sent with: the first starts it (``sequence_start``),
    ``end=True`` ends it. ``Stream`` and ``AsyncStream`` send it."""

    def __init__(self, model: str, sequence_id: int | str, version: str | None) -> None:
        self.model, self.sequence_id, self._version = model, sequence_id, version
        self._started = False

    def _chunk(self, chunk: Any, end: bool) -> dict[str, Any]:
        """``predict``'s arguments for ``chunk`` ``(L, F)``."""
        return {
            "sequences": [np.asarray(chunk, np.float32)],
            "version": self._version,
            "sequence_id": self.sequence_id,
            "sequence_start": not self._started,
            "sequence_end": end,
        }


class Stream(_StreamState):
    """One stream of ``Client``: the first ``send`` starts it, ``end=True`` ends it."""

    def __init__(
        self, client: Client, model: str, sequence_id: int | str, version: str | None
    ) -> None:
        super().__init__(model, sequence_id, version)
        self._client = client

    def send(self, chunk: Any, end: bool = False) -> Prediction:
        """Run ``chunk`` ``(L, F)`` from the state the previous chunks left; the answer is the
        whole stream's so far."""
        result = self._client.predict(self.model, **self._chunk(chunk, end))
        self._started = True  # only once the server took the first chunk
        return result


class AsyncClient:
    """The same as ``Client``, with ``await``: ``async with AsyncClient(url) as client``."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        protocol: Protocol = "v2",
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.protocol = protocol
        self._http = httpx.AsyncClient(
            base_url=url, headers=headers, timeout=timeout_s, transport=transport
        )
        self._models: dict[tuple[str, str | None], _ModelInfo] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str) -> Any:
        response = await self._http.get(path)
        _raise_for_error(response)
        return response.json()

    async def models(self) -> list[dict[str, Any]]:
        return list((await self._get("/v1/models"))["models"])

    async def ready(self) -> bool:
        return (await self._http.get("/v2/health/ready")).status_code == 200

    async def examples(self, model: str) -> list[dict[str, Any]]:
        return list((await self._get(f"/v1/models/{model}/examples"))["examples"])

    async def _info(self, model: str, version: str | None) -> _ModelInfo:
        key = (model, version)
        if key not in self._models:
            body = await self._get(_path(model, version, "", "/v2"))
            self._models[key] = _ModelInfo.from_v2(body)
        return self._models[key]

    async def predict(
        self,
        model: str,
        sequences: Any,
        *,
        version: str | None = None,
        protocol: Protocol | None = None,
        sequence_id: int | str | None = None,
        sequence_start: bool = False,
        sequence_end: bool = False,
    ) -> Prediction:
        """``Client.predict``, awaited."""
        items = as_sequences(sequences)
        params = _stream_parameters(sequence_id, sequence_start, sequence_end, len(items))
        if (protocol or self.protocol) == "v1":
            response = await self._http.post(
                _path(model, version, "predict", "/v1"), json=_v1_request(items, params)
            )
            _raise_for_error(response)
            return _v1_prediction(response.json())
        info = await self._info(model, version)
        body, headers = _v2_request(info, items, params)
        response = await self._http.post(
            _path(model, version, "infer", "/v2"), content=body, headers=headers
        )
        _raise_for_error(response)
        return _v2_prediction(info, response)

    def stream(self, model: str, sequence_id: int | str, version: str | None = None) -> AsyncStream:
        return AsyncStream(self, model, sequence_id, version)


class AsyncStream(_StreamState):
    """``Stream`` for ``AsyncClient``."""

    def __init__(
        self, client: AsyncClient, model: str, sequence_id: int | str, version: str | None
    ) -> None:
        super().__init__(model, sequence_id, version)
        self._client = client

    async def send(self, chunk: Any, end: bool = False) -> Prediction:
        result = await self._client.predict(self.model, **self._chunk(chunk, end))
        self._started = True
        return result
