"""Packaging: the registries ship inside the wheel, the models file is found from the current directory
first, repeated YAML keys are refused, and a wheel installed outside the clone runs."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmark.embeddings.isolated import env_python, parent_site_dirs
from benchmark.errors import ConfigError
from benchmark.registry import loader

ROOT = Path(__file__).resolve().parents[1]


# --- repeated keys ----------------------------------------------------------------------------------------
def test_a_key_repeated_inside_one_entry_is_an_error_naming_file_and_key(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("reference: {model: a}\nmodels:\n  - key: a\n    name: A\n    batch_size: 8\n    batch_size: 16\n")
    with pytest.raises(ConfigError) as err:
        loader.load_models(path)
    msg = str(err.value)
    assert str(path) in msg and "'batch_size'" in msg and "lines 5 and 6" in msg


def test_a_repeated_top_level_key_in_a_task_file_is_an_error(tmp_path):
    path = tmp_path / "qm9.yaml"
    path.write_text("name: qm9\nn_samples: 10\nn_samples: 20\n")
    with pytest.raises(ConfigError, match=r"qm9\.yaml: key 'n_samples' is repeated"):
        loader.load_task(path)


def test_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("base: &b {k: 1, j: 2}\nentry:\n  <<: *b\n  k: 3\n")
    assert loader._read_yaml(path)["entry"] == {"k": 3, "j": 2}


def test_the_real_registries_have_no_repeated_keys():
    loader.load_models(loader.DEFAULT_MODELS)
    assert loader.load_tasks(loader.DEFAULT_TASKS_DIR)


# --- where the models file comes from ------------------------------------------------------------------------
def test_models_file_in_the_current_directory_wins_and_is_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    assert loader.resolve_models_file() == loader.DEFAULT_MODELS.resolve()
    (tmp_path / "models.yaml").write_text(loader.DEFAULT_MODELS.read_text())
    with caplog.at_level(logging.INFO, logger="benchmark.registry.loader"):
        chosen = loader.resolve_models_file()
    assert chosen == (tmp_path / "models.yaml").resolve()
    assert f"models file: {chosen} (found in the current directory)" in caplog.text
    assert loader.resolve_models_file(loader.DEFAULT_MODELS) == loader.DEFAULT_MODELS.resolve()


def test_without_a_checkout_the_packaged_copies_are_used(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "PROJECT_ROOT", tmp_path)  # e.g. site-packages: no pyproject.toml, no models.yaml
    assert loader._package_file("models.yaml") == loader.PACKAGED / "models.yaml"
    assert loader._package_file("tasks") == loader.PACKAGED / "tasks"


# --- a real wheel, outside the clone --------------------------------------------------------------------------
def _source_copy(dest: Path) -> Path:
    """The files git would ship (tracked + untracked, not ignored), so the build never writes into the clone."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.mark.slow
def test_a_wheel_installed_outside_the_clone_lists_models_and_runs(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to know which files a release ships")
    src = _source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(dist), str(src)], check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("matteralign-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_tasks = {n.removeprefix("benchmark/_defaults/tasks/") for n in names if n.startswith("benchmark/_defaults/tasks/")}
    assert "benchmark/_defaults/models.yaml" in names
    assert {p.name for p in (ROOT / "tasks").glob("*.yaml")} <= shipped_tasks
    assert any(n.endswith("/licenses/LICENSE") for n in names)
    assert zipfile.ZipFile(wheel).read("benchmark/_defaults/models.yaml") == (ROOT / "models.yaml").read_bytes()

    # A venv that borrows the installed dependencies (no GB downloads) and holds only the wheel itself.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = Path(subprocess.run([str(env_python(venv)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "deps.pth").write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in parent_site_dirs()))
    subprocess.run([str(env_python(venv)), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)

    work = tmp_path / "work"  # no models.yaml, no tasks/: only the wheel's copies can be found
    work.mkdir()
    env = {**os.environ, "MATTERALIGN_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI":
           f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": ""}
    where = subprocess.run(
        [str(env_python(venv)), "-c", "import benchmark.registry.loader as l; print(l.__file__); print(l.resolve_models_file()); "
         "print(l.DEFAULT_TASKS_DIR)"], cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(p.startswith(str(purelib)) for p in where), where  # the wheel's benchmark, not the clone's
    cli = venv / "bin" / "matteralign"
    models = subprocess.run([str(cli), "models"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert models.returncode == 0, models.stderr[-3000:]
    assert "morgan-fp-r2-2048" in models.stdout
    run = subprocess.run([str(cli), "run", "--models", "morgan-fp-r2-2048,structural-rdf", "--tasks", "qm9",
                          "--n-samples", "30", "--reference", "structural-rdf", "--no-progress", "--leaderboard-dir", str(tmp_path / "board")],
                         cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert (tmp_path / "cache" / "embeddings").is_dir()
    assert not (work / "mlflow.db").exists()
