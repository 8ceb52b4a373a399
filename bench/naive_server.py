"""THE NAIVE BASELINE (for benchmarks only, not the service): one ORT call per request.

    python -m bench.naive_server --model-repository model_repository --port 8002

A minimal FastAPI app of the kind one writes first: each request is decoded (orjson into
numpy), padded and run through ONNX Runtime on its own — no batching across requests, no
queue, no limits, no deadlines, no metrics — in Starlette's thread pool so the event loop keeps
accepting. It speaks just enough of the service's API for the same load to hit it:

* ``POST /v1/models/{name}/predict`` (``label`` and ``probabilities`` per sequence),
* ``POST /v2/models/{name}/infer`` in JSON and with binary tensors,
* ``GET /v2/models/{name}`` (metadata) and ``GET /v2/health/ready``.

Shapes: ``B`` sequences in a request, ``T`` the longest, ``F`` features, ``C`` classes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from contract.providers import ProviderPreference
from contract.sessions import create_session
from padding import pad_sequences
from service.engine.runtime.repository import discover

HEADER_LENGTH = "inference-header-content-length"


def _json(content: Any) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), 200,
                    media_type="application/json")  # fmt: skip


def create_naive_app(
    model_repository: Path, intra_op_threads: int = 1, provider: ProviderPreference = "cpu"
) -> FastAPI:
    """The baseline app over the highest version of each model in the repository, found as the
    service finds them, in sessions opened as the service opens them (the baseline differs in
    batching only)."""
    latest = {location.name: location.path for location in discover(model_repository)}
    sessions: dict[str, ort.InferenceSession] = {}
    labels_of: dict[str, list[str]] = {}
    for name, path in latest.items():  # discover sorts each model's versions: the last wins
        session = create_session(path, provider, intra_op_threads)[0]
        sessions[name] = session
        meta = session.get_modelmeta().custom_metadata_map
        labels_of[name] = [str(x) for x in json.loads(meta.get("labels", "[]"))]
    app = FastAPI(title="naive baseline (one ORT call per request)")

    def session_of(name: str) -> ort.InferenceSession:
        if name not in sessions:
            raise HTTPException(404, f"unknown model {name!r}")
        return sessions[name]

    def run(session: ort.InferenceSession, inputs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return session.run(["probs"], {"inputs": inputs, "lengths": lengths})[0]

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _json({"ready": True})

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> Response:
        session = session_of(name)
        tensors = [
            {"name": t.name, "datatype": "FP32" if "float" in t.type else "INT32",
             "shape": [d if isinstance(d, int) else -1 for d in t.shape]}
            for t in session.get_inputs() + session.get_outputs()
        ]  # fmt: skip
        inputs = {t.name for t in session.get_inputs()}
        return _json(
            {
                "name": name,
                "versions": ["1"],
                "platform": "onnxruntime_onnx",
                "inputs": [t for t in tensors if t["name"] in inputs],
                "outputs": [t for t in tensors if t["name"] not in inputs],
                "parameters": {"labels": labels_of[name]},
            }
        )

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, request: Request) -> Response:
        session = session_of(name)
        body = orjson.loads(await request.body())
        sequences = [np.asarray(s, dtype=np.float32) for s in body["sequences"]]
        inputs, lengths = pad_sequences(sequences)
        probs = await run_in_threadpool(run, session, inputs, lengths)
        labels = labels_of[name]
        results = [
            {"label": labels[int(p.argmax())] if labels else str(int(p.argmax())),
             "class_index": int(p.argmax()), "probabilities": p}
            for p in probs
        ]  # fmt: skip
        return _json({"model": name, "version": "1", "labels": labels, "results": results})

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        session = session_of(name)
        body = await request.body()
        split = request.headers.get(HEADER_LENGTH)
        header = orjson.loads(body[: int(split)] if split else body)
        blobs, offset, arrays = memoryview(body)[int(split) :] if split else b"", 0, {}
        for entry in header["inputs"]:
            dtype = np.float32 if entry["datatype"] == "FP32" else np.int32
            size = (entry.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                array = np.frombuffer(blobs[offset : offset + size], dtype=dtype)
                offset += size
            else:
                array = np.asarray(entry["data"], dtype=dtype)
            arrays[entry["name"]] = array.reshape(entry["shape"])
        inputs = arrays["inputs"]
        lengths = arrays.get("lengths", np.full(len(inputs), inputs.shape[1], np.int32))
        probs = await run_in_threadpool(run, session, inputs, lengths.astype(np.int32))
        wanted = header.get("outputs") or [{"name": "probs"}]
        binary = any((o.get("parameters") or {}).get("binary_data") for o in wanted)
        entry = {"name": "probs", "datatype": "FP32", "shape": list(probs.shape)}
        if not binary:
            entry["data"] = probs.ravel()
            return _json({"model_name": name, "model_version": "1", "outputs": [entry]})
        blob = probs.astype("<f4").tobytes()
        entry["parameters"] = {"binary_data_size": len(blob)}
        head = orjson.dumps({"model_name": name, "model_version": "1", "outputs": [entry]})
        return Response(head + blob, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(len(head))})  # fmt: skip

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--ort-intra-op-threads", type=int, default=1)
    parser.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    app = create_naive_app(args.model_repository, args.ort_intra_op_threads, args.provider)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
