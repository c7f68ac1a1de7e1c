"""Crystals with real Materials Project DFT total energies, from Debian's `pymatgen-test-files`.

The package's examples/test_files hold ComputedStructureEntry JSON (MP structures with their VASP PBE
energies): the energies MPtrj-trained MLIPs were fit to. Entries are deduplicated by MP id and by
StructureMatcher, screened like the crystals task, and (by default) kept only when plain GGA; with
`functional: GGA+U-MP2020` the GGA+U entries join through pymatgen's MaterialsProject2020Compatibility and the
label is the corrected energy. Per-element offsets are fitted by the energy metrics, so compounds holding an
element that fewer than `min_element_count` compounds share are left out: their offset would absorb their error.
"""

from __future__ import annotations

import gzip
import json
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import ConfigError
from benchmark.structures import Sample
from benchmark.tasks.common import Loaded, Screen, cached_json
from benchmark.tasks.crystals import screen_reason

TEST_FILES = Path("/usr/share/doc/pymatgen-test-files/examples/test_files")
FUNCTIONALS = ("GGA", "GGA+U-MP2020")
MP_ID = re.compile(r"^(mp|mvc)-\d+$")
FIX = ("install Debian's pymatgen-test-files (sudo apt-get install pymatgen-test-files; ./install.sh does it "
       "when run as root), or point options.root in tasks/mp_energies.yaml at a copy of pymatgen's test_files")


def entry_files(root: Path) -> list[Path]:
    """The JSON files under root that hold ComputedStructureEntry records; a clear error when there are none."""
    if not root.is_dir():
        raise ConfigError(f"task mp_energies: {root} not found: {FIX}")
    files = []
    for path in sorted(root.rglob("*.json*")):
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        if b"ComputedStructureEntry" in raw:
            files.append(path)
    if not files:
        raise ConfigError(f"task mp_energies: no ComputedStructureEntry JSON under {root}: {FIX}")
    return files


def _entries(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    obj = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    found: list[dict[str, Any]] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            if o.get("@class") == "ComputedStructureEntry":
                found.append(o)
                return
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(obj)
    return found


def build_pool(root: Path, functional: str, max_atoms: int, max_z: int, min_dist: float,
               min_element_count: int) -> dict[str, Any]:
    """Every usable labelled crystal (uncached), with the exclusion counts."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    screen = Screen()
    candidates: list[tuple[str, Any, float, str]] = []
    seen_ids: set[str] = set()
    compat = None
    if functional == "GGA+U-MP2020":
        from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

        compat = MaterialsProject2020Compatibility(check_potcar=False)
    for path in entry_files(root):
        rel = str(path.relative_to(root))
        for k, d in enumerate(_entries(path)):
            run_type = (d.get("parameters") or {}).get("run_type")
            if not screen.keep(None if run_type in ("GGA", "GGA+U") else "no GGA/GGA+U run type (unlabelled)"):
                continue
            if not screen.keep("surface slab or adsorbate (vacuum)" if rel.startswith("surface_tests") else None):
                continue
            if not screen.keep("GGA+U entry (functional: GGA)" if run_type == "GGA+U" and compat is None else None):
                continue
            entry = ComputedStructureEntry.from_dict(d)
            mp_id = str(entry.entry_id)
            if MP_ID.match(mp_id):
                if not screen.keep("duplicate MP id" if mp_id in seen_ids else None):
                    continue
                seen_ids.add(mp_id)
            else:  # no MP id (None or a local number): named by file and position; StructureMatcher dedups it
                mp_id = f"{path.name.split('.')[0]}-{k:03d}"
            energy = float(entry.uncorrected_energy)
            if compat is not None:
                entry.energy_adjustments = []
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    processed = compat.process_entries([entry], clean=True, inplace=False)
                if not screen.keep(None if processed else "rejected by MaterialsProject2020Compatibility"):
                    continue
                energy = float(processed[0].energy)
            st = entry.structure.get_sorted_structure()
            z = np.array([s.specie.Z for s in st])
            if not screen.keep(None if st.is_ordered else "partial occupancy"):
                continue
            if screen.keep(screen_reason(z, st.cart_coords, st.lattice.matrix, max_atoms, max_z, min_dist)):
                candidates.append((mp_id, st, energy, rel))
    groups = StructureMatcher().group_structures([c[1] for c in candidates])
    first = {id(g[0]) for g in groups}
    kept = [c for c in candidates if id(c[1]) in first]
    screen.counts["duplicate structure (StructureMatcher)"] += len(candidates) - len(kept)
    while True:
        counts = Counter(e.symbol for c in kept for e in c[1].composition.elements)
        rare = {el for el, k in counts.items() if k < min_element_count}
        if not rare:
            break
        before = len(kept)
        kept = [c for c in kept if not {e.symbol for e in c[1].composition.elements} & rare]
        screen.counts[f"holds an element in fewer than {min_element_count} compounds"] += before - len(kept)
    records = [
        {
            "id": f"{mp_id}",
            "numbers": [int(s.specie.Z) for s in st],
            "positions": np.round(st.cart_coords, 6).tolist(),
            "cell": np.round(st.lattice.matrix, 6).tolist(),
            "energy": energy,
            "formula": st.composition.reduced_formula,
            "file": rel,
        }
        for mp_id, st, energy, rel in kept
    ]
    records.sort(key=lambda r: r["id"])
    return {"records": records, "excluded": screen.as_dict()}


def load(
    n_samples: int,
    seed: int,
    functional: str = "GGA+U-MP2020",
    root: str | None = None,
    max_atoms: int = 64,
    max_z: int = 83,
    min_dist: float = 0.6,
    min_element_count: int = 3,
) -> Loaded:
    """A seeded subset of the labelled crystals (all of them when n_samples equals the pool), sorted by MP id."""
    import pymatgen.core

    if functional not in FUNCTIONALS:
        raise ConfigError(f"task mp_energies: option functional={functional!r}; expected one of {list(FUNCTIONALS)}")
    base = Path(root) if root else TEST_FILES
    files = entry_files(base)
    opts = {"functional": functional, "max_atoms": max_atoms, "max_z": max_z, "min_dist": min_dist,
            "min_element_count": min_element_count}
    stamp = [(str(p), p.stat().st_size) for p in files]
    pool = cached_json("mp_energies", [opts, pymatgen.core.__version__, stamp], lambda: build_pool(base, **opts))
    records = pool["records"]
    if n_samples > len(records):
        raise ConfigError(
            f"task mp_energies: n_samples={n_samples} exceeds the {len(records)} labelled crystals available "
            f"({functional}; excluded: {pool['excluded']})"
        )
    chosen = sorted((records[i] for i in covering_pick(records, n_samples, seed, min_element_count)),
                    key=lambda r: r["id"])
    samples = [
        Sample(
            id=r["id"],
            numbers=np.asarray(r["numbers"], dtype=np.int64),
            positions=np.asarray(r["positions"], dtype=np.float64),
            cell=np.asarray(r["cell"], dtype=np.float64),
            pbc=True,
            energy=float(r["energy"]),
            info={"formula": r["formula"], "file": r["file"]},
        )
        for r in chosen
    ]
    n_el = len({int(z) for r in records for z in r["numbers"]})
    per_element = Counter(z for r in chosen for z in set(r["numbers"]))
    return Loaded(samples, pool["excluded"], {"pool": {"labelled": len(records), "elements": n_el},
                                              "min_compounds_per_element": min(per_element.values())})


def covering_pick(records: list[dict[str, Any]], n: int, seed: int, min_count: int) -> list[int]:
    """n indices in a seeded order that first gives every element min_count compounds (so each fitted
    per-element offset rests on several compounds), then fills up in the same seeded order."""
    order = [int(i) for i in np.random.default_rng(seed).permutation(len(records))]
    elements = [set(r["numbers"]) for r in records]
    counts: Counter[int] = Counter()
    picked: list[int] = []
    taken: set[int] = set()
    for z in sorted(set().union(*elements)):
        for i in order:
            if counts[z] >= min_count:
                break
            if i not in taken and z in elements[i]:
                picked.append(i)
                taken.add(i)
                counts.update(elements[i])
    picked += [i for i in order if i not in taken]
    return picked[:n]
