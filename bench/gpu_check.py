"""GPU checks in one run (for a lent GPU machine): CUDA parity of the exported models, torch
cuDNN vs ORT CUDA timings, and the service's answers on the CUDA provider against in-process
ORT on the CPU. Load on the server is measured by ``python -m bench --provider cuda`` (see
``bench/gpu_session.sh``).

    python bench/gpu_check.py --repository model_repository --checkpoints artifacts/checkpoints \
        --out results/gpu.json

Lengths are uniform in [10, 200] with garbage (1e3) in the padding; timings are medians and
include host-to-device copies. Prints a report and writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.checkpoint import load_checkpoint  # noqa: E402

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def make_batch(rng: np.random.Generator, n: int, features: int, lo: int = 10, hi: int = 200):
    lengths = rng.integers(lo, hi + 1, size=n).astype(np.int32)
    inputs = np.full((n, int(lengths.max()), features), 1e3, dtype=np.float32)
    for b, length in enumerate(lengths):
        inputs[b, :length] = rng.standard_normal((length, features))
    return inputs, lengths


def session(path: Path, provider: str, tf32: bool = False) -> ort.InferenceSession:
    """The service's settings: FP32 on CUDA (TF32 off) unless ``tf32``."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    cuda = (CUDA, {"use_tf32": "1" if tf32 else "0"})
    providers = [cuda, CPU] if provider == CUDA else [CPU]
    return ort.InferenceSession(str(path), options, providers=providers)


def run_ort(sess: ort.InferenceSession, inputs: np.ndarray, lengths: np.ndarray) -> dict:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"inputs": inputs, "lengths": lengths}), strict=True))


def torch_outputs(model: Any, inputs: np.ndarray, lengths: np.ndarray) -> dict:
    with torch.no_grad():
        out = model(torch.from_numpy(inputs).double(), torch.from_numpy(lengths))
    result = {
        "logits": out.logits.numpy(),
        "probs": out.probs.numpy(),
        "outputs": out.outputs.numpy(),
    }
    for n, state in enumerate(out.states):
        result[f"final_c_{n}"], result[f"final_h_{n}"] = state.c.numpy(), state.h.numpy()
    return result


def max_errors(a: dict, b: dict, lengths: np.ndarray) -> dict[str, float]:
    errors = {}
    for name in a:
        x, y = a[name], b[name]
        if name == "outputs":
            x, y = x[:, : y.shape[1]], y[:, : x.shape[1]]
        errors[name] = float(np.max(np.abs(x.astype(np.float64) - y)))
    return errors


def parity(name: str, model_path: Path, checkpoint: Path, rng: np.random.Generator) -> dict:
    model, _ = load_checkpoint(checkpoint)
    model = model.double()
    cuda, cpu = session(model_path, CUDA), session(model_path, CPU)
    tf32 = session(model_path, CUDA, tf32=True)
    features = model.config.input_size
    report: dict[str, Any] = {"cuda_session_providers": cuda.get_providers()}
    for batch in (1, 64, 256):
        inputs, lengths = make_batch(rng, batch, features)
        reference = torch_outputs(model, inputs, lengths)
        on_cuda = run_ort(cuda, inputs, lengths)
        on_cpu = run_ort(cpu, inputs, lengths)
        past = max(
            float(np.abs(on_cuda["outputs"][b, length:]).max(initial=0.0))
            for b, length in enumerate(lengths)
        )
        alone = [
            run_ort(cuda, inputs[b : b + 1, :length], lengths[b : b + 1])
            for b, length in enumerate(lengths[:16])
        ]
        invariance = max(
            float(np.abs(alone[b]["probs"][0] - on_cuda["probs"][b]).max())
            for b in range(len(alone))
        )
        on_tf32 = run_ort(tf32, inputs, lengths)
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
    cuda, cpu = session(model_path, CUDA), session(model_path, CPU)
    tf32 = session(model_path, CUDA, tf32=True)
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
            / median_seconds(partial(run_ort, cuda, inputs, lengths), repeats),
            "ort_cuda_tf32_seq_per_s": batch
            / median_seconds(partial(run_ort, tf32, inputs, lengths), repeats),
        }
        if batch <= 256:
            row["ort_cpu_seq_per_s"] = batch / median_seconds(
                partial(run_ort, cpu, inputs, lengths), 5
            )
        rows[str(batch)] = {k: round(v, 1) for k, v in row.items()}
    return rows


def server_check(repository: Path, rng: np.random.Generator, provider: str) -> dict:
    import httpx

    port = 8123
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "--model-repository", str(repository), "--port",
         str(port), "--provider", provider, "--log-format", "text"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    report: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("server exited")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        report["startup_s"] = round(120 - (deadline - time.monotonic()), 1)
        models = httpx.get(f"{url}/v1/models").json()["models"]
        report["providers"] = {m["name"]: m.get("provider") for m in models}
        # Results over HTTP on CUDA vs in-process ORT on the CPU.
        cpu = session(repository / "bilstm" / "1" / "model.onnx", CPU)
        inputs, lengths = make_batch(rng, 32, 12)
        expected = run_ort(cpu, inputs, lengths)
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
        process.send_signal(signal.SIGTERM)
        try:
            log, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            log, _ = process.communicate()
        report["exit_code"] = process.returncode
        report["log_tail"] = log[-3000:]
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
        report[f"parity_{name}"] = parity(name, path, args.checkpoints / f"{name}.pt", rng)
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
