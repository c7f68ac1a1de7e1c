"""Task samplers: deterministic ids, deduplication, exclusions recorded, missing data -> a clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import ConfigError
from benchmark.registry.loader import load_tasks
from benchmark.registry.schema import TaskSpec
from benchmark.tasks import build_dataset
from benchmark.tasks import crystals as C
from benchmark.tasks import mp_energies as M
from benchmark.tasks.common import NEIGHBOUR_CUTOFF, Loaded, neighbour_reason


def spec(name: str, loader: str, options: dict, n: int = 20) -> TaskSpec:
    return TaskSpec(name=name, version="1", description="t", loader=loader, options=options, source="t",
                    level_of_theory="none", energy_reference="none", n_samples=n, roles={"materials": "id"})


def test_every_task_yaml_declares_both_sizes():
    tasks = load_tasks()
    for name in ("crystals", "mp_energies", "pdb_ligands", "qm9", "nci_large"):
        assert tasks[name].paper_n_samples is not None and tasks[name].paper_n_samples >= tasks[name].n_samples
        assert "excluded" in tasks[name].description, f"{name}.yaml must document its exclusions"


def test_neighbour_screen():
    one = np.array([[0.0, 0.0, 0.0]])
    assert neighbour_reason(np.array([11]), one, np.eye(3) * 8.0, True, 0.6) == "an atom without a neighbour within 5 A"
    assert neighbour_reason(np.array([11]), one, np.eye(3) * 4.0, True, 0.6) is None
    pair = np.array([[0.0, 0, 0], [0.3, 0, 0]])
    assert neighbour_reason(np.array([1, 1]), pair, None, False, 0.6) == "atoms closer than 0.6 A"
    far = np.array([[0.0, 0, 0], [NEIGHBOUR_CUTOFF + 0.5, 0, 0]])
    assert neighbour_reason(np.array([1, 1]), far, None, False, 0.6) is not None


@pytest.mark.slow
def test_crystals_small_pool_is_deterministic_and_records_exclusions():
    sp = spec("crystals", "benchmark.tasks.crystals:load", {"sources": ["ase"], "decorations": 0})
    ds = build_dataset(sp)
    again = build_dataset(sp)
    assert ds.ids == again.ids and ds.digest == again.digest
    assert len(ds) == 20 and len(set(ds.ids)) == 20
    assert all(s.pbc and s.cell is not None for s in ds.samples)
    assert sum("~" in i for i in ds.ids) == 10, "half of the sample are variants"
    assert all(neighbour_reason(s.numbers, s.positions, s.cell, True, 0.6) is None for s in ds.samples)
    assert "element beyond Z=83" in ds.metadata["excluded"]  # ase's reference states run to Pu
    other = build_dataset(sp, seed=1)
    assert other.ids != ds.ids


def test_crystals_dedup_and_isolated_atoms_counted(monkeypatch):
    from pymatgen.core import Lattice, Structure

    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rotated = Structure(Lattice.cubic(5.70), ["Na", "Cl"], [[0.5, 0.5, 0.5], [0, 0, 0]])
    lonely = Structure(Lattice.cubic(8.0), ["Cs"], [[0, 0, 0]])
    kcl = Structure(Lattice.cubic(5.5), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    raw = [("a-NaCl", nacl, "rs"), ("b-NaCl", rotated, "rs"), ("c-Cs", lonely, "sc"), ("d-KCl", kcl, "rs")]
    monkeypatch.setattr(C, "_read_sources", lambda files, screen: raw)
    pool = C.build_pool(0, ["ase"], 0, 48, 83, 0.6)
    assert [b["id"] for b in pool["bases"]] == ["a-NaCl", "d-KCl"]
    assert pool["excluded"] == {"an atom without a neighbour within 5 A": 1, "duplicate by StructureMatcher": 1}


def test_crystals_missing_source_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(C, "AVOGADRO_DIR", tmp_path / "none")
    with pytest.raises(ConfigError, match="libavogadro-data"):
        C.source_files(["avogadro"])
    with pytest.raises(ConfigError, match="unknown source"):
        C.source_files(["nope"])


def test_mp_energies_missing_files_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install pymatgen-test-files"):
        build_dataset(spec("mp_energies", "benchmark.tasks.mp_energies:load", {"root": str(tmp_path / "absent")}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no ComputedStructureEntry"):
        M.load(5, 0, root=str(tmp_path / "empty"))


@pytest.mark.skipif(not M.TEST_FILES.is_dir(), reason="needs Debian's pymatgen-test-files (apt-get install it)")
@pytest.mark.slow
def test_mp_energies_labels_dedup_and_exclusions(tmp_path):
    root = tmp_path / "test_files"
    root.mkdir()
    shutil.copy(M.TEST_FILES / "TiO2_entries.json", root)
    shutil.copy(M.TEST_FILES / "Mn-O_entries.json", root)
    shutil.copy(M.TEST_FILES / "TiO2_entries.json", root / "copy_of_TiO2.json")
    opts = {"root": str(root), "functional": "GGA+U-MP2020", "min_element_count": 2}
    ds = build_dataset(spec("mp_energies", "benchmark.tasks.mp_energies:load", opts, n=10))
    assert ds.ids == sorted(ds.ids) and len(set(ds.ids)) == 10
    assert np.isfinite(ds.energies).all() and ds.has_labels
    per_atom = ds.energies / np.array([s.n_atoms for s in ds.samples])
    assert (per_atom < -3).all() and (per_atom > -15).all(), "MP total energies are -3..-15 eV/atom here"
    ex = ds.metadata["excluded"]
    assert ex["duplicate structure (StructureMatcher)"] >= 16, "the copied file's entries (no MP ids) are duplicates"
    assert len({s.id for s in ds.samples if s.id.startswith("copy_of")}) == 0, "the first copy (sorted) wins"
    assert ds.metadata["min_compounds_per_element"] >= 2
    gga = M.load(3, 0, root=str(root), functional="GGA", min_element_count=1)
    assert gga.excluded.get("GGA+U entry (functional: GGA)", 0) > 0
    with pytest.raises(ConfigError, match="functional"):
        M.load(3, 0, root=str(root), functional="r2SCAN")


def test_mp_energies_pick_gives_every_element_several_compounds():
    rng = np.random.default_rng(0)
    records = [{"numbers": [8] + [int(rng.integers(1, 4))]} for _ in range(40)] + [{"numbers": [26, 8]}] * 3
    picked = M.covering_pick(records, 12, seed=1, min_count=3)
    assert len(picked) == len(set(picked)) == 12
    assert sum(26 in records[i]["numbers"] for i in picked) == 3, "the rare element gets its 3 compounds"
    assert picked == M.covering_pick(records, 12, seed=1, min_count=3)


def test_build_dataset_copies_exclusions_into_metadata(monkeypatch):
    import benchmark.tasks as T
    from benchmark.structures import Sample

    samples = [Sample(id=f"s{i}", numbers=np.array([1, 1]), positions=np.zeros((2, 3))) for i in range(4)]
    monkeypatch.setattr(T, "import_object", lambda *_: lambda n_samples, seed: Loaded(samples[:n_samples], {"why": 2}))
    ds = build_dataset(spec("fake", "x.y:z", {}, n=4))
    assert ds.metadata["excluded"] == {"why": 2}
    assert ds.subset([0, 1]).metadata == ds.metadata


@pytest.mark.slow
def test_pdb_ligands_classes_charges_smiles():
    from rdkit import Chem

    pytest.importorskip("biotite")
    sp = spec("pdb_ligands", "benchmark.tasks.pdb_ligands:load", {}, n=21)
    ds = build_dataset(sp)
    assert ds.ids == sorted(ds.ids) and len(set(ds.ids)) == 21
    classes = [s.info["class"] for s in ds.samples]
    assert {c: classes.count(c) for c in set(classes)} == {"metal": 7, "charged": 7, "large": 7}
    assert all(s.charge != 0 for s in ds.samples if s.info["class"] == "charged")
    assert all(Chem.MolFromSmiles(s.smiles) is not None and s.text == s.smiles for s in ds.samples)
    assert all(neighbour_reason(s.numbers, s.positions, None, False, 0.5) is None for s in ds.samples)
    assert build_dataset(sp).ids == ds.ids
    assert "more than 150 atoms" in ds.metadata["excluded"]


def test_pdb_ligands_missing_biotite_names_the_fix(monkeypatch):
    import builtins

    from benchmark.tasks import pdb_ligands

    real = builtins.__import__

    def no_biotite(name, *a, **k):
        if name.startswith("biotite"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_biotite)
    with pytest.raises(ConfigError, match="pip install biotite"):
        pdb_ligands.load(3, 0)


def test_tasks_do_not_import_the_embedding_cache():
    """Task loaders sit below the embedding layer (proteins.py is engineer P's and checked by its owner)."""
    files = [p for p in Path(C.__file__).parent.glob("*.py") if p.name != "proteins.py"]
    assert len(files) >= 6
    for path in files:
        assert "benchmark.embeddings" not in path.read_text(), path.name


def test_this_install_builds_the_shipped_boards_structures():
    """Every task of the shipped board builds, at the board's size and seed, the very structures it was frozen
    on (its data digest). A drifted builder (another RDKit embeds other conformers for the same ids) would make
    every result an exploration run, so an install that differs fails here rather than on a user's machine."""
    from benchmark.registry.loader import load_board

    board = load_board(Path(__file__).resolve().parents[1] / "leaderboard" / "board.yaml")
    specs = load_tasks()
    drifted = {name: build_dataset(specs[name], bt.n_samples, bt.seed).digest[:12]
               for name, bt in board.tasks.items()}
    assert {n: d for n, d in drifted.items() if d != board.tasks[n].data_digest[:12]} == {}


def test_a_pool_cached_before_a_change_to_the_task_code_is_never_served_after_it(monkeypatch, tmp_path):
    """The cache name carries the digest of the task modules' source, so editing a screen rebuilds the pool;
    an unreadable cached file names itself and the fix."""
    from benchmark.errors import DataError
    from benchmark.tasks import common

    copy = tmp_path / "tasks"
    shutil.copytree(Path(common.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert common.builders_digest(copy) == common.builders_digest()
    screen = copy / "common.py"
    screen.write_text(screen.read_text().replace("NEIGHBOUR_CUTOFF = 5.0", "NEIGHBOUR_CUTOFF = 4.0"))
    edited = common.builders_digest(copy)
    assert edited != common.builders_digest()

    builds = []
    first = common.cached_json("pool", {"seed": 1}, lambda: builds.append(1) or {"v": 1})
    assert common.cached_json("pool", {"seed": 1}, lambda: builds.append(2) or {"v": 2}) == first and builds == [1]
    assert common.cached_json("pool", {"seed": 2}, lambda: builds.append(4) or {"v": 4}) == {"v": 4}
    monkeypatch.setattr(common, "builders_digest", lambda: edited)
    assert common.cached_json("pool", {"seed": 1}, lambda: builds.append(3) or {"v": 3}) == {"v": 3}
    assert builds == [1, 4, 3]
    names = sorted(p.name for p in common.cache_dir().glob("pool-*.json"))
    assert len(names) == 3 and sum(n.endswith(f"-{edited[:12]}.json") for n in names) == 1

    common.cached_json("other", [1], lambda: {"x": 1})
    (path,) = common.cache_dir().glob(f"other-*-{edited[:12]}.json")
    path.write_text("{not json")
    with pytest.raises(DataError, match=r"task other: cached task data .*other-.*delete it and rerun"):
        common.cached_json("other", [1], dict)
    path.write_text('{"y": 1}')
    with pytest.raises(DataError, match=r"other-.*KeyError.*delete it and rerun"):
        common.cached_json("other", [1], dict, parse=lambda obj: obj["x"])
    assert common.cached_json("other", [1], dict, parse=lambda obj: obj["y"]) == 1
