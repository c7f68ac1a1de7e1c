"""Larger drug-like molecules from RDKit's bundled NCI set (first 5,000 SMILES), with ETKDG conformers.

Out of distribution for models trained on small organics: 10-30 heavy atoms (QM9 has at most 9), and
sulfur/halogens. No energy labels. Conformers are generated once per (seed, selection) and cached,
because ETKDG + MMFF costs ~0.1 s per molecule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.errors import ConfigError
from benchmark.structures import Sample
from benchmark.tasks.common import Loaded, Screen, cached_json

DEFAULT_ELEMENTS = ["H", "C", "N", "O", "S", "F", "Cl"]


def nci_path() -> Path:
    from rdkit import RDConfig

    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    if not path.is_file():
        raise ConfigError(f"task nci_large: {path} is missing from the installed rdkit; reinstall rdkit from PyPI")
    return path


def candidates(
    min_heavy: int, max_heavy: int, elements: list[str], screen: Screen | None = None
) -> list[tuple[str, str]]:
    """(id, canonical SMILES) of neutral, single-fragment molecules within the size and element limits;
    `screen` counts the molecules left out, by reason."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    screen = screen if screen is not None else Screen()
    allowed = set(elements)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in nci_path().read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        mol = Chem.MolFromSmiles(parts[0])
        if not screen.keep("RDKit cannot parse the SMILES" if mol is None else None):
            continue
        if not screen.keep("more than one fragment" if len(Chem.GetMolFrags(mol)) != 1 else None):
            continue
        if not screen.keep("charged atoms" if any(a.GetFormalCharge() != 0 for a in mol.GetAtoms()) else None):
            continue
        if not min_heavy <= mol.GetNumHeavyAtoms() <= max_heavy:
            continue
        mol_h = Chem.AddHs(mol)
        if not screen.keep(f"element outside {sorted(allowed)}"
                           if any(a.GetSymbol() not in allowed for a in mol_h.GetAtoms()) else None):
            continue
        smi = Chem.MolToSmiles(mol)
        if not screen.keep("duplicate SMILES" if smi in seen else None):
            continue
        seen.add(smi)
        out.append((f"nci-{int(parts[1]):05d}", smi))
    return out


def embed_conformer(smiles: str, seed: int) -> tuple[list[int], list[list[float]]] | None:
    """ETKDGv3 + MMFF94 geometry, deterministic for a seed; None when embedding fails."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    params.numThreads = 1
    if AllChem.EmbedMolecule(mol, params) != 0:
        return None
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    pos = mol.GetConformer().GetPositions()
    return [a.GetAtomicNum() for a in mol.GetAtoms()], np.round(pos, 6).tolist()


def load(
    n_samples: int,
    seed: int,
    min_heavy: int = 10,
    max_heavy: int = 30,
    elements: list[str] | None = None,
) -> Loaded:
    """A seeded selection of n_samples molecules that embed in 3D, in NCI order."""
    from rdkit import rdBase

    elements = elements or DEFAULT_ELEMENTS
    screen = Screen()
    pool = candidates(min_heavy, max_heavy, elements, screen)
    if n_samples > len(pool):
        raise ConfigError(f"task nci_large: n_samples={n_samples} exceeds the {len(pool)} molecules that qualify")
    inputs = [n_samples, seed, min_heavy, max_heavy, sorted(elements), rdBase.rdkitVersion]

    def build() -> list[dict]:
        order = np.random.default_rng(seed).permutation(len(pool))
        records = []
        for i in order:
            mol_id, smi = pool[i]
            geo = embed_conformer(smi, seed)
            if geo is not None:
                records.append({"id": mol_id, "smiles": smi, "numbers": geo[0], "positions": geo[1]})
            if len(records) == n_samples:
                break
        return sorted(records, key=lambda r: r["id"])

    records = cached_json("nci_large", inputs, build)
    samples = [
        Sample(
            id=r["id"],
            numbers=np.asarray(r["numbers"], dtype=np.int64),
            positions=np.asarray(r["positions"], dtype=np.float64),
            smiles=r["smiles"],
            text=r["smiles"],
        )
        for r in records
    ]
    return Loaded(samples, screen.as_dict())
