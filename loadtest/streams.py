"""Streaming load: ``S`` concurrent streams, each ``N`` chunks of ``K`` steps, think time between.

Shapes: ``K`` steps in a chunk, ``F`` features, ``L`` layers, ``H_l`` layer ``l``'s hidden size.

Each of the ``streams`` slots sends one stream at a time: ``chunks_per_stream`` chunks of
``chunk_steps`` steps, ``think_ms`` after each answer, then starts the next stream, until
``duration_s`` has passed (a stream under way then is left unfinished and counted so: with
``server-state`` its state stays on the server until it expires, and shows in the next run's
``lstm_streams_live``, so the gauge is also read once before the first chunk). A
stream's frames depend only on ``(seed, slot, number)``, so every mode sends the same streams.
Three ways to carry the LSTM state from one chunk to the next (``MODES``):

* ``server-state``: the V2 sequence parameters (``sequence_id``, ``sequence_start``,
  ``sequence_end``); the engine holds the state;
* ``client-state``: ``initial_c_{l}``/``initial_h_{l}`` ``[1, 1, H_l]`` in (zeros on the first
  chunk), ``final_c_{l}``/``final_h_{l}`` out, fed back with the next chunk;
* ``resend-history``: chunk ``n`` carries every step so far (``[1, n K, F]``); no state.

Over V2 JSON or V2 binary. One process, one event loop, httpx: a stream's chunks are sequential
and mostly thinking, so a client process keeps up with far more streams than a closed loop.
The server's ``lstm_streams_live`` is read from ``/metrics`` about twice a second.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson

from loadtest.payloads import HEADER_LENGTH, DecodeError, decode_response, route
from loadtest.prom import parse_metrics
from loadtest.stats import percentiles

MODES = ("server-state", "client-state", "resend-history")
STREAM_PROTOCOLS = ("v2-json", "v2-binary")
METRICS_EVERY_S = 0.5


@dataclass(frozen=True)
class StreamPlan:
    """What to send: ``streams`` slots of ``chunks_per_stream`` chunks of ``chunk_steps`` steps
    of ``features`` float32 each, ``think_ms`` between a stream's chunks, for ``duration_s``."""

    model: str
    features: int
    streams: int
    chunk_steps: int
    chunks_per_stream: int
    think_ms: float = 0.0
    duration_s: float = 10.0
    mode: str = "server-state"
    protocol: str = "v2-json"
    seed: int = 0
    version: str | None = None
    state_sizes: tuple[int, ...] = ()
    """``H_l`` of each layer; needed by ``client-state`` (``model_state_sizes``)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.protocol not in STREAM_PROTOCOLS:
            raise ValueError(f"streams go over {STREAM_PROTOCOLS}, got {self.protocol!r}")
        for name in ("features", "streams", "chunk_steps", "chunks_per_stream"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.think_ms < 0 or self.duration_s <= 0:
            raise ValueError("think_ms must be >= 0 and duration_s > 0")
        if self.mode == "client-state" and not self.state_sizes:
            raise ValueError("client-state needs the model's state_sizes")


@dataclass
class StreamRun:
    """Every chunk of a run: latency (s), status (0: no response), new steps and request bytes;
    streams started, finished (every chunk answered 200), broken (a chunk failed) and left
    unfinished at the end; ``final_probs`` ``(C,)`` of each finished stream by (slot, number);
    ``streams_live`` the server's gauge as sampled during the run (``streams_live_at_start``
    before it: streams other clients, or an earlier run, left)."""

    plan: StreamPlan
    elapsed_s: float = 0.0
    latency: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    request_bytes: list[int] = field(default_factory=list)
    started: int = 0
    finished: int = 0
    broken: int = 0
    unfinished: int = 0
    final_probs: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    streams_live: list[float] = field(default_factory=list)
    streams_live_at_start: float | None = None
    error_bodies: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Chunks ok/failed, chunks/s and steps/s (answered chunks, new steps only), chunk
        latency percentiles (ms), mean request bytes per chunk, stream counts, live streams."""
        status = np.asarray(self.status, dtype=np.int32)
        ok = status == 200
        latency_ms = np.asarray(self.latency, dtype=np.float64)[ok] * 1000.0
        steps = int(np.asarray(self.steps, dtype=np.int64)[ok].sum()) if ok.any() else 0
        elapsed = max(self.elapsed_s, 1e-9)
        live = self.streams_live
        return {
            "mode": self.plan.mode,
            "chunks_ok": int(ok.sum()),
            "chunks_failed": int((~ok).sum()),
            "chunks_per_s": float(ok.sum()) / elapsed,
            "steps_per_s": steps / elapsed,
            "latency_ms": percentiles(latency_ms, (50.0, 99.0)),
            "request_bytes_per_chunk": float(np.mean(self.request_bytes))
            if self.request_bytes
            else None,
            "streams_started": self.started,
            "streams_finished": self.finished,
            "streams_broken": self.broken,
            "streams_unfinished": self.unfinished,
            "streams_live_at_start": self.streams_live_at_start,
            "streams_live_max": max(live) if live else None,
            "streams_live_mean": float(np.mean(live)) if live else None,
            "elapsed_s": self.elapsed_s,
        }


def model_state_sizes(metadata: dict[str, Any]) -> tuple[int, ...]:
    """``H_l`` of each layer from the V2 metadata's ``final_c_{l}`` outputs ``[dirs, -1, H_l]``
    (empty when the model has none)."""
    shapes = {t["name"]: t["shape"] for t in metadata.get("outputs", [])}
    sizes: list[int] = []
    while f"final_c_{len(sizes)}" in shapes:
        sizes.append(int(shapes[f"final_c_{len(sizes)}"][-1]))
    return tuple(sizes)


def stream_frames(plan: StreamPlan, slot: int, number: int) -> np.ndarray:
    """The ``(N K, F)`` float32 frames of stream ``number`` of ``slot``: the same in every mode."""
    rng = np.random.default_rng((plan.seed, slot, number))
    shape = (plan.chunks_per_stream * plan.chunk_steps, plan.features)
    return rng.standard_normal(shape).astype(np.float32)


def encode_chunk(
    protocol: str,
    tensors: list[tuple[str, np.ndarray, str]],
    outputs: list[str],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A V2 infer body of ``tensors`` (name, array, ``FP32``/``INT32``) asking for ``outputs``."""
    header: dict[str, Any] = {"inputs": []}
    blobs: list[bytes] = []
    for name, array, datatype in tensors:
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if protocol == "v2-binary":
            blob = array.astype("<f4" if datatype == "FP32" else "<i4").tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel()
        header["inputs"].append(entry)
    binary = protocol == "v2-binary"
    header["outputs"] = [
        {"name": n, **({"parameters": {"binary_data": True}} if binary else {})} for n in outputs
    ]
    if parameters:
        header["parameters"] = parameters
    encoded = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary:
        return encoded, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(encoded))}
    return encoded + b"".join(blobs), headers


class _Stream:
    """One stream's requests in one mode: ``request(n)`` is chunk ``n``'s body and headers;
    ``answered(n, outputs)`` takes what the answer says (the state, for ``client-state``)."""

    def __init__(self, plan: StreamPlan, slot: int, number: int, run_tag: str) -> None:
        self.plan = plan
        self.frames = stream_frames(plan, slot, number)
        self.sequence_id = f"{run_tag}-{slot}-{number}"
        self.state = {
            f"initial_{kind}_{layer}": np.zeros((1, 1, size), np.float32)
            for layer, size in enumerate(plan.state_sizes)
            for kind in ("c", "h")
        }

    def request(self, n: int) -> tuple[bytes, dict[str, str]]:
        k, last = self.plan.chunk_steps, self.plan.chunks_per_stream - 1
        start = 0 if self.plan.mode == "resend-history" else n * k
        chunk = self.frames[start : (n + 1) * k][None]
        tensors = [
            ("inputs", chunk, "FP32"),
            ("lengths", np.array([chunk.shape[1]], np.int32), "INT32"),
        ]
        outputs, parameters = ["probs"], None
        if self.plan.mode == "server-state":
            parameters = {
                "sequence_id": self.sequence_id,
                "sequence_start": n == 0,
                "sequence_end": n == last,
            }
        elif self.plan.mode == "client-state":
            tensors += [(name, value, "FP32") for name, value in self.state.items()]
            outputs += [name.replace("initial_", "final_") for name in self.state]
        return encode_chunk(self.plan.protocol, tensors, outputs, parameters)

    def answered(self, outputs: dict[str, np.ndarray]) -> None:
        if self.plan.mode == "client-state":
            for name in self.state:
                self.state[name] = outputs[name.replace("initial_", "final_")]


async def run_streams(
    url: str,
    plan: StreamPlan,
    headers: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> StreamRun:
    """Run ``plan`` against the server at ``url`` (see the module's docstring)."""
    run = StreamRun(plan)
    path = route(plan.protocol, plan.model, plan.version)
    run_tag = f"lt-{uuid.uuid4().hex[:12]}"
    limits = httpx.Limits(max_connections=plan.streams + 1, max_keepalive_connections=None)
    async with httpx.AsyncClient(
        base_url=url, headers=headers or {}, timeout=timeout_s, limits=limits
    ) as client:
        start = time.monotonic()
        end = start + plan.duration_s
        think_s = plan.think_ms / 1000.0

        async def slot(index: int) -> None:
            # Staggered starts, so that the slots do not send in lockstep.
            await asyncio.sleep(think_s * index / plan.streams)
            number = 0
            while time.monotonic() < end:
                await one_stream(index, number)
                number += 1

        async def one_stream(index: int, number: int) -> None:
            stream = _Stream(plan, index, number, run_tag)
            run.started += 1
            for n in range(plan.chunks_per_stream):
                if n and think_s:
                    await asyncio.sleep(think_s)
                if time.monotonic() >= end:
                    run.unfinished += 1
                    return
                body, request_headers = stream.request(n)
                sent = time.monotonic()
                try:
                    response = await client.post(path, content=body, headers=request_headers)
                    status, content = response.status_code, response.content
                except httpx.HTTPError as error:
                    status, content = 0, type(error).__name__.encode()
                run.latency.append(time.monotonic() - sent)
                run.status.append(status)
                run.steps.append(plan.chunk_steps)
                run.request_bytes.append(len(body))
                decoded = None
                if status == 200:
                    try:
                        header_length = response.headers.get(HEADER_LENGTH)
                        decoded = decode_response(plan.protocol, content, header_length)
                        stream.answered(decoded.outputs)
                    except (DecodeError, KeyError) as error:
                        run.status[-1], content = -2, repr(error).encode()
                        decoded = None
                if decoded is None:
                    if len(run.error_bodies) < 5:
                        run.error_bodies.append((status, content[:300].decode("utf-8", "replace")))
                    run.broken += 1  # its state is lost: the next stream starts afresh
                    return
                if n == plan.chunks_per_stream - 1:
                    run.finished += 1
                    run.final_probs[(index, number)] = decoded.probs[0]

        async def live_streams() -> float | None:
            """The server's ``lstm_streams_live`` (summed over series); None when unknown."""
            try:
                series = parse_metrics((await client.get("/metrics")).text)
                found = series.select("lstm_streams_live")
            except (httpx.HTTPError, ValueError):
                return None  # no metrics endpoint: no live-stream figure
            return sum(value for _, value in found) if found else None

        async def watch_metrics() -> None:
            while time.monotonic() < end:
                if (live := await live_streams()) is not None:
                    run.streams_live.append(live)
                await asyncio.sleep(METRICS_EVERY_S)

        run.streams_live_at_start = await live_streams()
        watcher = asyncio.create_task(watch_metrics())
        await asyncio.gather(*(slot(i) for i in range(plan.streams)))
        run.elapsed_s = min(time.monotonic(), end) - start
        await watcher
    return run


def fetch_state_sizes(
    url: str, model: str, version: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, ...]:
    """``model_state_sizes`` of the model's V2 metadata (``RuntimeError`` if unreadable)."""
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
    try:
        response = httpx.get(url.rstrip("/") + path, headers=headers or {}, timeout=10)
        response.raise_for_status()
        return model_state_sizes(response.json())
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        raise RuntimeError(f"GET {path}: {error}") from None


def format_streams(summary: dict[str, Any]) -> str:
    """A few lines of a run's summary."""

    def fmt(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lat = summary["latency_ms"]
    return "\n".join(
        [
            f"  chunks    {summary['chunks_ok']} ok, {summary['chunks_failed']} failed; "
            f"{fmt(summary['chunks_per_s'])} chunks/s, {fmt(summary['steps_per_s'])} steps/s",
            f"  latency   p50 {fmt(lat['p50'], 2)} ms, p99 {fmt(lat['p99'], 2)} ms per chunk; "
            f"{fmt(summary['request_bytes_per_chunk'], 0)} request bytes per chunk",
            f"  streams   {summary['streams_started']} started, {summary['streams_finished']} "
            f"finished, {summary['streams_broken']} broken, {summary['streams_unfinished']} "
            f"unfinished at the end",
            f"  server    lstm_streams_live max {fmt(summary['streams_live_max'], 0)}, mean "
            f"{fmt(summary['streams_live_mean'], 1)} "
            f"({fmt(summary['streams_live_at_start'], 0)} before the run)",
        ]
    )
