"""Adapters whose weights come from a hub or disk, exercised on tiny random-initialised models of the same
architecture, loaded through the adapters' real loading paths (a checkpoint file/dir, or the hub cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import ConfigError, ModelUnavailable
try:
    from tests import tiny_models as tm
except ImportError:  # tests/ is not a package: pytest puts this folder itself on sys.path
    import tiny_models as tm

HF = "benchmark.models.hf_adapter:HFAdapter"


# --- transformers: SMILES LMs, LLMs, ESM2 ---------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    root = tmp_path_factory.mktemp("hf")
    return {name: getattr(tm, name)(root / name) for name in ("bert", "gpt2", "qwen3", "esm2")}


def _hf(path: Path | str, modality: str = "smiles", **kw):
    from benchmark.models.hf_adapter import HFAdapter

    adapter = HFAdapter(tm.entry("tiny", HF, modality, str(path), **kw))
    adapter.load()
    return adapter


@pytest.mark.parametrize("name, modality", [("bert", "smiles"), ("gpt2", "smiles"), ("qwen3", "text"),
                                            ("esm2", "protein")])
def test_hf_shapes_determinism_and_batch_independence(hf_dirs, name, modality):
    samples = tm.proteins() if modality == "protein" else tm.molecules()
    adapter = _hf(hf_dirs[name], modality)
    out = adapter.embed(samples)
    assert out.features.shape == (len(samples), tm.HIDDEN) and out.energies is None
    assert np.isfinite(out.features).all()
    np.testing.assert_array_equal(out.features, _hf(hf_dirs[name], modality).embed(samples).features)
    # padding must not leak into the pooled vector: each sample alone gives the same features as in the batch
    alone = np.concatenate([adapter.embed([s]).features for s in samples])
    np.testing.assert_allclose(alone, out.features, rtol=1e-4, atol=1e-5)
    assert len({tuple(np.round(f, 6)) for f in out.features}) == len(samples)


def test_hf_mean_pool_excludes_special_and_padding_tokens(hf_dirs):
    import torch

    adapter = _hf(hf_dirs["bert"])
    ethanol = tm.molecules()[2]
    enc = adapter.tokenizer(["CCO"], return_tensors="pt")
    with torch.no_grad():
        hidden = adapter.model(**enc).last_hidden_state[0]
    expected = hidden[1:-1].mean(0).numpy()  # drop [CLS] and [SEP]
    np.testing.assert_allclose(adapter.embed([ethanol, tm.molecules()[3]]).features[0], expected, rtol=1e-5, atol=1e-6)
    with_special = _hf(hf_dirs["bert"], options={"include_special_tokens": True}).embed([ethanol]).features[0]
    np.testing.assert_allclose(with_special, hidden.mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_hf_last_token_pooling_and_layer_choice(hf_dirs):
    import torch

    samples = tm.molecules()
    adapter = _hf(hf_dirs["qwen3"], "text", pooling="last_token")
    enc = adapter.tokenizer([samples[2].text], return_tensors="pt")
    with torch.no_grad():
        out = adapter.model(**enc, output_hidden_states=True)
    np.testing.assert_allclose(adapter.embed(samples).features[2], out.last_hidden_state[0, -1].numpy(),
                               rtol=1e-5, atol=1e-6)
    first = _hf(hf_dirs["qwen3"], "text", layer="1", pooling="last_token").embed(samples).features[2]
    np.testing.assert_allclose(first, out.hidden_states[1][0, -1].numpy(), rtol=1e-5, atol=1e-6)


def test_hf_prompt_template_is_applied_and_changes_features(hf_dirs):
    samples = tm.molecules()
    plain = _hf(hf_dirs["qwen3"], "smiles")
    prompted = _hf(hf_dirs["qwen3"], "smiles", options={"prompt": "The molecule with SMILES {smiles}"})
    assert prompted.texts(samples[2:3]) == ["The molecule with SMILES CCO"]
    assert not np.allclose(plain.embed(samples).features, prompted.embed(samples).features)
    with pytest.raises(ConfigError, match="prompt"):
        _hf(hf_dirs["qwen3"], "smiles", options={"prompt": "The molecule {formula}"})


def test_hf_unsupported_samples(hf_dirs):
    from benchmark.models.hf_adapter import HFAdapter
    from benchmark.structures import Sample

    esm = HFAdapter(tm.entry("esm", HF, "protein", str(hf_dirs["esm2"])))
    assert esm.unsupported(tm.molecules()[0]) is not None
    assert esm.unsupported(tm.proteins()[0]) is None
    lm = HFAdapter(tm.entry("lm", HF, "smiles", str(hf_dirs["bert"])))
    assert lm.unsupported(Sample("x", sequence="MKT")) is not None


def test_hf_missing_directory_names_the_path(tmp_path):
    from benchmark.models.hf_adapter import HFAdapter

    missing = tmp_path / "qwen3-0.6b"
    adapter = HFAdapter(tm.entry("lm", HF, "text", str(missing)))
    assert str(missing) in adapter.unavailable_reason()
    with pytest.raises(ModelUnavailable, match="config.json"):
        adapter.load()


def test_hf_hub_id_resolves_only_from_the_local_cache(hf_dirs, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    from benchmark.models.hf_adapter import HFAdapter

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    absent = HFAdapter(tm.entry("lm", HF, "smiles", "DeepChem/ChemBERTa-77M-MLM"))
    reason = absent.unavailable_reason()
    assert "DeepChem/ChemBERTa-77M-MLM" in reason and "hf download" in reason
    tm.as_hub_cache(hf_dirs["bert"], tmp_path, "tiny-org/tiny-bert")
    from_hub = _hf("tiny-org/tiny-bert")
    np.testing.assert_array_equal(from_hub.embed(tm.molecules()).features,
                                  _hf(hf_dirs["bert"]).embed(tm.molecules()).features)
    assert from_hub.checkpoint_digest() == _hf(hf_dirs["bert"]).checkpoint_digest()


def test_hf_checkpoint_digest_follows_the_weights(hf_dirs, tmp_path):
    from benchmark.models.hf_adapter import HFAdapter

    other = tm.gpt2(tmp_path / "gpt2b")
    (other / "config.json").write_text((other / "config.json").read_text().replace('"n_layer": 2', '"n_layer": 1'))
    digests = {HFAdapter(tm.entry("lm", HF, "smiles", str(p))).checkpoint_digest() for p in (hf_dirs["gpt2"], other)}
    assert len(digests) == 2


def test_hf_wrong_architecture_checkpoint_is_refused(hf_dirs, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(hf_dirs["bert"], broken)
    cfg = (broken / "config.json").read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 3')
    (broken / "config.json").write_text(cfg)
    with pytest.raises(ModelUnavailable, match="does not hold weights"):
        _hf(broken)


def test_hf_selfies_prompt(hf_dirs):
    pytest.importorskip("selfies")
    adapter = _hf(hf_dirs["gpt2"], options={"prompt": "{selfies}"})
    assert adapter.texts(tm.molecules()[2:3]) == ["[C][C][O]"]
    assert adapter.embed(tm.molecules()).features.shape == (4, tm.HIDDEN)


# --- isolated environments -------------------------------------------------------------------------------
FAKE = "tests.tiny_models:FakeAtomsAdapter"


def _models_file(path: Path, entries) -> Path:
    import yaml

    data = {"reference": {"model": entries[0].key}, "models": [e.model_dump(exclude_defaults=True) for e in entries]}
    path.write_text(yaml.safe_dump(data))
    return path


def _dataset():
    from benchmark.structures import Dataset, Sample

    mols = tm.molecules()[:3]
    rng = np.random.default_rng(0)
    shaken = [Sample(m.id + "-x", m.numbers, m.positions + rng.normal(0, 0.01, m.positions.shape),
                     info={"source": "test", "weights": np.arange(3)}) for m in mols]
    return Dataset("tiny", "1", mols + shaken)


@pytest.fixture(scope="module")
def iso_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("iso-cache")


def test_isolated_extraction_equals_in_process_bit_for_bit(iso_root, tmp_path):
    from benchmark.embeddings.extract import extract
    from benchmark.embeddings.isolated import env_hash, extract_isolated

    entry = tm.entry("fake-iso", FAKE, "atoms", None, environment="isolated", batch_size=2)
    models = _models_file(tmp_path / "models.yaml", [entry])
    dataset = _dataset()
    got = extract_isolated(entry, dataset, models, iso_root, timeout=120)
    local = extract(tm.FakeAtomsAdapter(entry), dataset, tmp_path / "local", progress=False)
    assert not got.reused and got.shards_computed == 1
    assert got.embeddings.ids == dataset.ids
    assert got.embeddings.features.dtype == local.embeddings.features.dtype
    assert got.embeddings.features.tobytes() == local.embeddings.features.tobytes()
    assert got.embeddings.energies.tobytes() == local.embeddings.energies.tobytes()
    assert got.embeddings.key == local.embeddings.key
    again = extract_isolated(entry, dataset, models, iso_root, timeout=120)
    assert again.reused and again.embeddings.features.tobytes() == got.embeddings.features.tobytes()
    envs = sorted(p.name for p in (iso_root / "envs").iterdir())
    assert envs == [env_hash([])]
    assert not any((iso_root / "isolated-runs").iterdir())


def test_isolated_worker_errors_carry_stderr_and_unavailability(iso_root, tmp_path):
    from benchmark.embeddings.isolated import IsolatedEnvError, extract_isolated

    failing = tm.entry("fake-fail", FAKE, "atoms", None, environment="isolated", options={"fail": True})
    missing = tm.entry("fake-missing", FAKE, "atoms", None, environment="isolated",
                       options={"weights": str(tmp_path / "absent.pt")})
    slow = tm.entry("fake-slow", FAKE, "atoms", None, environment="isolated", options={"sleep": 30})
    models = _models_file(tmp_path / "models.yaml", [failing, missing, slow])
    with pytest.raises(IsolatedEnvError, match="boom from the fake adapter"):
        extract_isolated(failing, _dataset(), models, iso_root, timeout=120)
    with pytest.raises(ModelUnavailable, match="absent.pt"):
        extract_isolated(missing, _dataset(), models, iso_root, timeout=120)
    with pytest.raises(IsolatedEnvError, match="timed out"):
        extract_isolated(slow, _dataset(), models, iso_root, timeout=3)
    changed = tm.entry("fake-fail", FAKE, "atoms", None, environment="isolated", options={"fail": False})
    with pytest.raises(IsolatedEnvError, match="changed"):
        extract_isolated(changed, _dataset(), models, iso_root, timeout=120)


def test_failed_env_build_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    from benchmark.embeddings.isolated import IsolatedEnvError, ensure_env, env_hash

    for reqs, what in (([str(tmp_path / "no-such-project-dir")], "installing"),
                       ([f"--no-deps {tmp_path / 'no-such-project-dir'}"], "without dependencies")):
        with pytest.raises(IsolatedEnvError, match=what):
            ensure_env(reqs, root=tmp_path, timeout=120)
        assert list((tmp_path / "envs").iterdir()) == []
    stale = tmp_path / "envs" / f".{env_hash([])}.tmp-999999999"
    stale.mkdir()
    monkeypatch.chdir(tmp_path)
    env = ensure_env([], root=Path("."), timeout=120)
    assert not stale.exists() and env == tmp_path / "envs" / env_hash([])


def test_dataset_file_round_trip_is_exact(tmp_path):
    from benchmark.embeddings.isolated import read_dataset, write_dataset

    ds = _dataset()
    ds.samples.append(tm.molecules()[3])
    ds.samples.append(tm.proteins()[0])
    from benchmark.structures import Sample

    # a protein chain with its backbone and residue numbers (the proteins task's samples): they used to be lost
    ds.samples.append(Sample(id="chain", sequence="AG", backbone=np.arange(24, dtype=np.float32).reshape(2, 4, 3),
                             residue_ids=np.array([1, 3])))
    write_dataset(ds, tmp_path / "d.npz")
    back = read_dataset(tmp_path / "d.npz")
    assert back.digest == ds.digest and back.ids == ds.ids
    for a, b in zip(ds.samples, back.samples):
        for name in ("numbers", "positions", "backbone", "residue_ids"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or (x.dtype == y.dtype and x.tobytes() == y.tobytes())
    assert back.samples[3].info == {"source": "test", "weights": [0, 1, 2]}


# --- machine-learned interatomic potentials -------------------------------------------------------------
def assert_invariant(adapter, samples, atol=1e-6, rotate=True):
    """Features (and energies) unchanged by rotation, translation and atom permutation."""
    base = adapter.embed(samples)
    moved = adapter.embed([tm.transformed(s, rotate=rotate) for s in samples])
    np.testing.assert_allclose(moved.features, base.features, atol=atol, rtol=1e-5)
    if base.energies is not None:
        np.testing.assert_allclose(moved.energies, base.energies, atol=atol * 10, rtol=1e-6)
    return base


MACE = "benchmark.models.mace_adapter:MACEAdapter"


@pytest.fixture(scope="module")
def mace_file(tmp_path_factory) -> Path:
    pytest.importorskip("mace", reason="mace-torch not installed (see docs/real-weights.md)")
    return tm.mace(tmp_path_factory.mktemp("mace"))


def _mace(path, **kw):
    from benchmark.models.mace_adapter import MACEAdapter

    adapter = MACEAdapter(tm.entry("mace", MACE, "atoms", str(path), **kw))
    adapter.load()
    return adapter


def test_mace_invariant_features(mace_file):
    samples = tm.molecules()[:3] + [tm.crystal()]
    last = _mace(mace_file)
    out = assert_invariant(last, samples)
    assert out.features.shape == (4, 8) and out.energies.shape == (4,)
    np.testing.assert_array_equal(out.features, _mace(mace_file).embed(samples).features)
    both = assert_invariant(_mace(mace_file, layer="all"), samples)
    assert both.features.shape == (4, 16)
    np.testing.assert_allclose(both.features[:, 8:], out.features, rtol=1e-10)
    alone = np.concatenate([last.embed([s]).features for s in samples])
    np.testing.assert_allclose(alone, out.features, rtol=1e-9, atol=1e-12)


def test_mace_equivariant_features_rotate_with_the_structure(mace_file):
    samples = tm.molecules()[1:3]
    adapter = _mace(mace_file, layer="0", options={"features": "equivariant"})
    base = adapter.embed(samples).features
    moved = adapter.embed([tm.transformed(s) for s in samples]).features
    assert base.shape == (2, 8 + 8 * 3)
    np.testing.assert_allclose(moved[:, :8], base[:, :8], atol=1e-8)  # scalar channels
    vec = lambda f: f[:, 8:].reshape(len(f), 8, 3)  # noqa: E731 - 8x1o, channel-major
    np.testing.assert_allclose(np.linalg.norm(vec(moved), axis=2), np.linalg.norm(vec(base), axis=2), atol=1e-8)
    assert not np.allclose(vec(moved), vec(base), atol=1e-6)


def test_mace_missing_weights_and_unknown_elements(mace_file, tmp_path, monkeypatch):
    from benchmark.models.mace_adapter import MACEAdapter
    from benchmark.structures import Sample

    absent = tmp_path / "mace-mp-0-medium.model"
    assert str(absent) in MACEAdapter(tm.entry("m", MACE, "atoms", str(absent))).unavailable_reason()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    reason = MACEAdapter(tm.entry("m", MACE, "atoms", "mace-mp:medium")).unavailable_reason()
    assert str(tmp_path / "mace") in reason and "https://" in reason
    silicon = Sample("si", np.array([14, 14]), np.array([[0, 0, 0], [1.2, 1.2, 1.2]]))
    assert "14" in _mace(mace_file).unsupported(silicon)


FAIRCHEM = "benchmark.models.fairchem_adapter:FairchemAdapter"


@pytest.fixture(scope="module")
def uma_file(tmp_path_factory) -> Path:
    pytest.importorskip("fairchem.core", reason="fairchem-core not installed (about 100 s and 1 GB: isolated env)")
    return tm.uma(tmp_path_factory.mktemp("uma"))


def _fairchem(path, **options):
    from benchmark.models.fairchem_adapter import FairchemAdapter

    adapter = FairchemAdapter(tm.entry("uma", FAIRCHEM, "atoms", str(path), options=options))
    adapter.load()
    return adapter


@pytest.mark.slow
def test_fairchem_backbone_features_are_invariant(uma_file):
    samples = tm.molecules()[:3] + [tm.crystal()]
    omat = _fairchem(uma_file)
    out = assert_invariant(omat, samples, atol=1e-4)
    assert out.features.shape == (4, 8) and out.energies.shape == (4,)
    # fairchem's float32 CPU kernels are not bitwise reproducible from call to call (~1e-7)
    np.testing.assert_allclose(out.features, omat.embed(samples).features, rtol=1e-5, atol=1e-6)
    alone = np.concatenate([omat.embed([s]).features for s in samples])
    np.testing.assert_allclose(alone, out.features, rtol=1e-4, atol=1e-5)
    omol = _fairchem(uma_file, task="omol").embed(samples)
    assert not np.allclose(omol.features, out.features)


def test_fairchem_missing_weights_name_the_file(tmp_path, monkeypatch):
    pytest.importorskip("fairchem.core")
    from benchmark.models.fairchem_adapter import FairchemAdapter

    absent = tmp_path / "uma-m-1p1.pt"
    assert str(absent) in FairchemAdapter(tm.entry("u", FAIRCHEM, "atoms", str(absent))).unavailable_reason()
    monkeypatch.setenv("FAIRCHEM_CACHE_DIR", str(tmp_path))
    reason = FairchemAdapter(tm.entry("u", FAIRCHEM, "atoms", "uma-m-1p1")).unavailable_reason()
    assert "uma-m-1p1.pt" in reason and str(tmp_path) in reason and "licence" in reason


ORB = "benchmark.models.orb_adapter:OrbAdapter"


@pytest.fixture(scope="module")
def orb_files(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("orb_models", reason="orb-models not installed")
    root = tmp_path_factory.mktemp("orb")
    return {kind: tm.orb(root, conservative=kind == "conservative") for kind in ("direct", "conservative")}


def _orb(path, kind):
    from benchmark.models.orb_adapter import OrbAdapter

    options = {"architecture": f"orb_v3_{kind}_architecture", "architecture_kwargs": tm.ORB_KWARGS,
               "radius": 6.0, "max_num_neighbors": 20}
    adapter = OrbAdapter(tm.entry("orb", ORB, "atoms", str(path), options=options))
    adapter.load()
    return adapter


@pytest.mark.parametrize("kind", ["direct", "conservative"])
def test_orb_node_features(orb_files, kind):
    samples = tm.molecules()[:3] + [tm.crystal()]
    adapter = _orb(orb_files[kind], kind)
    # Orb is not equivariant by construction: random weights are invariant to translation and order only
    out = assert_invariant(adapter, samples, atol=1e-5, rotate=False)
    assert out.features.shape == (4, 16) and out.energies.shape == (4,) and np.isfinite(out.energies).all()
    np.testing.assert_allclose(out.features, adapter.embed(samples).features, rtol=1e-6, atol=1e-7)
    alone = np.concatenate([adapter.embed([s]).features for s in samples])
    np.testing.assert_allclose(alone, out.features, rtol=1e-5, atol=1e-6)


def test_orb_missing_weights_give_the_download_url(tmp_path):
    pytest.importorskip("orb_models")
    from benchmark.models.orb_adapter import OrbAdapter

    absent = tmp_path / "orb-v3-conservative-inf-omat.ckpt"
    entry = tm.entry("o", ORB, "atoms", str(absent), options={"model": "orb-v3-conservative-inf-omat"})
    reason = OrbAdapter(entry).unavailable_reason()
    assert str(absent) in reason and "orb-v3-conservative-inf-omat-20250404.ckpt" in reason
    with pytest.raises(ConfigError, match="exactly one"):
        OrbAdapter(tm.entry("o", ORB, "atoms", str(absent)))


MATTERSIM = "benchmark.models.mattersim_adapter:MatterSimAdapter"


@pytest.fixture(scope="module")
def mattersim_file(tmp_path_factory) -> Path:
    pytest.importorskip("mattersim", reason="mattersim not installed")
    return tm.mattersim(tmp_path_factory.mktemp("mattersim"))


def test_mattersim_features_are_invariant(mattersim_file):
    from benchmark.models.mattersim_adapter import MatterSimAdapter

    adapter = MatterSimAdapter(tm.entry("ms", MATTERSIM, "atoms", str(mattersim_file)))
    adapter.load()
    samples = tm.molecules()[:3] + [tm.crystal()]
    out = assert_invariant(adapter, samples, atol=1e-5)
    assert out.features.shape == (4, 16) and out.energies.shape == (4,)
    np.testing.assert_allclose(out.features, adapter.embed(samples).features, rtol=1e-6, atol=1e-7)
    alone = np.concatenate([adapter.embed([s]).features for s in samples])
    np.testing.assert_allclose(alone, out.features, rtol=1e-5, atol=1e-6)


def test_mattersim_missing_weights(tmp_path, monkeypatch):
    from benchmark.models.mattersim_adapter import MatterSimAdapter

    monkeypatch.setenv("HOME", str(tmp_path))
    reason = MatterSimAdapter(tm.entry("ms", MATTERSIM, "atoms", "mattersim-v1.0.0-5M")).unavailable_reason()
    if MatterSimAdapter.missing_packages():
        assert "mattersim" in reason
    else:
        assert str(tmp_path / ".local/mattersim/pretrained_models/mattersim-v1.0.0-5M.pth") in reason


def test_unset_environment_variable_in_checkpoint_is_named(monkeypatch):
    from benchmark.models.hf_adapter import HFAdapter

    monkeypatch.delenv("MATTERALIGN_TEST_WEIGHTS", raising=False)
    adapter = HFAdapter(tm.entry("lm", HF, "text", "${MATTERALIGN_TEST_WEIGHTS}/qwen3-0.6b"))
    assert "MATTERALIGN_TEST_WEIGHTS" in adapter.unavailable_reason()


@pytest.mark.slow
def test_fairchem_embeds_a_periodic_one_atom_cell_and_refuses_only_a_free_atom(uma_file):
    """fairchem bypasses its backbone only for a non-periodic single atom; a one-atom crystal (fcc Ni) has
    periodic neighbours, is embedded, and so UMA can be the reference of tasks that hold such cells."""
    from ase.build import bulk

    from benchmark.structures import Sample

    adapter = _fairchem(uma_file)
    ni = bulk("Ni", "fcc", a=3.52)
    cell = Sample(id="ni-fcc", numbers=ni.numbers, positions=ni.positions, cell=np.asarray(ni.cell), pbc=True)
    free = Sample(id="ni-atom", numbers=ni.numbers, positions=ni.positions)
    assert adapter.cannot_embed(cell) is None
    assert "free single atom" in adapter.cannot_embed(free)
    out = adapter.embed([cell])
    assert out.features.shape == (1, 8) and np.isfinite(out.features).all() and np.abs(out.features).sum() > 0
