#!/usr/bin/env bash
# Every check that needs a GPU, in one run (a lent GPU machine has minutes, not hours):
#   1. export verification on the CUDA provider (python -m export --provider cuda);
#   2. the service started exactly as the Docker image's ENTRYPOINT and ENV would, with CUDA,
#      judged by the image's own health check, then one inference;
#   3. python -m bench --provider cuda (ceilings, service, naive baseline, HTTP ceiling);
#   4. 1, 4 and 8 HTTP frontends feeding one engine (and the old per-worker model) under the
#      same V2 binary load, with the engine's batch figures;
#   5. the fp16 variants (exported and verified on CUDA) against fp32: in process at batches
#      1/16/64/256 and served, with their test accuracy (python -m bench --precisions).
# Needs the default models (model_repository/, artifacts/checkpoints/) and the serving stack
# (stage it with: MORE=pyzmq ../shared/gpu/stage-wheels.sh; the GPU image lacks pyzmq).
# Writes its files to $OUT (default /tmp/gpu-out). PROVIDER=cpu runs it as a dry run.
set -u
out=${OUT:-/tmp/gpu-out}
provider=${PROVIDER:-cuda}
repo=$PWD/model_repository
mkdir -p "$out"
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1

wait_ready() {  # wait_ready PORT: poll readiness, at most 120 s
  for _ in $(seq 240); do
    LSTM_SERVING_PORT=$1 python3 docker/healthcheck.py >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/export.txt" 2>&1

# 1. export verification on the provider
for model in bilstm lstm; do
  python3 -m export "artifacts/checkpoints/$model.pt" --name "$model" \
    --repository /tmp/verified-repo --provider "$provider" >> "$out/export.txt" 2>&1
  echo "[$model] exit $?" >> "$out/export.txt"
done

# 2. the image's entrypoint and environment (Dockerfile ENV + docker-compose.yml's provider)
(cd /tmp && exec env LSTM_SERVING_HOST=0.0.0.0 LSTM_SERVING_PORT=8000 \
  LSTM_SERVING_MODEL_REPOSITORY="$repo" LSTM_SERVING_DRAIN_TIMEOUT_S=30 \
  LSTM_SERVING_PROVIDER="$provider" python3 -m service) > /tmp/image-service.log 2>&1 &
pid=$!
wait_ready 8000
{ echo "--- healthcheck:"; LSTM_SERVING_PORT=8000 python3 docker/healthcheck.py; echo "exit $?"
  python3 - <<'PY'
import json, urllib.request
models = json.load(urllib.request.urlopen("http://127.0.0.1:8000/v1/models"))["models"]
print("providers:", {m["name"]: m["provider"] for m in models})
body = json.dumps({"sequences": [[[0.1] * 12] * 20]}).encode()
request = urllib.request.Request("http://127.0.0.1:8000/v1/models/bilstm/predict", body,
                                 {"content-type": "application/json"})
print("predict:", urllib.request.urlopen(request).read().decode()[:300])
PY
} >> "$out/image.txt" 2>&1
kill -TERM "$pid"; wait "$pid"; echo "--- exit after SIGTERM: $?" >> "$out/image.txt"
{ echo "--- service log:"; cat /tmp/image-service.log; } >> "$out/image.txt"

# 3. the benchmark suite
timeout 330 python3 -m bench --provider "$provider" --processes 8 --no-torch \
  --concurrency 1,16,64,256 --out-dir "$out" ${BENCH_ARGS:---seconds 3 --warmup 1} \
  > /tmp/bench.log 2>&1
tail -5 /tmp/bench.log

# 4. the process model: N frontends feeding one engine (issue 14), and the old model (each
#    worker its own sessions and batchers) for contrast; the engine's batches from /metrics
run_frontends() {  # run_frontends LABEL FLAGS...: V2 binary, 256 clients, 5 s
  label=$1; shift
  python3 -m service --model-repository "$repo" --port 8010 --provider "$provider" \
    --log-level warning "$@" > "/tmp/service-$label.log" 2>&1 &
  pid=$!
  wait_ready 8010
  python3 -m loadtest --url http://127.0.0.1:8010 --model bilstm --protocol v2-binary \
    --concurrency 256 --processes 8 --duration 5 --warmup 1 --no-plots --quiet \
    --out "$out/frontends-$label.json" > "$out/frontends-$label.txt" 2>&1
  curl -s http://127.0.0.1:8010/metrics | grep -E '^lstm_batch_(size|padded|real)' \
    >> "$out/frontends-$label.txt"
  kill -TERM "$pid"; wait "$pid"; echo "exit after SIGTERM: $?" >> "$out/frontends-$label.txt"
}
for frontends in 1 4 8; do
  run_frontends "$frontends" --workers "$frontends" --engine separate
done
run_frontends "in-process-1" --workers 1 --engine in-process
run_frontends "in-process-4" --workers 4 --engine in-process
# 5. fp16 against fp32 (issue 17): the variants written beside the fp32 models, then measured
python3 -m export.defaults --repository "$repo" --precisions fp32 fp16 --provider "$provider" \
  > "$out/fp16-export.txt" 2>&1
echo "exit $?" >> "$out/fp16-export.txt"
timeout 200 python3 -m bench --provider "$provider" --processes 8 --no-torch --no-ceiling \
  --servers service --protocols v2-binary --concurrency 256 --handoff-requests 0 \
  --precisions fp32,fp16 --precision-batch-sizes 1,16,64,256 --seconds 3 --warmup 1 \
  --tag precision --out-dir "$out" > /tmp/bench-precision.log 2>&1
tail -20 /tmp/bench-precision.log > "$out/precision.txt"
ls -la "$out"
