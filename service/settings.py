"""Service settings: every field is a CLI flag (``--max-batch-size``) and an environment variable
(``LSTM_SERVING_MAX_BATCH_SIZE``). Units are in the names."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be told. Defaults suit a laptop; the Docker image sets host."""

    model_config = SettingsConfigDict(
        env_prefix="LSTM_SERVING_",
        cli_kebab_case=True,
        cli_prog_name="python -m service",
        cli_implicit_flags=True,
        use_attribute_docstrings=True,
        extra="ignore",
    )

    # -- where and what -------------------------------------------------------------------------
    model_repository: Path = Path("model_repository")
    """Model repository: <repo>/<name>/<version>/model.onnx (Triton layout)."""
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0 inside a container)."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port."""

    workers: int = Field(1, ge=1, le=64)
    """HTTP frontend processes: they parse, validate and encode, and hand the sequences to the
    engine, so every batch is formed from all of their traffic. Raise it when one process's
    CPU is the limit (with a GPU it is); metrics are summed across processes."""
    engine: Literal["auto", "in-process", "separate"] = "auto"
    """Where the models run. separate: one engine process per device (sessions and batchers)
    fed by the frontends over the hand-off; in-process: in each HTTP process (every worker
    then forms its own batches); auto: in-process for one worker on one device (measured
    fastest there), else separate."""
    devices: list[int] = []
    """GPUs to run engines on, one engine each (--devices 0,1); frontends send each request to
    the least loaded. Empty = one engine on cuda_device_id (or the CPU)."""
    engine_addresses: list[str] = []
    """ZeroMQ addresses of the engines to hand requests to, instead of loading the models here;
    the supervisor sets it for the frontends it starts. The engines must run on the same
    machine: deadlines cross as monotonic-clock times."""
    engine_heartbeat_ms: float = Field(100.0, gt=0)
    """How often a frontend pings each engine for its liveness and queue depths (which the
    frontend's 429 admission before reading a body uses)."""
    engine_timeout_s: float = Field(2.0, gt=0)
    """An engine that has not answered a ping for this long is down for the frontends: they
    fail what it held with 503 and answer 503 until it answers again. A dead engine process
    is seen at once (its connection drops)."""
    engine_start_timeout_s: float = Field(120.0, gt=0)
    """How long a starting frontend waits for its engines to describe their models."""

    # -- runtime --------------------------------------------------------------------------------
    provider: Literal["auto", "cuda", "cpu"] = "auto"
    """Execution provider: auto = CUDA if it really loads on this machine, else CPU."""
    cuda_device_id: int = Field(0, ge=0)
    """The GPU to run on (one replica per GPU on a multi-GPU machine)."""
    ort_intra_op_threads: int = Field(0, ge=0)
    """Threads per ONNX Runtime run on the CPU provider; 0 = cores / concurrent batches."""
    ort_cpu_mem_arena: bool = True
    """ONNX Runtime's CPU memory arena: it keeps what the largest batches needed (rounded up to
    a power of two) for reuse, so memory stays at its high-water mark after a burst. Off,
    each run allocates and frees: measured on 2 cores, ~20% less throughput and about the
    same peak, but memory falls back after the burst (bench/results/cpu-arena-2026-12-01.md).
    Turn it off when idle memory matters more than throughput (many models in one process)."""
    concurrent_batches: int = Field(0, ge=0)
    """Batches run at once per model; 0 = auto (CPU: one per core, at most 4; CUDA: 2, so the
    host prepares the next batch while the GPU runs one)."""
    warmup: bool = True
    """Run each model over a grid of batch sizes and lengths before reporting ready."""
    warmup_batch_sizes: list[int] = [1, 8, 64]
    """Batch sizes of the warm-up grid."""
    warmup_lengths: list[int] = [16, 128]
    """Sequence lengths of the warm-up grid."""

    # -- batching -------------------------------------------------------------------------------
    max_batch_size: int = Field(64, ge=1)
    """Most sequences in one ORT run. Larger batches raise GPU throughput; on the CPU the gain
    flattens past ~16-64."""
    max_batch_tokens: int = Field(16384, ge=1)
    """Padded-step budget of one batch: batch size x longest length in it."""
    max_batch_wait_ms: float = Field(2.0, ge=0)
    """How long the oldest waiting sequence may wait for a fuller batch while a run is in
    flight. There is no wait when the runtime is idle."""
    padding_efficiency_target: float | None = Field(None, ge=0, le=1)
    """Least real/padded steps a batch may have when it could instead be split by length;
    None = auto (CPU 0.85: padding costs compute; CUDA 0.5: one long batch costs little more
    than a short one)."""

    # -- streams --------------------------------------------------------------------------------
    max_streams: int = Field(10_000, ge=1)
    """Live streams (V2 sequence_id) an engine holds the LSTM state of; a new stream past it
    gets 429 with Retry-After. Each holds every layer's (c, h): a few KB."""
    stream_idle_timeout_s: float = Field(60.0, gt=0)
    """A stream without a chunk for this long is freed; its next chunk without sequence_start
    then gets 404 stream_not_found."""

    stream_state_dir: Path | None = None
    """Where an engine writes its live streams' states on a planned stop (SIGTERM), and takes
    them up again at start, with their idle clocks: a rolling restart keeps the streams.
    Unset: a restart drops them, and their next chunk gets 404 stream_not_found."""

    # -- limits ---------------------------------------------------------------------------------
    max_queue_sequences: int = Field(4096, ge=1)
    """Sequences waiting per model before new requests get 429."""
    max_sequences_per_request: int = Field(256, ge=1)
    """Most sequences in one request."""
    max_sequence_length: int = Field(1000, ge=1)
    """Longest accepted sequence, in steps."""
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Largest accepted request body."""
    max_buffered_body_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    """Most bytes of request bodies one process holds at once, while they arrive and until they
    are decoded; a body that does not fit gets 429 with Retry-After before more of it is read.
    max_connections alone bounds only how many bodies arrive at once (8 uploads of 30 MiB:
    +241 MiB RSS); this bounds their bytes. At least max_body_bytes, or the largest body
    could never be read."""
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest response a request may ask for, estimated before any compute from its sequences,
    their lengths and the outputs asked for (17 bytes per JSON number, 4 per binary FP32):
    over it the request gets 422 response_too_large. Per-step outputs are what grow: 256
    sequences x 1000 steps x 256 values are 1.1 GB as JSON, 262 MB as binary."""
    codec_processes: int = Field(1, ge=0)
    """Worker processes that decode and encode bodies of at least codec_offload_min_bytes, so
    the event loop keeps answering other requests meanwhile (orjson and numpy hold the GIL while
    they parse, so a thread would not free it). 0 = everything on the event loop."""
    codec_offload_min_bytes: int = Field(1024 * 1024, ge=0)
    """Bodies (and estimated responses) smaller than this are decoded and encoded on the event
    loop: up to ~20 ms of loop time each, where the hop to a codec process costs ~0.4 ms plus
    ~2.5 ms per MB it copies (measured on 2 cores)."""
    request_timeout_s: float = Field(30.0, gt=0)
    """Deadline of a request from arrival; past it the request gets 504."""
    max_batch_run_s: float = Field(60.0, gt=0)
    """A batch still running after this long means the runtime hung (a thread cannot be
    stopped): the model is marked down (503; readiness and liveness fail) so that the process
    is restarted."""
    drain_timeout_s: float = Field(30.0, ge=0)
    """On SIGTERM, how long accepted requests may take to finish before the process exits."""
    keep_alive_timeout_s: int = Field(75, ge=1)
    """How long an idle keep-alive connection stays open. Longer than clients' and proxies' own
    idle timeouts (aiohttp 15 s, nginx 60 s), so the server never closes a connection that a
    client is just reusing (measured: 68 reset requests after an overload with uvicorn's 5 s)."""
    retry_after_s: int = Field(1, ge=0)
    """Retry-After header value on 429 and 503."""
    max_connections: int = Field(8192, ge=0)
    """Most open connections (and requests in progress) per worker; past it uvicorn answers 503
    at once and closes the new connection (the bytes their bodies hold are bounded by
    max_buffered_body_bytes). The default stays above the 4,096 connections of the overload
    soak, whose clients (and health probes) must get 429, not 503. 0 = no cap."""

    # -- access ---------------------------------------------------------------------------------
    api_key: SecretStr | None = None
    """Bearer token required on inference and metadata endpoints (Authorization: Bearer KEY);
    unset = open, for local use. Never logged."""
    api_key_protects_health: bool = False
    """Also require the key on /v2/health/live and /v2/health/ready."""
    api_key_protects_metrics: bool = False
    """Also require the key on /metrics."""
    api_key_protects_docs: bool = False
    """Also require the key on /docs, /redoc and /openapi.json. Off by default: they describe the
    API's shape, not its models, and a browser opening /docs cannot send the key."""

    # -- logs -----------------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level."""
    log_format: Literal["auto", "json", "text"] = "auto"
    """auto: text when stderr is a terminal, else json; json: one structured object per line
    (for a log collector); text: for people."""

    @model_validator(mode="after")
    def _check_cross_fields(self) -> Settings:
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            self.api_key = None  # an empty key (a blank line in .env) must not mean "any key"
        if self.max_batch_tokens < self.max_sequence_length:
            raise ValueError(
                f"max_batch_tokens ({self.max_batch_tokens}) must be at least "
                f"max_sequence_length ({self.max_sequence_length}), or the longest accepted "
                "sequence could never run"
            )
        if self.max_buffered_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_buffered_body_bytes ({self.max_buffered_body_bytes}) must be at least "
                f"max_body_bytes ({self.max_body_bytes}), or the largest body could never be read"
            )
        if self.engine_heartbeat_ms / 1000.0 > self.engine_timeout_s / 3:
            raise ValueError(
                f"engine_heartbeat_ms ({self.engine_heartbeat_ms:g}) must be at most a third of "
                f"engine_timeout_s ({self.engine_timeout_s:g} s), or a live engine would look "
                "down between two pings"
            )
        if self.engine == "in-process" and len(self.devices) > 1:
            raise ValueError("several devices need engine=separate (one engine per device)")
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"devices {self.devices} name a GPU twice")
        if any(n < 1 for n in self.warmup_batch_sizes + self.warmup_lengths):
            raise ValueError("warm-up batch sizes and lengths must be positive")
        return self

    @property
    def separate_engine(self) -> bool:
        """Whether the models run in engine processes of their own (see ``engine``)."""
        if self.engine == "auto":
            return self.workers > 1 or len(self.devices) > 1
        return self.engine == "separate"

    def resolved_concurrent_batches(self, on_gpu: bool) -> int:
        if self.concurrent_batches:
            return self.concurrent_batches
        return 2 if on_gpu else max(1, min(4, available_cpus()))

    def resolved_intra_op_threads(self, on_gpu: bool) -> int:
        if self.ort_intra_op_threads:
            return self.ort_intra_op_threads
        cores = available_cpus()
        return max(1, cores // self.resolved_concurrent_batches(on_gpu))

    def resolved_padding_efficiency(self, on_gpu: bool) -> float:
        if self.padding_efficiency_target is not None:
            return self.padding_efficiency_target
        return 0.5 if on_gpu else 0.85


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (a container's
    --cpus), not the host's core count."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The environment variables that recreate ``settings`` (for worker processes)."""
    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list):
            value = json.dumps(value)
        env[f"LSTM_SERVING_{name.upper()}"] = str(value)
    return env


def settings_from_cli(argv: Sequence[str] | None = None) -> Settings:
    """Settings from flags, then environment variables, then defaults (``--help`` lists all)."""
    return Settings(_cli_parse_args=list(argv) if argv is not None else True)  # type: ignore[call-arg]
