"""GPU checks in one run (for a lent GPU machine): CUDA parity of the exported models, torch
cuDNN vs ORT CUDA timings, and the service's answers on the CUDA provider against in-process
ORT on the CPU. Load on the server is measured by ``python -m bench --provider cuda`` (see
``bench/gpu_session.sh``).

    python -m bench.gpu_check --repository model_repository --checkpoints artifacts/checkpoints \
        --out results/gpu.json

Lengths are uniform in [10, 200] with garbage (1e3) in the padding; timings are medians and
include host-to-device copies. Prints a report and writes every figure as JSON. The torch
reference and the ONNX Runtime runs are ``export.reference``'s, the padding ``padding``'s: the
same as every export's verification.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from bench.servers import RunningServer
from contract.providers import ProviderPreference
from contract.sessions import create_session
from contract.spec import is_per_step
from export.reference import onnx_outputs, torch_outputs
from models.checkpoint import load_checkpoint
from padding import pad_sequences

ORT_THREADS = 0
"""Intra-op threads of every session here: ORT's default (one per physical core), as these
checks have always measured; the service itself runs CUDA sessions with 1."""


def make_batch(
    rng: np.random.Generator, n: int, features: int, lo: int = 10, hi: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of lengths uniform in ``[lo, hi]`` as ``(B, T, F)`` float32 with 1e3 in
    the padding, and their lengths ``(B,)`` int32."""
    lengths = rng.integers(lo, hi + 1, size=n)
    return pad_sequences(
        [rng.standard_normal((length, features)) for length in lengths], pad_value=1e3
    )


def max_errors(a: dict, b: dict, lengths: np.ndarray) -> dict[str, float]:
    errors = {}
    for name in a:
        x, y = a[name], b[name]
        if is_per_step(name):  # (B, T, D): compared over the shorter T
            x, y = x[:, : y.shape[1]], y[:, : x.shape[1]]
        errors[name] = float(np.max(np.abs(x.astype(np.float64) - y)))
    return errors


def parity(
    name: str,
    model_path: Path,
    checkpoint: Path,
    rng: np.random.Generator,
    provider: ProviderPreference,
) -> dict:
    """Torch (float64) vs ORT on ``provider`` (FP32 and TF32) and on the CPU; with ``provider``
    ``cpu`` (the dry run) the "cuda" figures are the CPU's."""
    model, _ = load_checkpoint(checkpoint)
    model = model.double()
    cuda = create_session(model_path, provider, ORT_THREADS)[0]
    cpu = create_session(model_path, "cpu", ORT_THREADS)[0]
    tf32 = create_session(model_path, provider, ORT_THREADS, tf32=True)[0]
    features = model.config.input_size
    report: dict[str, Any] = {"cuda_session_providers": cuda.get_providers()}
    for batch in (1, 64, 256):
        inputs, lengths = make_batch(rng, batch, features)
        reference = torch_outputs(model, inputs, lengths)  # float64: the model is .double()
        on_cuda = onnx_outputs(cuda, inputs, lengths)
        on_cpu = onnx_outputs(cpu, inputs, lengths)
        past = max(
            float(np.abs(on_cuda["outputs"][b, length:]).max(initial=0.0))
            for b, length in enumerate(lengths)
        )
        alone = [
            onnx_outputs(cuda, inputs[b : b + 1, :length], lengths[b : b + 1])
            for b, length in enumerate(lengths[:16])
        ]
        invariance = max(
            float(np.abs(alone[b]["probs"][0] - on_cuda["probs"][b]).max())
            for b in range(len(alone))
        )
        on_tf32 = onnx_outputs(tf32, inputs, lengths)
        report[f"batch_{batch}"] = {
            "cuda_vs_torch_fp64": max_errors(on_cuda, reference, lengths),
            "cuda_tf32_vs_torch_fp64": max_errors(on_tf32, reference, lengths),
            "cpu_vs_torch_fp64": max_errors(on_cpu, reference, lengths),
            "cuda_padding_invariance_probs": invariance,
            "cuda_max_abs_past_length": past,
        }
    return report


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timings(model_path: Path, checkpoint: Path, rng: np.random.Generator) -> dict:
    model, _ = load_checkpoint(checkpoint)
    gpu_model = model.cuda().eval()
    torch.backends.cudnn.allow_tf32 = False  # the same FP32 math as ORT's sessions
    cuda = create_session(model_path, "cuda", ORT_THREADS)[0]
    cpu = create_session(model_path, "cpu", ORT_THREADS)[0]
    tf32 = create_session(model_path, "cuda", ORT_THREADS, tf32=True)[0]
    features = model.config.input_size
    rows = {}
    for batch in (1, 16, 64, 256, 1024):
        inputs, lengths = make_batch(rng, batch, features)

        def torch_run(inputs: np.ndarray = inputs, lengths: np.ndarray = lengths) -> None:
            with torch.no_grad():
                x = torch.from_numpy(inputs).cuda()
                out = gpu_model(x, torch.from_numpy(lengths))
                out.probs.cpu()

        repeats = 15 if batch <= 256 else 8
        row = {
            "torch_cudnn_seq_per_s": batch / median_seconds(torch_run, repeats),
            "ort_cuda_seq_per_s": batch
            / median_seconds(partial(onnx_outputs, cuda, inputs, lengths), repeats),
            "ort_cuda_tf32_seq_per_s": batch
            / median_seconds(partial(onnx_outputs, tf32, inputs, lengths), repeats),
        }
        if batch <= 256:
            row["ort_cpu_seq_per_s"] = batch / median_seconds(
                partial(onnx_outputs, cpu, inputs, lengths), 5
            )
        rows[str(batch)] = {k: round(v, 1) for k, v in row.items()}
    return rows


def server_check(repository: Path, rng: np.random.Generator, provider: ProviderPreference) -> dict:
    import httpx

    # At the service's default log level (info), so that the log tail says what it chose.
    server = RunningServer(
        "service", repository, ["--log-level", "info"], ready_timeout_s=120, provider=provider
    )
    url = server.url
    report: dict[str, Any] = {"startup_s": round(server.startup_s, 1)}
    try:
        models = httpx.get(f"{url}/v1/models").json()["models"]
        report["providers"] = {m["name"]: m.get("provider") for m in models}
        # Results over HTTP on CUDA vs in-process ORT on the CPU.
        cpu = create_session(repository / "bilstm" / "1" / "model.onnx", "cpu", ORT_THREADS)[0]
        inputs, lengths = make_batch(rng, 32, 12)
        expected = onnx_outputs(cpu, inputs, lengths)
        body = {
            "inputs": [
                {"name": "inputs", "shape": list(inputs.shape), "datatype": "FP32",
                 "data": inputs.ravel().tolist()},
                {"name": "lengths", "shape": [32], "datatype": "INT32", "data": lengths.tolist()},
            ]
        }  # fmt: skip
        got = httpx.post(f"{url}/v2/models/bilstm/infer", json=body, timeout=60).json()
        outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in got["outputs"]}
        report["server_cuda_vs_inprocess_cpu"] = max_errors(
            {k: outputs[k] for k in ("logits", "probs", "final_h_1")},
            {k: expected[k] for k in ("logits", "probs", "final_h_1")},
            lengths,
        )
        metrics = httpx.get(f"{url}/metrics").text
        report["metrics"] = {
            line.split()[0]: float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith(("lstm_batch_size_sum", "lstm_batch_size_count",
                                "lstm_batch_real_steps_total", "lstm_batch_padded_steps_total"))
            and "bilstm" in line
        }  # fmt: skip
    finally:
        report["exit_code"] = server.stop()
        report["log_tail"] = server.log_tail(3000)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--checkpoints", type=Path, default=Path("artifacts/checkpoints"))
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    parser.add_argument(
        "--provider",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cpu: a dry run of the script on a machine without a GPU",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU",
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "available_providers": ort.get_available_providers(),
    }
    for name in ("bilstm", "lstm"):
        path = args.repository / name / "1" / "model.onnx"
        checkpoint = args.checkpoints / f"{name}.pt"
        report[f"parity_{name}"] = parity(name, path, checkpoint, rng, args.provider)
        print(name, json.dumps(report[f"parity_{name}"], indent=1), flush=True)
    if args.provider == "cuda":
        report["timings_bilstm"] = timings(
            args.repository / "bilstm" / "1" / "model.onnx", args.checkpoints / "bilstm.pt", rng
        )
        print(json.dumps(report["timings_bilstm"], indent=1), flush=True)
    report["server"] = server_check(args.repository, rng, args.provider)
    print(json.dumps({k: v for k, v in report["server"].items() if k != "log_tail"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
