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
if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "install.sh: chromium not installed; the page screenshot test will be skipped" >&2
fi
