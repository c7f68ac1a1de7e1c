"""The MLIP families whose packages cannot share the main environment, tested for real in their own venvs.

For each family the venv is the one the pipeline itself would use: built by `ensure_env` from the
`requirements` of a models.yaml entry, cached under ~/.cache/matteralign/envs (so CI builds each once).
Inside it, that family's tiny-random-model tests in test_adapters_hub.py run and must pass, not skip.

A cached venv can hide a missing build step, so the last two tests build from scratch on every run, under
tmp_path, from inside a fresh virtualenv (the common way to install the tool): its own packages, not only
the base interpreter's, must be visible in the isolated venv. MatterSim is the family used there: its
``--no-deps`` requirement is the case that broke, and its venv is small (4.4 MB, ~16 s to build here).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmark.embeddings.isolated import ensure_env, env_python, parent_site_dirs
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


def _outer_virtualenv(tmp_path: Path) -> Path:
    """A fresh virtualenv that reaches this environment's packages through a .pth file (no copies), plus a
    probe module that exists only in the virtualenv's own site-packages, like a user's `pip install`."""
    outer = tmp_path / "user-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(outer)], check=True, timeout=120)
    site_dir = Path(subprocess.run(
        [str(env_python(outer)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    (site_dir / "parent.pth").write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in parent_site_dirs()))
    (site_dir / "matteralign_probe_only_in_user_venv.py").write_text("WHERE = 'user venv'\n")
    return outer


def _build_in(outer: Path, requirements: list[str], root: Path) -> tuple[Path, str]:
    """Build the isolated venv with the outer virtualenv's Python; (venv, what the venv's Python imports)."""
    script = textwrap.dedent(f"""
        import subprocess, sys
        from benchmark.embeddings.isolated import ensure_env, env_python
        env = ensure_env({requirements!r}, root={str(root)!r}, timeout=1200)
        probe = "import matteralign_probe_only_in_user_venv as p, ase, benchmark, sys; print(p.WHERE, sys.prefix)"
        out = subprocess.run([str(env_python(env)), "-c", probe], capture_output=True, text=True)
        print(env)
        print(out.stdout.strip() or out.stderr.strip().splitlines()[-1])
    """)
    proc = subprocess.run([str(env_python(outer)), "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    env, seen = proc.stdout.strip().splitlines()[-2:]
    return Path(env), seen


def test_isolated_env_sees_the_virtualenv_it_is_built_from(tmp_path):
    outer = _outer_virtualenv(tmp_path)
    env, seen = _build_in(outer, [], tmp_path / "fresh-root")
    assert env.parent == (tmp_path / "fresh-root" / "envs").resolve()
    assert seen == f"user venv {env}", seen  # the probe, ase and benchmark import, inside the isolated venv


@pytest.mark.slow
def test_no_deps_family_built_from_scratch_inside_a_virtualenv(tmp_path):
    """MatterSim's venv, built fresh (never from a cache) from a user's virtualenv, runs its adapter tests."""
    entry = models_by_key(load_models())[FAMILIES["mattersim"]]
    assert any(r.startswith("--no-deps ") for r in entry.requirements), "pick the family with a --no-deps pin"
    outer = _outer_virtualenv(tmp_path)
    env, seen = _build_in(outer, list(entry.requirements), tmp_path / "fresh-root")
    assert seen == f"user venv {env}", seen
    proc = subprocess.run(
        [str(env_python(env)), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_adapters_hub.py",
         "-k", "mattersim"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "MATTERALIGN_CACHE": str(tmp_path)},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"\b2 passed", out) and "skipped" not in out.splitlines()[-1], out[-2000:]
