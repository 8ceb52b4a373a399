"""The HTTP ceiling (FOR BENCHMARKS ONLY): the real service with inference skipped.

    python -m bench.http_ceiling --model-repository model_repository --port 8001

It is ``service.frontend.app.create_app`` unchanged — the same routes, body reading, JSON/binary
decoding, validation, dynamic batcher, executor threads, response encoding and metrics — with a
runtime factory whose runtime reads each model's spec from its ONNX file but answers every batch
with zeros of the right shapes (uniform probabilities) instead of running ONNX Runtime. What it
reaches is what the service's HTTP path allows before any compute; see docs/benchmarks.md's
"Benchmark suite (``python -m bench``)" (where it is point 4) and its measured tables,
"Performance on a 2-core CPU dev machine" and "Performance on a GPU". Never serve real traffic
with it: its answers are not predictions.

Shapes: ``L`` steps of a sequence, ``C`` classes, ``D`` per-step output width, ``dirs``
directions, ``H_n`` width of layer ``n``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import uvicorn

from contract.spec import ModelSpec
from service.engine.loading import LoadedRuntime, onnx_runtime_factory
from service.frontend.app import create_app
from service.logs import configure_logging
from service.settings import Settings, settings_from_cli

log = logging.getLogger("bench.http_ceiling")

PROVIDER = "none (HTTP ceiling: inference skipped)"


class NullRuntime:
    """Answers like the model (same output names and shapes) without computing anything.

    ``on_gpu`` is that of the session the service would have opened, so the registry gives
    this runtime the batching policy (``Settings.resolved_padding_efficiency``) and the
    concurrent batches the service would run with."""

    provider = PROVIDER
    device = "none"  # nothing runs: no device's figures

    def __init__(self, spec: ModelSpec, on_gpu: bool = False) -> None:
        self.spec = spec
        self.on_gpu = on_gpu
        self._width = spec.output_shapes.get("outputs", [-1, -1, 1])[-1]
        self._states = {s.output: (s.directions, s.width) for s in spec.state_inputs}
        self._probs = np.full(spec.num_classes, 1.0 / spec.num_classes, dtype=np.float32)
        self._logits = np.zeros(spec.num_classes, dtype=np.float32)

    def warmup(self, batch_sizes: list[int], lengths: list[int]) -> float:
        return 0.0

    # ``BatchRunner``'s signature (service.engine.batching.batcher), as ``ModelRuntime`` has it too.
    def run_batch(
        self,
        sequences: Sequence[np.ndarray],
        initial_states: Sequence[Mapping[str, np.ndarray] | None],
        output_names: Iterable[str],
    ) -> list[dict[str, np.ndarray]]:
        """Per sequence ``(L, F)``: ``probs``/``logits`` ``(C,)``, ``outputs`` ``(L, D)``,
        ``final_*`` ``(dirs, H_n)`` — the outputs named, as the real runtime returns them."""
        names = set(output_names)
        results = []
        for sequence in sequences:
            result: dict[str, np.ndarray] = {}
            if "probs" in names:
                result["probs"] = self._probs
            if "logits" in names:
                result["logits"] = self._logits
            if "outputs" in names:
                result["outputs"] = np.zeros((len(sequence), self._width), np.float32)
            for name, shape in self._states.items():
                if name in names:
                    result[name] = np.zeros(shape, np.float32)
            results.append(result)
        return results


def null_runtime_factory(path: Path, name: str, version: str, settings: Settings) -> LoadedRuntime:
    """Reads the model's spec through the real loader (the contract checks run), then drops
    the session: nothing of ORT is left in the request path."""
    loaded = onnx_runtime_factory(path, name, version, settings)
    return NullRuntime(loaded.spec, on_gpu=loaded.on_gpu)


def main() -> None:
    settings = settings_from_cli()
    configure_logging(settings.log_level, settings.log_format)
    log.warning("HTTP ceiling server for benchmarks: inference is skipped, answers are zeros")
    uvicorn.run(
        create_app(settings, runtime_factory=null_runtime_factory),
        host=settings.host,
        port=settings.port,
        workers=1,
        log_config=None,
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
    )


if __name__ == "__main__":
    main()
