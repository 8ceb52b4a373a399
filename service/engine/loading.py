"""Loading the model repository into the process that runs it: per version an ORT runtime,
warmed up, and its ``DynamicBatcher``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from contract.spec import ModelSpec
from service.engine.batching.batcher import BatchRunner, DynamicBatcher
from service.engine.batching.formation import BatchPolicy
from service.engine.runtime.repository import discover
from service.engine.runtime.session import ModelRuntime
from service.engine.streaming import StreamingBatcher
from service.engine.streams import StreamStore
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry, ServedModel
from service.settings import Settings

log = logging.getLogger(__name__)


class LoadedRuntime(BatchRunner, Protocol):
    """A runtime the registry can serve: ``ModelRuntime``, or a fake in tests."""

    spec: ModelSpec
    provider: str
    device: str  # cuda:N or cpu: the metrics' device label

    @property
    def on_gpu(self) -> bool: ...

    def warmup(self, batch_sizes: list[int], lengths: list[int]) -> float: ...


RuntimeFactory = Callable[[Path, str, str, Settings], LoadedRuntime]


def onnx_runtime_factory(path: Path, name: str, version: str, settings: Settings) -> LoadedRuntime:
    # Thread count matters only for the CPU provider (or a CPU fallback).
    threads = settings.resolved_intra_op_threads(on_gpu=False)
    return ModelRuntime(
        path,
        name,
        version,
        settings.provider,
        threads,
        settings.cuda_device_id,
        cpu_mem_arena=settings.ort_cpu_mem_arena,
    )


def batch_policy(settings: Settings, on_gpu: bool, spec: ModelSpec | None = None) -> BatchPolicy:
    """The bounds each batcher forms batches within, on a GPU or on the CPU (the benchmarks
    cut their in-process batches with the same one), and those of the model ``spec``: its own
    ``max_batch_size`` (``config.pbtxt``), and exact-length batches when it takes no lengths."""
    max_batch = settings.max_batch_size
    if spec is not None and spec.max_batch_size is not None:
        max_batch = min(max_batch, spec.max_batch_size)
    return BatchPolicy(
        max_batch_size=max_batch,
        max_batch_tokens=settings.max_batch_tokens,
        padding_efficiency_target=settings.resolved_padding_efficiency(on_gpu),
        exact_length=spec is not None and spec.padding_sensitive,
    )


def stream_file(settings: Settings) -> Path | None:
    """Where this engine keeps its live streams across a restart (``stream_state_dir``), one
    file per device so that the engines of one machine do not share one."""
    if settings.stream_state_dir is None:
        return None
    return settings.stream_state_dir / f"streams-device-{settings.cuda_device_id}.npz"


def _load_one(
    served: ServedModel, path: Path, settings: Settings, factory: RuntimeFactory
) -> LoadedRuntime:
    started = time.perf_counter()
    runtime = factory(path, served.name, served.version, settings)
    warm = (
        runtime.warmup(settings.warmup_batch_sizes, settings.warmup_lengths)
        if settings.warmup
        else 0.0
    )
    served.runtime = runtime
    served.load_seconds = time.perf_counter() - started
    log.info(
        "loaded model",
        extra={
            "model": served.name,
            "version": served.version,
            "provider": runtime.provider,
            "device": runtime.device,
            "batching": runtime.spec.batching,
            "warmup_s": round(warm, 3),
            "load_s": round(served.load_seconds, 3),
        },
    )
    return runtime


async def load_registry(
    settings: Settings, metrics: ServiceMetrics, factory: RuntimeFactory = onnx_runtime_factory
) -> ModelRegistry:
    """Load and warm up every model version, then start one batcher each."""
    streams = StreamStore(
        settings.max_streams,
        settings.stream_idle_timeout_s,
        retry_after_s=settings.retry_after_s,
        observer=metrics,
    )
    registry = ModelRegistry(streams=streams, stream_file=stream_file(settings))
    if registry.stream_file is not None and registry.stream_file.exists():
        restored = streams.load(registry.stream_file)
        log.info("took up %d live streams", restored, extra={"file": str(registry.stream_file)})
    registry.background.append(asyncio.ensure_future(streams.expire_forever()))
    # With a batcher in every worker a stream's chunks would land on workers that do not hold
    # its state: streams need the one engine that --engine separate gives.
    refusal = (
        "streams need one engine for every worker: run the service with --engine separate"
        if settings.workers > 1 and not settings.separate_engine
        else None
    )
    for location in discover(settings.model_repository):
        served = ServedModel(location.name, location.version)
        registry.add(served)
        try:
            runtime = await asyncio.to_thread(_load_one, served, location.path, settings, factory)
        except Exception as error:  # one bad model must not take the others down
            served.error = f"{type(error).__name__}: {error}"
            log.error(
                "model failed to load",
                extra={"model": served.name, "version": served.version, "error": served.error},
            )
            metrics.model_ready.labels(served.name, served.version).set(0)
            continue
        on_gpu = runtime.on_gpu
        slots = settings.resolved_concurrent_batches(on_gpu)
        served.executor = ThreadPoolExecutor(slots, thread_name_prefix=f"ort-{served.name}")
        batcher = DynamicBatcher(
            runtime,
            served.executor,
            batch_policy(settings, on_gpu, runtime.spec),
            max_batch_wait_s=settings.max_batch_wait_ms / 1000.0,
            max_queue=settings.max_queue_sequences,
            concurrent_batches=slots,
            max_batch_run_s=settings.max_batch_run_s,
            retry_after_s=settings.retry_after_s,
            observer=metrics.observer(served.name, served.version, runtime.device),
            name=f"{served.name}/{served.version}",
        )
        batcher.start()
        served.batcher = StreamingBatcher(batcher, runtime.spec, streams, refusal)
        where = (runtime.provider, runtime.device)
        metrics.model_info.labels(served.name, served.version, *where).set(1)
        metrics.model_ready.labels(served.name, served.version).set(1)
    return registry
