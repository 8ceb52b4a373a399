# syntax=docker/dockerfile:1.7
#
# lstm-serving: `docker compose up` (docker-compose.yml) or `docker build -t lstm-serving .`
#
#   build     CPU torch: trains the default models bilstm and lstm (or reuses the checkpoints in
#             artifacts/checkpoints/), exports and verifies them into a model repository, and
#             builds the project's wheel
#   loadtest  the load tester (`docker compose --profile loadtest ...`)
#   runtime   (the default, last stage) CUDA 13 + cuDNN 9 on Ubuntu 24.04, onnxruntime-gpu and
#             the service's dependencies only (no torch), the model repository at /models,
#             a non-root user, one uvicorn worker (`python -m service`)
#
# Base images and Python packages are pinned (docker/constraints-runtime.txt for the runtime).
# Needs BuildKit (the default builder since Docker 23): RUN --mount and optional COPY wildcards.

###############################################################################################
FROM python:3.12.12-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/build-venv \
    PATH=/opt/build-venv/bin:$PATH

# torch 2.13.0, the CPU build for Linux x86_64 (training and export need no GPU). On our dev
# machine pip takes a local file (a wheel in pip's find-links); in Docker it comes from the
# PyTorch CPU index, which spares the image builder the CUDA wheels that PyPI's torch pulls in.
# (The venv's python by its path: the shell may still have `python` hashed to the system one.)
RUN python -m venv /opt/build-venv \
    && /opt/build-venv/bin/python -m pip install \
        --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# The [train,export] dependencies (pinned where it matters in pyproject.toml: torch, aeon, onnx,
# onnxruntime-gpu), before any code, so that a code change does not reinstall them.
WORKDIR /src
COPY pyproject.toml ./
COPY docker/requirements.py docker/
RUN python docker/requirements.py pyproject.toml train export >/tmp/requirements.txt \
    && python -m pip install --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Train (only where a checkpoint is missing: about 2 minutes on 2 cores), export, and verify
# ONNX Runtime against torch; a failed verification fails the build. Checkpoints present in the
# context's artifacts/checkpoints/ are reused (the wildcard may match nothing).
COPY padding/ padding/
COPY models/ models/
COPY export/ export/
COPY artifacts/checkpoints/*.pt artifacts/checkpoints/
RUN python -m export.defaults --repository /build/model_repository --checkpoints artifacts/checkpoints

# The project's wheel (pure Python); the service code comes last, so a change there re-runs
# neither the training nor the export.
COPY README.md ./
COPY service/ service/
RUN python -m pip wheel --no-deps --wheel-dir /build/dist .

###############################################################################################
FROM python:3.12.12-slim-bookworm AS loadtest

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
# What `pip install .[loadtest]` would install, without the code, then the code.
COPY pyproject.toml ./
COPY docker/requirements.py docker/
RUN python docker/requirements.py pyproject.toml loadtest >/tmp/requirements.txt \
    && python -m pip install --root-user-action=ignore --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY padding/ padding/
COPY loadtest/ loadtest/
# Results go to /app/loadtest-results (docker-compose.yml mounts ./loadtest-results there).
ENTRYPOINT ["python", "-m", "loadtest"]

###############################################################################################
FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS runtime

LABEL org.opencontainers.image.title="lstm-serving" \
      org.opencontainers.image.description="Batched variable-length LSTM inference on ONNX Runtime (CUDA 13, cuDNN 9): /v1 JSON and KServe V2 HTTP APIs"

# Ubuntu 24.04's python3 (3.12) and venv, in a virtualenv at /opt/venv (PEP 668: no pip into
# the system Python). The apt packages are not version-pinned: Ubuntu drops superseded versions
# from its archive, so exact pins break rebuilds; the pinned base tag fixes the release, and every
# Python package is pinned by docker/constraints-runtime.txt.
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && groupadd --system --gid 10001 serving \
    && useradd --system --uid 10001 --gid serving --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin serving

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The serving dependencies: pyproject.toml's [project].dependencies (onnxruntime-gpu 1.31.1,
# numpy, FastAPI, uvicorn, pydantic, prometheus-client, orjson), exactly pinned. The same script
# runs in tests/deploy/test_runtime_install.py, in a fresh virtualenv.
RUN --mount=type=bind,source=pyproject.toml,target=/tmp/src/pyproject.toml \
    --mount=type=bind,source=docker/requirements.py,target=/tmp/src/docker/requirements.py \
    --mount=type=bind,source=docker/constraints-runtime.txt,target=/tmp/src/docker/constraints-runtime.txt \
    --mount=type=bind,source=docker/install-runtime.sh,target=/tmp/src/docker/install-runtime.sh \
    sh /tmp/src/docker/install-runtime.sh deps /tmp/src

# The models (read-only to the service), then the code: pip check, no torch, the app imports.
COPY --from=build /build/model_repository /models
RUN --mount=type=bind,from=build,source=/build/dist,target=/tmp/dist \
    --mount=type=bind,source=docker/install-runtime.sh,target=/tmp/install-runtime.sh \
    sh /tmp/install-runtime.sh app /tmp/dist/*.whl
COPY docker/healthcheck.py /opt/lstm-serving/healthcheck.py

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
# LSTM_SERVING_DRAIN_TIMEOUT_S), then the batchers stop (at most 5 s more). Give `docker stop`
# more than that (docker-compose.yml: stop_grace_period 45s; `docker stop --time 45`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
