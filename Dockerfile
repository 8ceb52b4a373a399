#
# lstm-serving: `docker compose up` (docker-compose.yml) or `docker build -t lstm-serving:0.1.0 .`
#
#   base        Debian 12 (bookworm) slim and its python3 (3.11) with venv; every stage starts here
#               or from debian:bookworm-slim itself, so a build needs only that image, Debian's
#               archive and PyPI
#   wheels      empty: a local wheelhouse for torch replaces it (`--build-context wheels=DIR`)
#   build       CPU torch: trains the default models bilstm and lstm (or reuses the checkpoints in
#               artifacts/checkpoints/), exports and verifies them into a model repository, and
#               builds the project's wheel
#   loadtest    the load tester (`docker compose --profile loadtest ...`)
#   lb          nginx from Debian's package, in front of the replicas (docker-compose.scale.yml)
#   prometheus  Prometheus from Debian's package (`docker compose --profile prometheus up`)
#   runtime     (the default, last stage) onnxruntime-gpu with CUDA 13 and cuDNN 9 from PyPI's
#               wheels (ORT_EXTRAS), the service's dependencies only (no torch), the model
#               repository at /models, a non-root user, `python -m service`
#
# Build arguments and contexts (docs/deployment.md, "Deployment (Docker)"):
#   --secret id=ca,src=BUNDLE      optional: a CA bundle for pip (a proxy that re-signs TLS)
#   --build-context wheels=DIR     optional: a folder of wheels pip may take torch from
#   --build-arg TORCH_INDEX_URL=   PyTorch's CPU index (the default); empty: PyPI and the
#                                  wheelhouse only, for machines that cannot reach it
#   --build-arg ORT_EXTRAS=        no CUDA/cuDNN wheels: a CPU-only image (default cuda,cudnn)
#
# Python packages are pinned (docker/constraints-runtime.txt for the runtime); Debian's packages
# are not (Debian drops superseded versions, so exact pins break rebuilds), the release is fixed
# by the base tag. Needs BuildKit (the default builder since Docker 23) and its built-in
# Dockerfile frontend: RUN --mount (bind, secret) and named build contexts.

###############################################################################################
FROM debian:bookworm-slim AS base

# Debian's python3 (3.11) and venv: packages go into virtualenvs (PEP 668: no pip into the
# system Python).
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

###############################################################################################
# Nothing, unless `--build-context wheels=DIR` replaces this stage with DIR (pip's find-links).
FROM scratch AS wheels

###############################################################################################
FROM base AS build

ENV VIRTUAL_ENV=/opt/build-venv \
    PATH=/opt/build-venv/bin:$PATH

# torch 2.13.0, the CPU build for Linux x86_64 (training and export need no GPU): from the
# wheelhouse where one is given, else from PyTorch's CPU index, which spares the build PyPI's
# torch and the CUDA wheels it pulls in (2.13.0+cpu sorts above PyPI's 2.13.0). The secret `ca`,
# where given, is the CA bundle pip trusts.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN --mount=type=bind,from=wheels,target=/tmp/wheels \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m venv /opt/build-venv \
    && /opt/build-venv/bin/python -m pip install --find-links /tmp/wheels \
        ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} torch==2.13.0

# The [train,export] dependencies (pinned where it matters in pyproject.toml: torch, aeon, onnx,
# onnxruntime-gpu), before any code, so that a code change does not reinstall them.
WORKDIR /src
COPY pyproject.toml ./
COPY docker/requirements.py docker/
RUN --mount=type=bind,from=wheels,target=/tmp/wheels \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python docker/requirements.py pyproject.toml train export >/tmp/requirements.txt \
    && python -m pip install --find-links /tmp/wheels --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Train (only where a checkpoint is missing: about 2 minutes on 2 cores), export, and verify
# ONNX Runtime against torch; a failed verification fails the build. Checkpoints present in the
# context's artifacts/checkpoints/ are reused: the wildcards may match nothing, `artifact[s]`
# included, which a context without artifacts/ needs (a missing plain folder fails the COPY).
COPY padding/ padding/
COPY contract/ contract/
COPY models/ models/
COPY export/ export/
COPY artifact[s]/checkpoints/*.pt artifacts/checkpoints/
RUN mkdir -p artifacts/checkpoints \
    && python -m export.defaults --repository /build/model_repository --checkpoints artifacts/checkpoints

# The project's wheel (pure Python; pip fetches setuptools for the build, hence the CA secret),
# with the console's assets (package data) and the lstm-serving command; the code comes last,
# so a change there re-runs neither the training nor the export.
COPY README.md ./
COPY service/ service/
COPY lstm_serving/ lstm_serving/
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python -m pip wheel --no-deps --wheel-dir /build/dist .

###############################################################################################
FROM base AS loadtest

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app
# What `pip install .[loadtest]` would install, without the code, then the code.
COPY pyproject.toml ./
COPY docker/requirements.py docker/
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m venv /opt/venv \
    && python docker/requirements.py pyproject.toml loadtest >/tmp/requirements.txt \
    && python -m pip install --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY padding/ padding/
COPY contract/ contract/
COPY loadtest/ loadtest/
# Results go to /app/loadtest-results (docker-compose.yml mounts ./loadtest-results there).
ENTRYPOINT ["python", "-m", "loadtest"]

###############################################################################################
# nginx in front of the replicas (docker-compose.scale.yml mounts deploy/nginx/nginx.conf).
# Debian 12's nginx is 1.22: the config resolves the replicas per request (no `resolve` flag).
FROM debian:bookworm-slim AS lb

ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx wget \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 8000
STOPSIGNAL SIGQUIT
ENTRYPOINT ["nginx", "-g", "daemon off;"]

###############################################################################################
# Prometheus (Debian 12's package, 2.42) for `docker compose --profile prometheus up`, which
# mounts deploy/prometheus/prometheus.yml.
FROM debian:bookworm-slim AS prometheus

ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && chown -R 65534:65534 /var/lib/prometheus
USER 65534:65534
EXPOSE 9090
ENTRYPOINT ["prometheus", "--config.file=/etc/prometheus/prometheus.yml", \
    "--storage.tsdb.path=/var/lib/prometheus/metrics2", "--web.listen-address=:9090"]

###############################################################################################
FROM base AS runtime

LABEL org.opencontainers.image.title="lstm-serving" \
      org.opencontainers.image.description="Batched variable-length LSTM inference on ONNX Runtime (CUDA 13 and cuDNN 9 from PyPI wheels, or the CPU): /v1 JSON and KServe V2 HTTP APIs"

RUN python3 -m venv /opt/venv \
    && groupadd --system --gid 10001 serving \
    && useradd --system --uid 10001 --gid serving --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin serving

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The serving dependencies: pyproject.toml's [project].dependencies (onnxruntime-gpu 1.31.1,
# numpy, FastAPI, uvicorn, pydantic, prometheus-client, orjson), exactly pinned, with
# onnxruntime-gpu's extras ORT_EXTRAS: `cuda,cudnn` brings the CUDA 13 runtime libraries and
# cuDNN 9 as wheels (the service preloads them at start, so only the NVIDIA driver must come from
# the host); empty makes a CPU-only image without them. The same script runs in
# tests/deploy/test_runtime_install.py, in a fresh virtualenv.
ARG ORT_EXTRAS=cuda,cudnn
RUN --mount=type=bind,source=pyproject.toml,target=/tmp/src/pyproject.toml \
    --mount=type=bind,source=docker/requirements.py,target=/tmp/src/docker/requirements.py \
    --mount=type=bind,source=docker/constraints-runtime.txt,target=/tmp/src/docker/constraints-runtime.txt \
    --mount=type=bind,source=docker/install-runtime.sh,target=/tmp/src/docker/install-runtime.sh \
    --mount=type=secret,id=ca,required=false \
    sh /tmp/src/docker/install-runtime.sh deps /tmp/src

# The models (read-only to the service), then the code: pip check, no torch, the app imports.
COPY --from=build /build/model_repository /models
RUN --mount=type=bind,from=build,source=/build/dist,target=/tmp/dist \
    --mount=type=bind,source=docker/install-runtime.sh,target=/tmp/install-runtime.sh \
    sh /tmp/install-runtime.sh app /tmp/dist/*.whl
COPY docker/healthcheck.py /opt/lstm-serving/healthcheck.py

# For the NVIDIA Container Toolkit (what the nvidia/cuda images set): inject the driver's compute
# and utility (nvidia-smi) libraries, and refuse to start on a driver older than CUDA 13.0 needs.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_REQUIRE_CUDA="cuda>=13.0"

# Settings are environment variables LSTM_SERVING_<NAME> (`docker run IMAGE --help` lists them).
ENV LSTM_SERVING_HOST=0.0.0.0 \
    LSTM_SERVING_PORT=8000 \
    LSTM_SERVING_MODEL_REPOSITORY=/models \
    LSTM_SERVING_DRAIN_TIMEOUT_S=30
USER 10001:10001
WORKDIR /opt/lstm-serving
EXPOSE 8000

# Ready = every model loaded, warmed up and batching. The start period covers CUDA start-up and
# the warm-up; docker-compose.yml repeats these settings.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --start-interval=2s --retries=3 \
    CMD ["python", "/opt/lstm-serving/healthcheck.py"]

# SIGTERM drains: uvicorn stops accepting and answers every accepted request (bounded by
# LSTM_SERVING_DRAIN_TIMEOUT_S), then the batchers stop (at most 5 s more), and the process exits
# 0. Give `docker stop` more than that (docker-compose.yml: stop_grace_period 45s;
# `docker stop --time 45`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
