"""The served models: for each version, what describes it (spec, provider) and what schedules
its sequences (a ``Scheduler``).

The same registry serves both process models: in the engine (or a single process running both
halves) each version holds its ORT runtime and its ``DynamicBatcher``
(``service.engine.loading``); in an HTTP frontend each holds the spec an engine described and a
``RemoteBatcher`` that hands sequences to the engines (``service.handoff.remote``). A model that
fails to load is kept with its error, so readiness can say which model is down while the others
serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from contract.spec import ModelSpec
from service.errors import ModelNotFound, Unavailable
from service.streaming import StreamChunk

if TYPE_CHECKING:
    from service.engine.streams import StreamStore

log = logging.getLogger(__name__)
SequenceResult = dict[str, np.ndarray]


class DescribedRuntime(Protocol):
    """What the HTTP side needs of a model version's runtime: its spec and where it runs."""

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def provider(self) -> str: ...


@dataclass(frozen=True)
class RemoteRuntime:
    """A runtime living in an engine process, as the engine described it."""

    spec: ModelSpec
    provider: str


class Scheduler(Protocol):
    """Where a model version's validated sequences go: ``DynamicBatcher`` in the process that
    runs the model, ``RemoteBatcher`` in a frontend."""

    @property
    def failure(self) -> BaseException | None:
        """Why it stopped for good (its process must be restarted), or None."""
        ...

    @property
    def healthy(self) -> bool: ...

    @property
    def queue_depth(self) -> int: ...

    def check_admission(self, sequences: int = 1) -> None: ...

    def submit(
        self,
        sequences: Sequence[np.ndarray],
        initial_states: Sequence[Mapping[str, np.ndarray] | None],
        output_names: frozenset[str],
        deadline: float,
        stream: StreamChunk | None = None,
    ) -> list[asyncio.Future[SequenceResult]]:
        """One future per sequence; with ``stream``, the one sequence is that stream's next
        chunk, run from (and leaving) the state the engine holds for it."""
        ...

    async def close(self, drain_timeout_s: float) -> None: ...


@dataclass(eq=False)
class ServedModel:
    name: str
    version: str
    runtime: DescribedRuntime | None = None
    batcher: Scheduler | None = None
    executor: ThreadPoolExecutor | None = None
    error: str | None = None
    load_seconds: float = 0.0

    @property
    def ready(self) -> bool:
        return self.batcher is not None and self.batcher.healthy

    @property
    def spec(self) -> ModelSpec:
        if self.runtime is None:
            raise Unavailable(f"model {self.name} version {self.version} failed to load")
        return self.runtime.spec


@dataclass
class ModelRegistry:
    models: dict[str, dict[str, ServedModel]] = field(default_factory=dict)
    streams: StreamStore | None = None
    """Where the models run: the streams' states (``service.engine.streams``)."""
    stream_file: Path | None = None
    """Where ``close`` writes the live streams for the next start to take up (None: dropped)."""
    background: list[asyncio.Task[None]] = field(default_factory=list)
    """Tasks that live as long as the registry (the streams' expiry); cancelled by ``close``."""

    def add(self, served: ServedModel) -> None:
        self.models.setdefault(served.name, {})[served.version] = served

    def versions(self, name: str) -> dict[str, ServedModel]:
        if name not in self.models:
            raise ModelNotFound(f"unknown model {name!r}")
        return self.models[name]

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The named version, or the highest version that loaded when ``version`` is None."""
        versions = self.versions(name)
        if version is None:
            loaded = [v for v, m in versions.items() if m.runtime is not None] or list(versions)
            version = max(loaded, key=int)
        if version not in versions:
            raise ModelNotFound(f"model {name!r} has no version {version!r}")
        return versions[version]

    def all(self) -> list[ServedModel]:
        return [m for versions in self.models.values() for m in versions.values()]

    @property
    def ready(self) -> bool:
        """Every model version in the repository can serve (and there is at least one)."""
        served = self.all()
        return bool(served) and all(m.ready for m in served)

    async def close(self, drain_timeout_s: float) -> None:
        for task in self.background:
            task.cancel()
        batchers = [m.batcher for m in self.all() if m.batcher is not None]
        await asyncio.gather(*(b.close(drain_timeout_s) for b in batchers))
        for served in self.all():
            if served.executor is not None:
                served.executor.shutdown(wait=False, cancel_futures=True)
        if self.streams is not None and self.stream_file is not None and self.streams.live:
            saved = self.streams.save(self.stream_file)
            log.info("kept %d live streams for the next start", saved,
                     extra={"file": str(self.stream_file)})  # fmt: skip
