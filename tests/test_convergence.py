"""The convergence family end to end at toy size: Lightning training with MLflow logging, the checkpoint
through `SchNetAdapter`, invariances, determinism, and the random-init null model."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pytest

from benchmark.convergence import train
from benchmark.errors import ModelUnavailable
from benchmark.models.base import file_digest
from benchmark.models.schnet_adapter import SchNetAdapter
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Sample

TRAIN, TEST, EPOCHS, HIDDEN, SEED = 40, 20, 2, 16, 3


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    previous = mlflow.get_tracking_uri()
    store = tmp_path_factory.mktemp("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    yield store
    mlflow.set_tracking_uri(previous)


def tiny_experiment(out_dir, store):
    return train.run_experiment(
        [TRAIN], [EPOCHS], out_dir, seed=SEED, test_size=TEST, hidden=HIDDEN,
        artifact_location=(store / "artifacts").as_uri(),
    )


@pytest.fixture(scope="module")
def trained(tracking, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv")
    (record,) = tiny_experiment(out, tracking)
    return record


@pytest.fixture(scope="module")
def test_samples():
    test, _ = train.split(TEST, TRAIN, SEED)
    return test


def adapter_for(record, **options) -> SchNetAdapter:
    (entry,) = train.models_yaml_entries([record])
    entry["options"] = options
    return SchNetAdapter(ModelEntry(**entry))


def test_record_and_mlflow_run(trained, tracking):
    assert trained["key"] == f"schnet-n{TRAIN}-e{EPOCHS}-s{SEED}"
    assert trained["sha256"] == file_digest(trained["path"])
    assert 0 < trained["test_mae_ev_per_atom"] < 1.0
    run = mlflow.MlflowClient().get_run(trained["run_id"])
    assert run.data.tags["matteralign.kind"] == "convergence-train"
    assert run.data.params["epochs"] == str(EPOCHS)  # logged by Lightning autologging
    assert run.data.metrics["test_mae_ev_per_atom"] == pytest.approx(trained["test_mae_ev_per_atom"])
    assert "train_loss" in run.data.metrics
    assert (tracking / "artifacts").is_dir()  # artifacts stay inside the temporary store


def test_adapter_round_trip(trained, test_samples):
    adapter = adapter_for(trained)
    assert adapter.unavailable_reason() is None
    kept = [s for s in test_samples if adapter.unsupported(s) is None]
    out = adapter.embed(kept)
    assert out.features.shape == (len(kept), HIDDEN)
    assert len(kept) == trained["n_test_evaluated"]
    atoms = np.array([s.n_atoms for s in kept])
    mae = np.mean(np.abs(out.energies - np.array([s.energy for s in kept])) / atoms)
    assert mae == pytest.approx(trained["test_mae_ev_per_atom"], rel=1e-9)
    neon = Sample(id="ne", numbers=np.array([10, 1]), positions=np.array([[0.0, 0, 0], [1.0, 0, 0]]))
    assert "absent from the training set" in adapter.unsupported(neon)


def test_features_invariant_to_rotation_translation_permutation(trained, test_samples):
    adapter = adapter_for(trained)
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = []
    for s in test_samples[:5]:
        order = rng.permutation(s.n_atoms)
        positions = s.positions[order] @ rotation.T + rng.normal(size=3) * 5.0
        moved.append(dataclasses.replace(s, numbers=s.numbers[order], positions=positions))
    a, b = adapter.embed(test_samples[:5]), adapter.embed(moved)
    np.testing.assert_allclose(a.features, b.features, atol=1e-5)
    np.testing.assert_allclose(a.energies, b.energies, atol=1e-4)
    assert np.ptp(a.features, axis=0).max() > 1e-3  # the structures are told apart


def test_same_seed_same_checkpoint(trained, tracking, tmp_path):
    (again,) = tiny_experiment(tmp_path, tracking)
    assert again["test_mae_ev_per_atom"] == pytest.approx(trained["test_mae_ev_per_atom"], abs=1e-6)
    assert again["sha256"] == trained["sha256"]


def test_random_init_null_model(trained, test_samples):
    trained_adapter = adapter_for(trained)
    null = adapter_for(trained, random_init=True, seed=1)
    null_again = adapter_for(trained, random_init=True, seed=1)
    other_seed = adapter_for(trained, random_init=True, seed=2)
    f_trained = trained_adapter.embed(test_samples).features
    f_null = null.embed(test_samples).features
    assert f_null.shape == f_trained.shape
    assert not np.allclose(f_null, f_trained, atol=1e-3)
    np.testing.assert_array_equal(f_null, null_again.embed(test_samples).features)
    assert not np.allclose(f_null, other_seed.embed(test_samples).features, atol=1e-3)
    digests = {a.checkpoint_digest() for a in (trained_adapter, null, other_seed)}
    assert len(digests) == 3


def test_missing_checkpoint_names_path_and_command(trained, tmp_path):
    record = dict(trained, path=str(tmp_path / "schnet-n300-e7.pt"))
    adapter = adapter_for(record)
    with pytest.raises(ModelUnavailable) as err:
        adapter.load()
    message = str(err.value)
    assert str(tmp_path / "schnet-n300-e7.pt") in message
    assert "matteralign train-convergence --train-sizes 300 --epochs 7 --seed 0" in message


def test_random_init_without_checkpoint(test_samples):
    entry = ModelEntry(
        key="schnet-random", name="random SchNet", family="convergence-schnet", modality="atoms",
        domain="molecules", adapter=train.ADAPTER, options={"random_init": True, "seed": 0, "hidden": 8},
    )
    adapter = SchNetAdapter(entry)
    assert adapter.unavailable_reason() is None
    out = adapter.embed(test_samples[:4])
    assert out.features.shape == (4, 8) and out.energies is None
    assert np.isfinite(out.features).all()
