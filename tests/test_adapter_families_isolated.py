"""The MLIP families whose packages cannot share the main environment, tested for real in their own venvs.

For each family the venv is the one the pipeline itself would use: built by `ensure_env` from the
`requirements` of a models.yaml entry, cached under ~/.cache/matteralign/envs (so CI builds each once).
Inside it, that family's tiny-random-model tests in test_adapters_hub.py run and must pass, not skip.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from benchmark.embeddings.isolated import ensure_env, env_python
from benchmark.registry import load_models, models_by_key

ROOT = Path(__file__).resolve().parents[1]
ENVS_ROOT = Path(os.environ.get("MATTERALIGN_ENVS_ROOT", Path.home() / ".cache" / "matteralign"))

FAMILIES = {  # family test keyword -> a models.yaml entry whose requirements define the venv
    "mace": "mace-mp-0-inv",
    "orb": "orb-v3-cons-omat",
    "mattersim": "mattersim-5m",
    "fairchem": "uma-m",
}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_adapter_in_its_isolated_env(family, tmp_path):
    if os.environ.get("MATTERALIGN_SKIP_FAMILY_ENVS"):
        pytest.skip("MATTERALIGN_SKIP_FAMILY_ENVS is set")
    entry = models_by_key(load_models())[FAMILIES[family]]
    env = ensure_env(entry.requirements, root=ENVS_ROOT, timeout=1800)
    proc = subprocess.run(
        [str(env_python(env)), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/test_adapters_hub.py", "-k", family],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "MATTERALIGN_CACHE": str(tmp_path)},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", out)) else 0
    assert passed >= 2 and "skipped" not in out.splitlines()[-1], out[-2000:]
