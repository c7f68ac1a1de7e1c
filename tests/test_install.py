"""The install entries agree: install.sh is the one path, torch is pinned there only, and the release
workflow's own shell steps (run here exactly as written in the YAML) refuse bad inputs clearly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.registry import load_models, models_by_key

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "model-release.yml"


def _steps() -> dict[str, dict]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    return {s.get("name", s.get("uses", "")): s for s in doc["jobs"]["gate"]["steps"]}


def _run_step(name: str, **env: str) -> subprocess.CompletedProcess:
    script = _steps()[name]["run"]
    return subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_every_entry_installs_through_install_sh():
    steps = _steps()
    assert steps["Install (./install.sh)"]["run"].strip() == "./install.sh"
    assert not any("pip install" in (s.get("run") or "") for s in steps.values()), "the workflow installs by itself"
    assert "./install.sh --test" in (ROOT / ".ci" / "run").read_text()
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    assert not any(isinstance(d, dict) for d in conda["dependencies"]), "a pip section would be a second install path"
    assert "./install.sh" in (ROOT / "conda.yaml").read_text()


def test_torch_is_pinned_by_install_sh_not_by_the_package():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [d for d in deps if re.match(r"torch\b", d)] == ["torch"]
    text = (ROOT / "install.sh").read_text()
    assert re.search(r"^TORCH_VERSION=\d+\.\d+\.\d+$", text, re.M)
    assert "+cpu" in text and "download.pytorch.org/whl/cpu" in text


def test_install_sh_parses_and_rejects_unknown_options():
    subprocess.run(["bash", "-n", str(ROOT / "install.sh")], check=True)
    proc = subprocess.run([str(ROOT / "install.sh"), "--bogus"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_release_inputs_are_checked_before_anything_is_installed():
    missing = _run_step("Check the inputs", CANDIDATE="sevenn-7net-0@2", BASELINE="")
    assert missing.returncode == 2 and "MATTERALIGN_BASELINE" in missing.stdout
    same = _run_step("Check the inputs", CANDIDATE="sevenn-7net-0@2", BASELINE="sevenn-7net-0@2")
    assert same.returncode == 2 and "same version" in same.stdout
    bad = _run_step("Check the inputs", CANDIDATE="sevenn-7net-0; rm -rf /", BASELINE="sevenn-7net-0@1")
    assert bad.returncode == 2 and "expected MODEL@VERSION" in bad.stdout
    ok = _run_step("Check the inputs", CANDIDATE="sevenn-7net-0@2", BASELINE="sevenn-7net-0@1")
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.parametrize("matches", [True, False])
def test_release_tag_must_match_the_models_yaml_version(matches):
    version = models_by_key(load_models(ROOT / "models.yaml"))["sevenn-7net-0"].version
    tag = f"sevenn-7net-0@{version if matches else version + '.99'}"
    proc = _run_step("Check that the candidate's version is the one in models.yaml", CANDIDATE=tag)
    if matches:
        assert proc.returncode == 0 and "matches models.yaml" in proc.stdout, proc.stderr
    else:
        assert proc.returncode != 0 and "bump 'version' in models.yaml" in proc.stderr


def test_release_without_a_server_needs_the_baseline_tag():
    proc = _run_step("Run the baseline (only without a tracking server)", BASELINE="no-such-model@0")
    assert proc.returncode == 2 and "no git tag no-such-model@0" in proc.stdout


def test_release_store_choice_fails_fast_on_an_unreachable_server(tmp_path):
    github_env = tmp_path / "github_env"
    proc = _run_step("Choose the tracking store", MLFLOW_SERVER="http://127.0.0.1:1", GITHUB_ENV=str(github_env))
    assert proc.returncode == 2 and "cannot be reached" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    local = _run_step("Choose the tracking store", MLFLOW_SERVER="", GITHUB_ENV=str(github_env),
                      GITHUB_WORKSPACE=str(tmp_path))
    assert local.returncode == 0 and "BASELINE_SOURCE=tag" in github_env.read_text()
    assert f"MLFLOW_TRACKING_URI=sqlite:///{tmp_path}/release-store/mlflow.db" in github_env.read_text()


def test_rdkit_is_pinned_and_kept_by_install_sh():
    """RDKit embeds the molecule tasks' conformers, so its version is part of the frozen board's data: the
    package pins it exactly, and install.sh adds the installed version to its constraints right after the
    package step, so no later zoo package (chemprop 2.3 pulls another RDKit) can move it."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")
    from importlib.metadata import version

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if re.match(r"rdkit\b", d)]
    assert len(pins) == 1 and re.fullmatch(r"rdkit==[\d.]+", pins[0])
    assert version("rdkit") == pins[0].split("==")[1], "this environment's RDKit is not the pinned one"
    text = (ROOT / "install.sh").read_text()
    package, keep = text.index('-e ".[${extras}]"'), text.index("print('rdkit==' + version('rdkit'))")
    zoo = text.index('"admet-ai==')
    assert package < keep < zoo and '>> "$constraints"' in text[keep:keep + 200]


def test_every_mlproject_entry_point_starts_by_installing_what_its_environment_lacks():
    """`mlflow run .` without --env-manager local runs in an environment MLflow made from conda.yaml (Python and pip
    only), so each entry point's first step installs this checkout there; it must come before the package runs."""
    doc = yaml.safe_load((ROOT / "MLproject").read_text())
    assert doc["conda_env"] == "conda.yaml"
    for name, entry in doc["entry_points"].items():
        first, _, rest = entry["command"].partition("&&")
        assert first.split() == ["PYTHON=python", "./install.sh", "--if-needed"], name
        assert rest.split()[:3] == ["python", "-m", "benchmark"], name


def test_install_if_needed_installs_into_an_interpreter_that_lacks_the_package(tmp_path):
    """A bare interpreter (a venv without pip here, so the install stops at its first pip call, harmlessly) gets
    the full install, not the 'already installed' shortcut."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    proc = subprocess.run([str(ROOT / "install.sh"), "--if-needed"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": str(tmp_path / "bare" / "bin" / "python")})
    assert proc.returncode != 0 and "already installed" not in proc.stderr
    assert "install.sh [" in proc.stderr and "torch" in proc.stderr


def test_install_if_needed_is_a_quick_no_op_where_this_checkout_is_installed():
    check = ("import benchmark, pathlib, sys; "
             "sys.exit(pathlib.Path(benchmark.__file__).resolve().parents[1] != pathlib.Path(sys.argv[1]))")
    if subprocess.run([sys.executable, "-c", check, str(ROOT)], cwd="/", timeout=60).returncode != 0:
        pytest.skip("this checkout is not the installed package here (./install.sh installs it editable)")
    proc = subprocess.run([str(ROOT / "install.sh"), "--if-needed"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0 and "is already installed" in proc.stderr and "install.sh [" not in proc.stderr
