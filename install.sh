#!/usr/bin/env bash
# Install matteralign and its offline model zoo into the current Python (3.10+).
#   ./install.sh          the package, the model zoo and the data packages
#   ./install.sh --test   the same plus the test tools (pytest, Chromium for the page test)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
# Pinned first: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 resolves to the CPU wheel here.
"$PY" -m pip install --quiet "torch==2.13.0"
extras="zoo"
[ "${1:-}" = "--test" ] && extras="zoo,test"
"$PY" -m pip install --quiet -e ".[${extras}]"
# matcalc ships the MatPES element references used by tasks/crystals.yaml; only its data files are read
# and its numpy<2 pin would break the environment, so it is installed without dependencies.
"$PY" -m pip install --quiet --no-deps "matcalc==0.3.3"
# ANI-1x: torchani 2.9 fetches its weights from a hub at run time; the 2.2.4 wheel ships the ANI-1x
# ensemble files. Unpacked beside (not over) the installed torchani; models.yaml points at this folder.
ani_dir="$HOME/.cache/matteralign/torchani-2.2.4"
[ -d "$ani_dir/torchani/resources/ani-1x_8x" ] || \
    "$PY" -m pip install --quiet --no-deps --no-compile --target "$ani_dir" "torchani==2.2.4"
[ "${1:-}" = "--test" ] || exit 0
# Test-only system packages: Chromium renders the leaderboard page, PostgreSQL backs a real MLflow server.
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    need=""
    [ -x /usr/bin/chromium ] || need="$need chromium"
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql"
    if [ -n "$need" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null) \
            || echo "install.sh: could not install$need; the tests that need them will skip and say so" >&2
    fi
fi
# DADApy is the independent reference for TwoNN and information imbalance. Its 0.3.4 sdist does not build
# against numpy 2; patch the generated C the way numpy 2 requires and build it without its numpy<2 pin.
if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('dadapy') is None)"; then
    tmp=$(mktemp -d)
    (
        cd "$tmp"
        "$PY" -m pip download --quiet --no-deps --no-build-isolation "dadapy==0.3.4" -d .
        tar xzf dadapy-0.3.4.tar.gz && cd dadapy-0.3.4
        sed -i 's/__pyx_v_d->subarray->shape/PyDataType_SUBARRAY(__pyx_v_d)->shape/g' dadapy/_cython/*.c
        sed -i 's/flagsfloat_floatTYPE/flagsdoublefloatTYPE/' dadapy/_cython/cython_grads.c
        sed -i 's/"numpy<2.0", //; s/"numpy<2.0"/"numpy"/' pyproject.toml
        CFLAGS="-DCYTHON_COMPRESS_STRINGS=0" "$PY" -m pip install --quiet --no-build-isolation --no-deps .
    ) || echo "install.sh: dadapy did not build; the dadapy reference tests will skip and say so" >&2
    rm -rf "$tmp"
fi
