"""Checking a sample of responses: the shapes the model's metadata promises and, given the model
file, the probabilities in-process ONNX Runtime computes for each sequence run alone."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.names import INPUTS, LENGTHS, PROBS
from loadtest.payloads import DecodeError, PoolSpec, decode_response, pool_sequences

MAX_FAILURES_SHOWN = 5


@dataclass(frozen=True)
class ModelInfo:
    """What the server says of a model (``GET /v2/models/{name}``)."""

    features: int
    classes: int | None
    labels: list[str] | None


def parse_model_metadata(metadata: dict[str, Any]) -> ModelInfo:
    """Features ``F`` from ``inputs`` ``[-1, -1, F]``, classes ``C`` from ``probs`` ``[-1, C]``."""
    inputs = {t["name"]: t for t in metadata.get("inputs", [])}
    outputs = {t["name"]: t for t in metadata.get("outputs", [])}
    if "inputs" not in inputs:
        raise ValueError("the model metadata has no 'inputs' tensor")
    features = int(inputs["inputs"]["shape"][-1])
    if features < 1:
        raise ValueError(f"the model's feature size is not fixed: {inputs['inputs']['shape']}")
    classes = None
    if "probs" in outputs and int(outputs["probs"]["shape"][-1]) > 0:
        classes = int(outputs["probs"]["shape"][-1])
    labels = (metadata.get("parameters") or {}).get("labels")
    return ModelInfo(features, classes, list(labels) if labels else None)


def fetch_model_info(
    url: str,
    model: str,
    version: str | None = None,
    timeout_s: float = 10.0,
    headers: dict[str, str] | None = None,
) -> ModelInfo:
    """The model's metadata from the server (``RuntimeError`` naming the problem if not)."""
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
    request = urllib.request.Request(url.rstrip("/") + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return parse_model_metadata(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"GET {path}: HTTP {error.code} {error.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError) as error:
        raise RuntimeError(f"GET {url}{path}: {error}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise RuntimeError(f"GET {path}: unexpected metadata: {error}") from None


class OrtReference:
    """Each sequence ``(L, F)`` run alone through in-process ONNX Runtime (CPU)."""

    def __init__(self, model_file: Path) -> None:
        # Imported here: ONNX Runtime is needed only when a model file is given to check against.
        from contract.sessions import create_session

        # intra_op_threads 0: ORT's default, a thread per core.
        self.session, _ = create_session(model_file, "cpu", intra_op_threads=0)

    def probs(self, sequence: np.ndarray) -> np.ndarray:
        feeds = {
            INPUTS: sequence[np.newaxis].astype(np.float32),
            LENGTHS: np.array([len(sequence)], dtype=np.int32),
        }
        return self.session.run([PROBS], feeds)[0][0]


def verify_samples(
    samples: list[tuple[int, int, bytes, str | None]],
    spec: PoolSpec,
    info: ModelInfo | None,
    model_file: Path | None = None,
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Check sampled successful responses; ``passed`` is False on any failure."""
    requests = pool_sequences(spec) if samples else []
    reference = OrtReference(model_file) if model_file is not None and samples else None
    failures: list[str] = []
    shape_ok = 0
    ort_checked = 0
    worst = 0.0
    for pool_index, _status, body, header_length in samples:
        sequences = requests[pool_index]
        try:
            decoded = decode_response(spec.protocol, body, header_length)
        except DecodeError as error:
            failures.append(f"request {pool_index}: {error}")
            continue
        probs = decoded.probs
        classes = info.classes if info and info.classes else probs.shape[-1]
        problems = []
        if probs.shape != (len(sequences), classes):
            problems.append(f"probs shape {list(probs.shape)} != {[len(sequences), classes]}")
        elif not np.isfinite(probs).all() or np.abs(probs.sum(axis=1) - 1).max() > 1e-3:
            problems.append("probabilities are not finite or do not sum to 1")
        if decoded.labels is not None and not problems:
            if info and info.labels:
                expected = [info.labels[int(k)] for k in probs.argmax(axis=1)]
                if decoded.labels != expected:
                    problems.append(f"labels {decoded.labels} != argmax labels {expected}")
        if problems:
            failures.append(f"request {pool_index}: " + "; ".join(problems))
            continue
        shape_ok += 1
        if reference is not None:
            for b, sequence in enumerate(sequences):
                gap = float(np.abs(reference.probs(sequence) - probs[b]).max())
                worst = max(worst, gap)
                ort_checked += 1
                if gap > tolerance:
                    failures.append(
                        f"request {pool_index} sequence {b} (length {len(sequence)}): max abs "
                        f"error {gap:.2e} vs in-process ORT > {tolerance:g}"
                    )
    return {
        "checked_responses": len(samples),
        "shape_ok": shape_ok,
        "ort_sequences_checked": ort_checked,
        "max_abs_error_vs_ort": worst if reference is not None else None,
        "tolerance": tolerance if reference is not None else None,
        "failures": failures[:MAX_FAILURES_SHOWN],
        "failure_count": len(failures),
        "passed": not failures and bool(samples),
    }
