"""Shared test setup: every test writes its cache and MLflow store under a temporary folder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's cache or ./mlflow.db."""
    root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("MATTERALIGN_CACHE", str(root))
    store = tmp_path_factory.mktemp("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    monkeypatch.setenv("MATTERALIGN_BOARD", "none")  # the repository's frozen board is not the tests' board
    yield


@pytest.fixture
def make_registry(tmp_path):
    """Factory writing a models.yaml and a tasks folder under tmp_path; returns (models file, tasks folder).

    `tasks` maps task name to its YAML text; both texts are dedented, so indented literals work.
    """
    import textwrap

    def make(models_text: str, tasks: dict[str, str]) -> tuple:
        models = tmp_path / "models.yaml"
        models.write_text(textwrap.dedent(models_text))
        folder = tmp_path / "tasks"
        folder.mkdir()
        for name, text in tasks.items():
            (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
        return models, folder

    return make
