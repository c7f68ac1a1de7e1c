"""`matteralign models`: an isolated entry whose environment exists is runnable only when its weights are."""

from __future__ import annotations

import pytest

from benchmark.cli import models as cli_models
from benchmark.errors import ModelUnavailable
from benchmark.registry.loader import load_models


def _uma():
    return next(e for e in load_models(None).models if e.key == "uma-m")


@pytest.fixture
def env_built(monkeypatch):
    import benchmark.embeddings.isolated as iso

    monkeypatch.setattr(iso, "env_ready", lambda *a, **k: True)


def test_built_env_without_importable_package_is_not_called_runnable(env_built, monkeypatch):
    from benchmark.models.fairchem_adapter import FairchemAdapter

    def no_package(self):
        raise ModuleNotFoundError("No module named 'fairchem'")

    monkeypatch.setattr(FairchemAdapter, "weights_path", no_package)
    ok, why = cli_models.availability(_uma())
    assert not ok and "cannot be confirmed" in why and "--models uma-m" in why


def test_built_env_with_missing_weights_says_so(env_built, monkeypatch):
    from benchmark.models.fairchem_adapter import FairchemAdapter

    def missing(self):
        raise ModelUnavailable("weights uma-m-1p1.pt not found")

    monkeypatch.setattr(FairchemAdapter, "weights_path", missing)
    ok, why = cli_models.availability(_uma())
    assert not ok and "uma-m-1p1.pt" in why
