#!/usr/bin/env bash
# The GPU check (src/fcnlab/bench/gpu_check.py; docs/benchmark.md, "GPU check"): paper-scale
# speed rows and a 300-iteration full-width FCN-8s training run on one GPU, in under 8 minutes,
# into <out>/gpu-<tag>.json, .txt and .log.
#
#   scripts/gpu_check.sh [--out DIR] [--tag TAG] [--commit SHA] [...]   # on the GPU machine
#   scripts/gpu_check.sh --dry-run --out /tmp/x                          # the same path on a CPU
#   scripts/gpu_check.sh --fetch-wheels [DIR]                            # where PyPI is reachable
#
# A GPU machine may lack packages this project needs (Hydra, albumentations and what they pull)
# and have no package index. --fetch-wheels downloads them as wheels into DIR (default .whl/,
# next to this repository's files, so they travel with it); any later run that finds wheels
# there ($FCNLAB_WHEELS, default .whl) and cannot import those packages installs them into
# $FCNLAB_SITE (default /tmp/fcnlab-site) first, without an index, and puts that folder on
# PYTHONPATH.
# Every other argument goes to `python -m fcnlab.bench.gpu_check` (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

# The versions this project's tests run with; Python 3.12 is the GPU image's (its KINDS.md).
WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1 albumentations==2.0.8 albucore==0.0.24
        pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions==4.16.0 stringzilla==5.3.2 simsimd==6.5.16)
# Published as source only; pure Python, so a wheel built here installs anywhere.
SOURCE_ONLY=(antlr4-python3-runtime==4.9.3)

if [[ -n "${PYTHON:-}" ]]; then
    PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python
else
    PY=python3
fi

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    dir=${2:-.whl}
    mkdir -p "$dir"
    platforms=()
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
             manylinux2014_x86_64 manylinux1_x86_64; do
        platforms+=(--platform "$p")
    done
    "$PY" -m pip download --no-deps --only-binary=:all: --implementation cp \
        --python-version "${FCNLAB_WHEELS_PYTHON:-3.12}" "${platforms[@]}" -d "$dir" "${WHEELS[@]}"
    "$PY" -m pip wheel --no-deps -w "$dir" "${SOURCE_ONLY[@]}"
    ls -l "$dir"
    echo "wheels in $dir: keep it out of git (e.g. /.whl/ in .git/info/exclude) and carry it"
    exit 0
fi

# Looked up, not imported: importing albumentations alone costs seconds.
if ! "$PY" -c "import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ('hydra', 'omegaconf', 'albumentations')))"; then
    wheels=${FCNLAB_WHEELS:-.whl}
    if compgen -G "$wheels/*.whl" >/dev/null; then
        site=${FCNLAB_SITE:-/tmp/fcnlab-site}
        echo "[gpu-check] installing the carried wheels of $wheels/ into $site" >&2
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" "$wheels"/*.whl
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "[gpu-check] hydra/omegaconf/albumentations are missing and $wheels/ holds no" \
             "wheels: run 'scripts/gpu_check.sh --fetch-wheels' where PyPI is reachable" >&2
    fi
fi
# The repository's own package, whether or not it is installed here.
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m fcnlab.bench.gpu_check "$@"
