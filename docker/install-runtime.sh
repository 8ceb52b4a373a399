#!/bin/sh
# Installs the service into the Python environment whose `python` comes first on PATH: the
# image's /opt/venv, or the fresh venv of tests/deploy/test_runtime_install.py, which runs this
# very file. The Dockerfile's runtime stage runs it twice, so that Docker caches the dependencies
# apart from the code:
#
#   install-runtime.sh deps SRC    [project].dependencies of SRC/pyproject.toml (no extras, so no
#                                  torch), every package pinned by SRC/docker/constraints-runtime.txt,
#                                  with onnxruntime-gpu's extras $ORT_EXTRAS where set (the image:
#                                  `cuda,cudnn`, the CUDA and cuDNN wheels; unset: none)
#   install-runtime.sh app TARGET  the project itself (a wheel or a source folder) without
#                                  dependencies; then checks that every dependency is met, that
#                                  torch is absent and that the app imports
#
# pip settings come from the environment: the image sets PIP_NO_CACHE_DIR=1; the test lets pip
# reuse this machine's cache and package index. A CA bundle given to the build as the secret `ca`
# (/run/secrets/ca) is the one pip trusts, unless PIP_CERT says otherwise.
set -eu

usage() {
    echo "usage: $0 deps SRC | app WHEEL_OR_SRC" >&2
    exit 2
}

[ $# -eq 2 ] || usage
step=$1
target=$2

case "$step" in
deps)
    requirements=$(mktemp)
    trap 'rm -f "$requirements"' EXIT
    python "$target/docker/requirements.py" "$target/pyproject.toml" >"$requirements"
    if [ -n "${ORT_EXTRAS:-}" ]; then
        # The same pinned package with extras: pip merges it with the plain requirement.
        echo "onnxruntime-gpu[$ORT_EXTRAS]" >>"$requirements"
    fi
    if [ -z "${PIP_CERT:-}" ] && [ -s /run/secrets/ca ]; then
        export PIP_CERT=/run/secrets/ca
    fi
    python -m pip install --require-virtualenv --no-input \
        --constraint "$target/docker/constraints-runtime.txt" \
        --requirement "$requirements"
    ;;
app)
    python -m pip install --require-virtualenv --no-input --no-deps "$target"
    python -m pip check
    if python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
        echo "error: torch is installed, but the serving runtime must not need it" >&2
        exit 1
    fi
    python -c 'import service.__main__, service.frontend.app'
    echo "runtime installed: $(python --version), $(python -m pip --version | cut -d" " -f1-2)"
    ;;
*)
    usage
    ;;
esac
