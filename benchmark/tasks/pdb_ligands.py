"""OMol25-like out-of-distribution molecules: components of the PDB chemical component dictionary (CCD).

biotite's wheel ships the CCD (~49k components: ligands, ions, cofactors, metal clusters) with ideal
coordinates, bonds and formal charges. The task draws, in equal thirds, metal-containing components, charged
ones and large neutral ones (>= `large_heavy` heavy atoms), all with hydrogens as the CCD places them, the
total formal charge on `Sample.charge`, and an RDKit canonical SMILES (no explicit H, as the nci_large task
gives) on `smiles` and `text` for string models. No energy labels (GFN2-xTB via tblite would cost ~0.1-1 s a
molecule if one were wanted). The selection is cached under $MATTERALIGN_CACHE/data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.errors import ConfigError
from benchmark.structures import Sample
from benchmark.tasks.common import NEIGHBOUR_CUTOFF, Loaded, Screen, cached_json

BOND_ORDER = {"SING": 1, "DOUB": 2, "TRIP": 3}
NONMETALS = {"H", "He", "B", "C", "N", "O", "F", "Ne", "Si", "P", "S", "Cl", "Ar", "Ge", "As", "Se", "Br", "Kr",
             "Sb", "Te", "I", "Xe", "At", "Rn", "D"}
CLASSES = ("metal", "charged", "large")


def _ccd():
    try:
        import biotite
        import biotite.structure.info as info
    except ImportError:
        raise ConfigError("task pdb_ligands needs the PyPI package 'biotite' (it ships the PDB CCD): "
                          "pip install biotite==1.6.0") from None
    return info.get_ccd(), biotite.__version__


def _column(category: Any, name: str, dtype: Any = None) -> np.ndarray:
    col = category[name]
    return col.as_array(dtype) if dtype is not None else col.as_array()


def _smiles(symbols: list[str], charges: np.ndarray, bonds: list[tuple[int, int, int]]) -> str | None:
    """RDKit canonical SMILES without explicit hydrogens; None when RDKit cannot sanitise the graph."""
    from rdkit import Chem

    mol = Chem.RWMol()
    for sym, q in zip(symbols, charges):
        atom = Chem.Atom(sym)
        atom.SetFormalCharge(int(q))
        atom.SetNoImplicit(True)
        mol.AddAtom(atom)
    bt = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    for i, j, order in bonds:
        mol.AddBond(i, j, bt[order])
    try:
        Chem.SanitizeMol(mol)
        smi = Chem.MolToSmiles(Chem.RemoveHs(mol))
    except Exception:  # noqa: BLE001 - RDKit raises several types for unsanitisable graphs
        return None
    return smi if smi and Chem.MolFromSmiles(smi) is not None else None


def _geometry_reason(numbers: np.ndarray, pos: np.ndarray) -> str | None:
    from scipy.spatial.distance import pdist, squareform

    if len(numbers) < 2:
        return "an atom without a neighbour within 5 A"
    d = squareform(pdist(pos))
    if d[np.triu_indices(len(d), 1)].min() < 0.5:
        return "atoms closer than 0.5 A"
    np.fill_diagonal(d, np.inf)
    if (d.min(axis=1) > NEIGHBOUR_CUTOFF).any():
        return "an atom without a neighbour within 5 A"
    return None


def candidates(min_heavy: int, large_heavy: int, max_atoms: int, max_z: int) -> tuple[dict[str, list], Screen]:
    """Released components with ideal coordinates, by class, after the cheap screens (sizes, elements)."""
    from ase.data import atomic_numbers

    ccd, _ = _ccd()
    comp, atoms, bonds = ccd["chem_comp"], ccd["chem_comp_atom"], ccd["chem_comp_bond"]
    released = dict(zip(_column(comp, "id"), _column(comp, "pdbx_release_status")))
    missing = dict(zip(_column(comp, "id"), _column(comp, "pdbx_ideal_coordinates_missing_flag")))
    a_comp = _column(atoms, "comp_id")
    a_name = _column(atoms, "atom_id")
    a_sym = _column(atoms, "type_symbol")
    a_q = _column(atoms, "charge", np.int64)
    xyz = np.stack([_column(atoms, f"pdbx_model_Cartn_{k}_ideal", np.float64) for k in "xyz"], axis=1)
    xyz_mask = atoms["pdbx_model_Cartn_x_ideal"].mask
    a_bad = xyz_mask.array != 0 if xyz_mask is not None else np.zeros(len(a_comp), bool)
    b_comp, b_1, b_2, b_ord = (_column(bonds, k) for k in ("comp_id", "atom_id_1", "atom_id_2", "value_order"))
    b_start = np.flatnonzero(np.r_[True, b_comp[1:] != b_comp[:-1]])
    b_range = dict(zip(b_comp[b_start], zip(b_start, np.r_[b_start[1:], len(b_comp)])))
    a_start = np.flatnonzero(np.r_[True, a_comp[1:] != a_comp[:-1]])
    a_stop = np.r_[a_start[1:], len(a_comp)]
    screen = Screen()
    pool: dict[str, list] = {k: [] for k in CLASSES}
    for s, e in zip(a_start, a_stop):
        cid = str(a_comp[s])
        if released.get(cid) != "REL" or missing.get(cid) != "N" or a_bad[s:e].any():
            continue  # obsolete or without ideal coordinates: not a candidate at all
        symbols = [str(x).capitalize() for x in a_sym[s:e]]
        heavy = sum(x not in ("H", "D") for x in symbols)
        charge = int(a_q[s:e].sum())
        metal = any(x not in NONMETALS for x in symbols)
        cls = "metal" if metal else "charged" if charge != 0 else "large" if heavy >= large_heavy else None
        if cls is None or heavy < min_heavy:
            continue
        if not screen.keep(None if e - s <= max_atoms else f"more than {max_atoms} atoms"):
            continue
        if not screen.keep(None if all(atomic_numbers.get(x, 0) > 0 for x in symbols) else "unknown element (X)"):
            continue
        numbers = np.array([atomic_numbers["H" if x == "D" else x] for x in symbols], dtype=np.int64)
        if not screen.keep(None if numbers.max() <= max_z else f"element beyond Z={max_z}"):
            continue
        pool[cls].append((cid, s, e, b_range.get(a_comp[s])))
    arrays = {"name": a_name, "sym": a_sym, "q": a_q, "xyz": xyz, "b1": b_1, "b2": b_2, "ord": b_ord}
    return {"pool": pool, "arrays": arrays}, screen


def _record(cid: str, s: int, e: int, brange: tuple[int, int] | None, arr: dict[str, np.ndarray], cls: str,
            screen: Screen) -> dict[str, Any] | None:
    """The full record of one component, or None (counted) when a geometric or graph screen rejects it."""
    from ase.data import atomic_numbers

    symbols = [str(x).capitalize() for x in arr["sym"][s:e]]
    numbers = np.array([atomic_numbers["H" if x == "D" else x] for x in symbols], dtype=np.int64)
    pos = arr["xyz"][s:e]
    if not screen.keep(_geometry_reason(numbers, pos)):
        return None
    index = {str(n): i for i, n in enumerate(arr["name"][s:e])}
    graph = [(index[str(arr["b1"][k])], index[str(arr["b2"][k])], BOND_ORDER.get(str(arr["ord"][k]), 1))
             for k in (range(*brange) if brange is not None else [])]
    smi = _smiles(["H" if x == "D" else x for x in symbols], arr["q"][s:e], graph)
    if not screen.keep(None if smi else "RDKit cannot sanitise the bond graph (no SMILES)"):
        return None
    return {"id": f"ccd-{cid}", "numbers": numbers.tolist(), "positions": np.round(pos, 4).tolist(),
            "charge": int(arr["q"][s:e].sum()), "smiles": smi, "class": cls}


def build_selection(n_samples: int, seed: int, min_heavy: int, large_heavy: int, max_atoms: int,
                    max_z: int) -> dict[str, Any]:
    """An equal seeded share per class: candidates are screened in a seeded order until each share is full
    (the geometric and graph screens cost ~ms each, so only those examined are; counts say how many failed)."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    cand, screen = candidates(min_heavy, large_heavy, max_atoms, max_z)
    shares = [n_samples // 3 + (1 if i < n_samples % 3 else 0) for i in range(3)]
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    sizes = {k: len(v) for k, v in cand["pool"].items()}
    for cls, k in zip(CLASSES, shares):
        got = 0
        for i in rng.permutation(len(cand["pool"][cls])):
            if got == k:
                break
            rec = _record(*cand["pool"][cls][i], cand["arrays"], cls, screen)
            if rec is not None:
                records.append(rec)
                got += 1
        if got < k:
            raise ConfigError(f"task pdb_ligands: n_samples={n_samples} asks for {k} '{cls}' components; only "
                              f"{got} of {sizes[cls]} candidates pass the screens")
    records.sort(key=lambda r: r["id"])
    return {"records": records, "excluded": screen.as_dict(), "candidates": sizes}


def load(
    n_samples: int,
    seed: int,
    min_heavy: int = 8,
    large_heavy: int = 30,
    max_atoms: int = 150,
    max_z: int = 83,
) -> Loaded:
    """n_samples components, a seeded equal share of each class (metal, charged, large), sorted by id."""
    _, version = _ccd()
    opts = {"min_heavy": min_heavy, "large_heavy": large_heavy, "max_atoms": max_atoms, "max_z": max_z}
    built = cached_json("pdb_ligands", [n_samples, seed, opts, version], lambda: build_selection(n_samples, seed, **opts))
    samples = [
        Sample(
            id=r["id"],
            numbers=np.asarray(r["numbers"], dtype=np.int64),
            positions=np.asarray(r["positions"], dtype=np.float64),
            charge=int(r["charge"]),
            smiles=r["smiles"],
            text=r["smiles"],
            info={"class": r["class"]},
        )
        for r in built["records"]
    ]
    return Loaded(samples, built["excluded"], {"candidates": built["candidates"]})
