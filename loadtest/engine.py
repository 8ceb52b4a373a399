"""The load itself: client processes that send pre-encoded requests and time them.

One Python process saturates its core before a fast server does, so the load comes from
``processes`` worker processes (``spawn``ed, each with its own event loop — uvloop when
installed — and HTTP client — aiohttp when installed, else httpx). Each worker builds the same
pool of requests from the same seed once, keeps its connections between phases, and runs each
phase's share of the load:

* closed loop: ``concurrency`` users, each sending its next request when the last one returns;
* open loop: requests at Poisson arrival times of a total ``rate`` (each of ``P`` workers runs a
  Poisson process of ``rate / P``; their superposition is Poisson of ``rate``). Latency counts
  from the scheduled arrival, so a server (or client) that falls behind shows in the latency.

A phase starts with ``warmup_s`` whose requests are not recorded, then measures until its
duration or request count is reached. All times are ``time.monotonic()`` (one clock for every
process on the machine).

A phase also ends early when the target is gone: once one worker has seen
``ClientConfig.stop_after_refused`` connections refused in a row, it raises a flag that every
worker reads before sending, and the phase's result says why it stopped (``PhaseResult.stopped``).
Without it a closed loop against a dead server only counts refusals, thousands a second.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import multiprocessing as mp
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from loadtest.payloads import HEADER_LENGTH, EncodedRequest, PoolSpec, build_pool

ERROR_BODY_SAMPLES = 5


@dataclass(frozen=True)
class ClientConfig:
    """What every worker process needs: where to send, what, and how."""

    url: str
    pool: PoolSpec
    timeout_s: float = 60.0
    client: str = "auto"
    """``auto`` (aiohttp if installed, else httpx), ``aiohttp`` or ``httpx``."""
    use_uvloop: bool = True
    samples_per_phase: int = 20
    """Successful response bodies kept per phase (spread over workers) for verification."""
    extra_headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request (e.g. ``Authorization: Bearer <key>``)."""
    stop_after_refused: int = 50
    """End the phase once one worker has had this many connections refused in a row, with no
    other outcome in between (the target is gone); 0: never."""

    def __post_init__(self) -> None:
        if self.stop_after_refused < 0:
            raise ValueError(f"stop_after_refused must be >= 0, got {self.stop_after_refused}")


@dataclass(frozen=True)
class Phase:
    """One measured run: closed loop (``concurrency``) or open loop (``rate``)."""

    mode: str = "closed"
    concurrency: int = 1
    rate: float = 0.0
    """Open loop: requests per second, all workers together."""
    duration_s: float | None = 10.0
    requests: int | None = None
    """Measured requests (all workers together); the phase ends at whichever bound comes first."""
    warmup_s: float = 0.0
    max_in_flight: int = 1024
    """Open loop: arrivals beyond this many outstanding requests are dropped (client limit)."""
    is_share: bool = False
    """One worker process's part of a phase (``share``), which may be idle."""

    def __post_init__(self) -> None:
        if self.mode not in ("closed", "open"):
            raise ValueError(f"mode must be 'closed' or 'open', got {self.mode!r}")
        # A worker's share may be 0 clients (fewer clients than processes); a whole phase not.
        if self.mode == "closed" and self.concurrency < (0 if self.is_share else 1):
            raise ValueError("a closed loop needs concurrency >= 1")
        if self.mode == "open" and self.rate <= 0:
            raise ValueError("an open loop needs a rate > 0")
        if self.duration_s is None and self.requests is None:
            raise ValueError("a phase needs a duration or a request count")

    def share(self, index: int, processes: int) -> Phase:
        """This worker's part of the phase. A closed loop's request count goes to the workers
        that have clients (the first ``min(processes, concurrency)``), so none is left unsent."""

        def split(total: int, among: int) -> int:
            if index >= among:
                return 0
            return total // among + (index < total % among)

        senders = min(processes, self.concurrency) if self.mode == "closed" else processes
        return replace(
            self,
            is_share=True,
            concurrency=split(self.concurrency, processes) if self.mode == "closed" else 0,
            rate=self.rate / processes,
            requests=None if self.requests is None else split(self.requests, senders),
            max_in_flight=max(1, self.max_in_flight // processes),
        )


@dataclass
class PhaseResult:
    """Every measured request of a phase. Times in seconds; ``sent`` from the measure start."""

    sent: np.ndarray
    latency: np.ndarray
    status: np.ndarray
    """HTTP status; 0 when no response came (see ``transport_errors``); -1 dropped (open loop)."""
    sequences: np.ndarray
    pool_index: np.ndarray
    lag: np.ndarray
    """Open loop: how late each request left after its scheduled arrival."""
    measure_start: float
    transport_errors: dict[str, int] = field(default_factory=dict)
    error_bodies: list[tuple[int, str]] = field(default_factory=list)
    samples: list[tuple[int, int, bytes, str | None]] = field(default_factory=list)
    """``(pool index, status, body, Inference-Header-Content-Length)`` of kept responses."""
    client_cpu_s: float = 0.0
    warmup_requests: int = 0
    stopped: str | None = None
    """Why the phase ended before its bounds (the target refused connections); None if it did
    not."""

    @property
    def elapsed_s(self) -> float:
        """From the measure start to the last response."""
        if not len(self.sent):
            return 0.0
        return float(np.max(self.sent + self.latency))

    @staticmethod
    def merge(parts: list[PhaseResult], measure_start: float) -> PhaseResult:
        def cat(name: str, dtype: Any) -> np.ndarray:
            arrays = [getattr(p, name) for p in parts]
            return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)

        errors: dict[str, int] = {}
        for part in parts:
            for key, count in part.transport_errors.items():
                errors[key] = errors.get(key, 0) + count
        return PhaseResult(
            sent=cat("sent", np.float64),
            latency=cat("latency", np.float64),
            status=cat("status", np.int32),
            sequences=cat("sequences", np.int32),
            pool_index=cat("pool_index", np.int32),
            lag=cat("lag", np.float64),
            measure_start=measure_start,
            transport_errors=errors,
            error_bodies=[e for p in parts for e in p.error_bodies][:ERROR_BODY_SAMPLES],
            samples=[s for p in parts for s in p.samples],
            client_cpu_s=sum(p.client_cpu_s for p in parts),
            warmup_requests=sum(p.warmup_requests for p in parts),
            stopped=next((p.stopped for p in parts if p.stopped), None),
        )


# -- HTTP clients ------------------------------------------------------------------------------
Answer = tuple[int, bytes, str | None]


class _AiohttpClient:
    def __init__(self, url: str, timeout_s: float) -> None:
        import aiohttp

        self._url = url.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            auto_decompress=False,
        )

    async def post(self, request: EncodedRequest) -> Answer:
        async with self._session.post(
            self._url + request.path, data=request.body, headers=request.headers
        ) as response:
            body = await response.read()
            return response.status, body, response.headers.get(HEADER_LENGTH)

    async def close(self) -> None:
        await self._session.close()


class _HttpxClient:
    def __init__(self, url: str, timeout_s: float) -> None:
        import httpx

        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self._client = httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits)

    async def post(self, request: EncodedRequest) -> Answer:
        response = await self._client.post(
            request.path, content=request.body, headers=request.headers
        )
        return response.status_code, response.content, response.headers.get(HEADER_LENGTH)

    async def close(self) -> None:
        await self._client.aclose()


def client_kind(requested: str) -> str:
    """The HTTP client a worker will use for ``requested`` (``auto`` prefers aiohttp)."""
    if requested == "auto":
        try:
            import aiohttp  # noqa: F401

            return "aiohttp"
        except ImportError:
            return "httpx"
    if requested not in ("aiohttp", "httpx"):
        raise ValueError(f"unknown client {requested!r}; expected auto, aiohttp or httpx")
    return requested


def _make_client(config: ClientConfig) -> _AiohttpClient | _HttpxClient:
    if client_kind(config.client) == "aiohttp":
        return _AiohttpClient(config.url, config.timeout_s)
    return _HttpxClient(config.url, config.timeout_s)


def new_event_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


# -- one worker's phase -----------------------------------------------------------------------
class _Recorder:
    """Collects one worker's measured requests."""

    def __init__(self, keep_samples: int, counters: Any, slot: int) -> None:
        self.rows: list[tuple[float, float, int, int, int, float]] = []
        self.errors: dict[str, int] = {}
        self.error_bodies: list[tuple[int, str]] = []
        self.samples: list[tuple[int, int, bytes, str | None]] = []
        self.keep_samples = keep_samples
        self.warmup = 0
        self._counters = counters
        self._slot = slot

    def record(
        self, sent: float, latency: float, answer: Answer, pool_index: int, size: int, lag: float
    ) -> None:
        status, body, header_length = answer
        self.rows.append((sent, latency, status, size, pool_index, lag))
        if 200 <= status < 300:
            self._counters[2 * self._slot] += 1
            if len(self.samples) < self.keep_samples:
                self.samples.append((pool_index, status, body, header_length))
        else:
            self._counters[2 * self._slot + 1] += 1
            if status == 0:  # no response: counted by the error's type
                name = body.decode()
                self.errors[name] = self.errors.get(name, 0) + 1
            elif status > 0 and len(self.error_bodies) < ERROR_BODY_SAMPLES:
                self.error_bodies.append((status, body[:300].decode("utf-8", "replace")))

    def result(self, measure_start: float, cpu_s: float) -> PhaseResult:
        columns = list(zip(*self.rows, strict=True)) if self.rows else [()] * 6
        sent, latency, status, size, index, lag = (np.array(c) for c in columns)
        return PhaseResult(
            sent=sent.astype(np.float64) - measure_start,
            latency=latency.astype(np.float64),
            status=status.astype(np.int32),
            sequences=size.astype(np.int32),
            pool_index=index.astype(np.int32),
            lag=lag.astype(np.float64),
            measure_start=measure_start,
            transport_errors=self.errors,
            error_bodies=self.error_bodies,
            samples=self.samples,
            client_cpu_s=cpu_s,
            warmup_requests=self.warmup,
        )


_UNREACHABLE = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


def connection_refused(error: BaseException) -> bool:
    """Did ``error`` come from the target refusing (or being unreachable for) a connection?
    The clients wrap the socket's error (aiohttp: ``ClientConnectorError``; httpx:
    ``ConnectError`` from httpcore's), so this walks the chain of causes."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or (
            isinstance(current, OSError) and current.errno in _UNREACHABLE
        ):
            return True
        os_error = getattr(current, "os_error", None)  # aiohttp keeps it here as well
        if isinstance(os_error, OSError) and os_error is not current:
            current = os_error
            continue
        current = current.__cause__ or current.__context__
    return False


class RefusalWatch:
    """Counts one worker's connections refused in a row and, at ``limit`` (0: never), raises
    ``flag`` (a shared ``ctypes`` value that every worker of the phase reads)."""

    def __init__(self, limit: int, flag: Any) -> None:
        self.limit = limit
        self.flag = flag
        self.streak = 0
        self.reason: str | None = None
        """Set in the worker whose refusals raised the flag."""

    def observe(self, refused: bool) -> None:
        """One request's outcome: refused, or anything else (an answer, a timeout, ...)."""
        if not refused:
            self.streak = 0
            return
        self.streak += 1
        if self.limit and self.streak >= self.limit and self.reason is None:
            self.reason = (
                f"the target refused {self.streak} connections in a row (is the server gone?)"
            )
            self.flag.value = 1

    @property
    def stopped(self) -> bool:
        """Has any worker of the phase raised the flag?"""
        return bool(self.flag.value)


async def _send(
    client: _AiohttpClient | _HttpxClient, request: EncodedRequest
) -> tuple[Answer, bool]:
    """The answer and whether the connection was refused."""
    try:
        return await client.post(request), False
    except Exception as error:  # no response: status 0, the error's type as the body
        return (0, type(error).__name__.encode(), None), connection_refused(error)


async def _sleep_until(moment: float) -> None:
    """Sleep until ``time.monotonic() >= moment`` (loop timers may fire a little early:
    uvloop's clock has millisecond steps)."""
    while (delay := moment - time.monotonic()) > 0:
        await asyncio.sleep(delay)


async def run_share(
    client: _AiohttpClient | _HttpxClient,
    pool: list[EncodedRequest],
    phase: Phase,
    start_at: float,
    seed: int,
    recorder: _Recorder,
    watch: RefusalWatch,
) -> float:
    """Run one worker's share of a phase; returns the measure start. Ends early once ``watch``
    says the target is gone."""
    rng = np.random.default_rng(seed)
    order = itertools.cycle(rng.permutation(len(pool)).tolist())
    measure_start = start_at + phase.warmup_s
    end = None if phase.duration_s is None else measure_start + phase.duration_s
    remaining = [phase.requests]  # measured requests still to send (None: no bound)
    await _sleep_until(start_at)

    def take(now: float) -> bool:
        """May a request scheduled at ``now`` leave? Counts it against the request bound when
        it is measured (scheduled at or after the measure start)."""
        if watch.stopped or (end is not None and now >= end):
            return False
        if now >= measure_start and remaining[0] is not None:
            if remaining[0] <= 0:
                return False
            remaining[0] -= 1
        return True

    async def one(k: int, scheduled: float) -> None:
        request = pool[k]
        sent = time.monotonic()
        answer, refused = await _send(client, request)
        done = time.monotonic()
        watch.observe(refused)
        if scheduled < measure_start:
            recorder.warmup += 1
            return
        lag = sent - scheduled if phase.mode == "open" else 0.0
        recorder.record(scheduled, done - scheduled, answer, k, request.sequences, lag)

    if phase.mode == "closed":

        async def user() -> None:
            while take(now := time.monotonic()):
                await one(next(order), now)

        await asyncio.gather(*(user() for _ in range(phase.concurrency)))
        return measure_start

    tasks: set[asyncio.Task[None]] = set()
    arrival = start_at
    while True:
        arrival += float(rng.exponential(1.0 / phase.rate))
        if end is not None and arrival >= end:
            break
        await _sleep_until(arrival)
        if not take(arrival):
            break
        k = next(order)
        if len(tasks) >= phase.max_in_flight:  # the client's own limit: counted, not sent
            if arrival >= measure_start:
                recorder.record(arrival, 0.0, (-1, b"", None), k, pool[k].sequences, 0.0)
            continue
        task = asyncio.get_running_loop().create_task(one(k, arrival))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return measure_start


def _worker_main(
    conn: Connection, index: int, processes: int, config: ClientConfig, counters: Any, stop: Any
) -> None:
    loop = new_event_loop(config.use_uvloop)
    asyncio.set_event_loop(loop)
    try:
        pool = build_pool(config.pool)
        if config.extra_headers:
            pool = [replace(r, headers={**r.headers, **config.extra_headers}) for r in pool]
        client = loop.run_until_complete(_async_make_client(config))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", client_kind(config.client)))
    keep = -(-config.samples_per_phase // processes)  # ceil
    phase_number = 0
    try:
        while True:
            message = conn.recv()
            if message is None:
                break
            phase, start_at = message
            phase_number += 1
            recorder = _Recorder(keep, counters, index)
            watch = RefusalWatch(config.stop_after_refused, stop)
            cpu = time.process_time()
            try:
                seed = config.pool.seed * 1_000_003 + phase_number * 1009 + index
                measure_start = loop.run_until_complete(
                    run_share(client, pool, phase, start_at, seed, recorder, watch)
                )
                result = recorder.result(measure_start, time.process_time() - cpu)
                result.stopped = watch.reason
                conn.send(("ok", result))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        loop.run_until_complete(client.close())
        loop.close()


async def _async_make_client(config: ClientConfig) -> _AiohttpClient | _HttpxClient:
    return _make_client(config)  # built inside the loop it will run on


# -- the coordinator ---------------------------------------------------------------------------
Progress = Callable[[float, int, int], None]
"""Called about twice a second with (seconds since the measure start, ok, failed)."""


class LoadGenerator:
    """Worker processes that run phases on command; use as a context manager.

    ``run(phase)`` blocks until the phase ends; ``on_measure_start`` is called (in this process)
    when the warm-up is over, e.g. to read the server's metrics before the measured part (with
    no warm-up, before any request is sent; after a warm-up, requests of the warm-up still in
    flight may finish just after it).
    """

    def __init__(self, config: ClientConfig, processes: int = 1, ready_timeout_s: float = 120):
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.config = config
        self.processes = processes
        context = mp.get_context("spawn")
        self._counters = context.Array("q", 2 * processes, lock=False)
        self._stop = context.RawValue("b", 0)  # raised by a worker whose target refuses
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for index in range(processes):
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker_main,
                args=(child, index, processes, config, self._counters, self._stop),
                name=f"loadtest-worker-{index}",
                daemon=True,
            )
            process.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(process)
        self.client = ""
        try:
            for conn in self._conns:
                self.client = self._expect(conn, "ready", ready_timeout_s)
        except BaseException:
            self.close()
            raise

    def _expect(self, conn: Connection, kind: str, timeout_s: float) -> Any:
        if not conn.poll(timeout_s):
            raise RuntimeError(f"a load worker did not answer within {timeout_s:g} s")
        got, payload = conn.recv()
        if got != kind:
            raise RuntimeError(f"a load worker failed:\n{payload}")
        return payload

    def run(
        self,
        phase: Phase,
        progress: Progress | None = None,
        on_measure_start: Callable[[], None] | None = None,
    ) -> PhaseResult:
        for k in range(len(self._counters)):
            self._counters[k] = 0
        self._stop.value = 0
        measuring = on_measure_start is None
        if phase.warmup_s <= 0 and on_measure_start is not None:
            on_measure_start()  # before the first request leaves: nothing can slip in first
            measuring = True
        start_at = time.monotonic() + 0.05
        for index, conn in enumerate(self._conns):
            conn.send((phase.share(index, self.processes), start_at))
        measure_start = start_at + phase.warmup_s
        parts: list[PhaseResult | None] = [None] * self.processes
        errors: list[str] = []
        while any(p is None for p in parts) and not errors:
            for index, conn in enumerate(self._conns):
                if parts[index] is None and conn.poll(0):
                    kind, payload = conn.recv()
                    if kind == "ok":
                        parts[index] = payload
                    else:
                        errors.append(payload)
            for index, process in enumerate(self._procs):
                if parts[index] is None and not process.is_alive():
                    errors.append(f"load worker {index} died (exit code {process.exitcode})")
            now = time.monotonic()
            if not measuring and now >= measure_start:
                measuring = True
                assert on_measure_start is not None
                on_measure_start()
            if progress is not None and now >= measure_start:
                ok = sum(self._counters[2 * k] for k in range(self.processes))
                failed = sum(self._counters[2 * k + 1] for k in range(self.processes))
                progress(now - measure_start, ok, failed)
            pause = 0.5 if measuring else max(0.0, min(0.5, measure_start - now))
            wait(self._conns, timeout=pause)
        if errors:
            self.close()
            raise RuntimeError("load phase failed:\n" + "\n".join(errors))
        if not measuring and on_measure_start is not None:
            on_measure_start()  # a phase shorter than its warm-up (nothing was measured)
        return PhaseResult.merge([p for p in parts if p is not None], measure_start)

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for process in self._procs:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
