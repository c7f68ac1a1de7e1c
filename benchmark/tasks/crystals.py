"""An OMat24 / sAlex-like crystal set built from offline sources: distinct crystals plus OMat24-style variants.

Base crystals come from pymatgen's bundled AFLOW prototypes (as published and decorated by same-group element
substitution, the way Alexandria grows its set), the crystal CIFs of Debian's `libavogadro-data`, robocrys'
mineral prototypes, and ase.build's elemental reference states. They are deduplicated with pymatgen's
StructureMatcher, screened (see `screen_reason`), and each gets three non-equilibrium variants as OMat24 samples
them: a rattled supercell, a random strain, and a hot (expanded + strongly rattled) supercell. No labels.

Building the pool (parsing ~1,000 CIFs, matching, neighbour lists) takes about a minute, so it is cached under
$MATTERALIGN_CACHE/data keyed by every option, the seed, the source files and the pymatgen version.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import ConfigError
from benchmark.structures import Sample
from benchmark.tasks.common import Loaded, Screen, cached_json, neighbour_reason, seeded_pick

SOURCES = ("aflow", "avogadro", "robocrys", "ase")
AVOGADRO_DIR = Path("/usr/share/avogadro2/crystals")
VARIANTS = ("rattle", "strain", "hot")


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"task crystals: source needs the Python package {package!r}: pip install {package}")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)


def source_files(sources: list[str]) -> dict[str, list[Path]]:
    """The files each source reads; a missing source is a ConfigError naming the package that provides it."""
    out: dict[str, list[Path]] = {}
    for name in sources:
        if name == "aflow":
            files = [_package_file("pymatgen", "analysis", "prototypes", "aflow_prototypes.json.gz")]
        elif name == "robocrys":
            files = [_package_file("robocrys", "condense", "mineral_db.json.gz")]
            if not files[0].is_file():
                raise ConfigError(f"task crystals: {files[0]} is missing: pip install --no-deps robocrys==0.2.13")
        elif name == "avogadro":
            files = sorted(AVOGADRO_DIR.glob("*/*.cif"))
            if not files:
                raise ConfigError(
                    f"task crystals: no CIFs under {AVOGADRO_DIR}: install Debian's libavogadro-data "
                    "(sudo apt-get install libavogadro-data), or drop 'avogadro' from options.sources in "
                    "tasks/crystals.yaml"
                )
        elif name == "ase":
            files = []
        else:
            raise ConfigError(f"task crystals: unknown source {name!r} in options.sources; known: {list(SOURCES)}")
        out[name] = files
    return out


def _read_sources(files: dict[str, list[Path]], screen: Screen) -> list[tuple[str, Any, str]]:
    """(id, pymatgen Structure, prototype tag) of every ordered crystal the sources hold, in a fixed order."""
    from pymatgen.core import Structure

    out: list[tuple[str, Any]] = []
    if "aflow" in files:
        for i, rec in enumerate(json.loads(gzip.decompress(files["aflow"][0].read_bytes()))):
            st = Structure.from_dict(rec["snl"])
            tag = rec["tags"].get("mineral") or rec["tags"].get("aflow") or ""
            out.append((f"aflow-{i:03d}-{st.composition.reduced_formula}", st, tag))
    if "robocrys" in files:
        db = json.loads(gzip.decompress(files["robocrys"][0].read_bytes()))
        col = db["columns"].index("structure")
        for i, row in enumerate(db["data"]):
            st = Structure.from_dict(row[col])
            out.append((f"mineral-{i:03d}-{st.composition.reduced_formula}", st, db["index"][i]))
    if "avogadro" in files:
        from pymatgen.io.cif import CifParser

        for path in files["avogadro"]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    st = CifParser(str(path)).parse_structures(primitive=False)[0]
            except Exception:  # noqa: BLE001 - a CIF pymatgen cannot read is counted and skipped
                screen.keep("CIF pymatgen cannot parse")
                continue
            if not st.is_ordered:
                screen.keep("partial occupancy (disordered CIF)")
                continue
            out.append((f"avogadro-{path.parent.name}-{path.stem}", st, path.parent.name))
    if "ase" in files:
        from ase.build import bulk
        from ase.data import chemical_symbols, reference_states
        from pymatgen.io.ase import AseAtomsAdaptor

        for z in range(1, 95):
            ref = reference_states[z]
            if not ref or ref.get("symmetry") not in ("fcc", "bcc", "hcp", "diamond", "sc"):
                continue
            try:
                atoms = bulk(chemical_symbols[z])
            except (ValueError, KeyError, RuntimeError):
                screen.keep("ase.build.bulk cannot build the reference state")
                continue
            out.append((f"ase-{chemical_symbols[z]}-{ref['symmetry']}", AseAtomsAdaptor.get_structure(atoms),
                        ref["symmetry"]))
    return [(i, s.get_sorted_structure(), t) for i, s, t in out]


def _substitutes(max_z: int) -> dict[str, list[str]]:
    """Same-group elements within one period, the usual chemical-similarity substitution."""
    from pymatgen.core import Element

    elems = [Element.from_Z(z) for z in range(1, max_z + 1)]
    out: dict[str, list[str]] = {}
    for e in elems:
        out[e.symbol] = [f.symbol for f in elems if f != e and f.group == e.group and abs(f.row - e.row) <= 1
                         and not (f.is_lanthanoid or f.is_actinoid) and not (e.is_lanthanoid or e.is_actinoid)]
    return out


def _decorate(st: Any, rng: np.random.Generator, table: dict[str, list[str]]) -> Any | None:
    """Replace each species by a random same-group neighbour (keeping them distinct) and rescale the volume."""
    from pymatgen.core import Element

    species = [e.symbol for e in st.composition.elements]
    mapping: dict[str, str] = {}
    for sym in species:
        options = [o for o in table.get(sym, []) if o not in mapping.values() and o not in species]
        if options:
            mapping[sym] = options[int(rng.integers(len(options)))]
    if not mapping:
        return None
    new = st.copy()
    new.replace_species(mapping)

    def radius(sym: str) -> float:
        r = Element(sym).atomic_radius
        return float(r) if r is not None else 1.5

    old_v = sum(radius(s.specie.symbol) ** 3 for s in st)
    new_v = sum(radius(s.specie.symbol) ** 3 for s in new)
    new.scale_lattice(st.volume * new_v / old_v)
    return new.get_sorted_structure()


def screen_reason(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, max_atoms: int, max_z: int,
                  min_dist: float, geometry: bool = True) -> str | None:
    """Why no crystal model should be asked to embed this cell (None: keep it); geometry=False skips the
    neighbour-list checks (close contacts, atoms without a neighbour), the costly part."""
    if len(numbers) > max_atoms:
        return f"more than {max_atoms} atoms per cell"
    if int(np.max(numbers)) > max_z:
        return f"element beyond Z={max_z}"
    if abs(np.linalg.det(cell)) < 1.0:
        return "degenerate cell"
    return neighbour_reason(numbers, positions, cell, True, min_dist) if geometry else None


def _record(sample_id: str, st: Any, source: str, tag: str, variant: str = "equilibrium") -> dict[str, Any]:
    return {
        "id": sample_id,
        "numbers": [int(s.specie.Z) for s in st],
        "positions": np.round(st.cart_coords, 6).tolist(),
        "cell": np.round(st.lattice.matrix, 6).tolist(),
        "formula": st.composition.reduced_formula,
        "source": source,
        "tag": tag,
        "variant": variant,
    }


def _supercell_reps(n_atoms: int, cell: np.ndarray, min_atoms: int = 8) -> list[int]:
    """Repeat the shortest axes until the cell holds at least min_atoms (a 1-atom cell cannot be rattled)."""
    reps = [1, 1, 1]
    lengths = np.linalg.norm(cell, axis=1)
    while n_atoms * int(np.prod(reps)) < min_atoms:
        k = int(np.argmin(lengths * np.array(reps)))
        reps[k] += 1
    return reps


def _variant(base: dict[str, Any], kind: str, rng: np.random.Generator) -> dict[str, Any]:
    """OMat24-style non-equilibrium copies: rattled (sigma 0.1 A), strained (<= 5% per component), hot
    (2-8% volume expansion and sigma 0.2 A, like a high-temperature MD frame)."""
    numbers = np.asarray(base["numbers"])
    pos = np.asarray(base["positions"], dtype=float)
    cell = np.asarray(base["cell"], dtype=float)
    if kind == "strain":
        e = rng.uniform(-0.05, 0.05, size=(3, 3))
        deform = np.eye(3) + (e + e.T) / 2
        frac = np.linalg.solve(cell.T, pos.T).T
        cell = cell @ deform
        pos = frac @ cell
        label = "random symmetric strain, |e_ij| <= 0.05"
    else:
        reps = _supercell_reps(len(numbers), cell)
        shifts = np.array([[i, j, k] for i in range(reps[0]) for j in range(reps[1]) for k in range(reps[2])]) @ cell
        pos = (pos[None] + shifts[:, None]).reshape(-1, 3)
        numbers = np.tile(numbers, len(shifts))
        cell = cell * np.array(reps)[:, None]
        sigma = 0.1
        if kind == "hot":
            f = (1.0 + rng.uniform(0.02, 0.08)) ** (1 / 3)
            cell, pos, sigma = cell * f, pos * f, 0.2
        pos = pos + rng.normal(0.0, sigma, size=pos.shape)
        label = f"{'x'.join(map(str, reps))} supercell, Gaussian rattle sigma={sigma} A" + (
            ", volume +2-8%" if kind == "hot" else "")
    return {**base, "id": f"{base['id']}~{kind}", "numbers": numbers.tolist(),
            "positions": np.round(pos, 6).tolist(), "cell": np.round(cell, 6).tolist(), "variant": label}


def build_pool(seed: int, sources: list[str], decorations: int, max_atoms: int, max_z: int,
               min_dist: float) -> dict[str, Any]:
    """Every screened, distinct base crystal with the exclusion counts (uncached; variants are drawn at load)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    files = source_files(sources)
    screen = Screen()
    raw = _read_sources(files, screen)
    rng = np.random.default_rng(seed)
    table = _substitutes(max_z)
    structures = []
    for sid, st, tag in raw:
        source = sid.split("-")[0]
        structures.append((sid, st, source, tag))
        if source in ("aflow", "mineral"):
            for k in range(decorations):
                new = _decorate(st, rng, table)
                if new is not None:
                    new_id = f"{sid}-sub{k}-{new.composition.reduced_formula}"
                    structures.append((new_id, new, source, f"{tag} (decorated)"))
    kept = []
    for sid, st, source, tag in structures:
        z = np.array([s.specie.Z for s in st])
        if screen.keep(screen_reason(z, st.cart_coords, st.lattice.matrix, max_atoms, max_z, min_dist, False)):
            kept.append((sid, st, source, tag))
    # Deduplicate first, then run the neighbour-list screen on one structure per group only.
    groups = StructureMatcher().group_structures([st for _, st, _, _ in kept])
    first = {id(g[0]) for g in groups}
    bases = []
    for sid, st, source, tag in kept:
        if not screen.keep(None if id(st) in first else "duplicate by StructureMatcher"):
            continue
        z = np.array([s.specie.Z for s in st])
        if screen.keep(neighbour_reason(z, st.cart_coords, st.lattice.matrix, True, min_dist)):
            bases.append(_record(sid, st, source, tag))
    bases.sort(key=lambda r: r["id"])
    return {"bases": bases, "excluded": screen.as_dict()}


def _variant_rng(seed: int, sample_id: str, kind: str) -> np.random.Generator:
    """Each variant's own generator: it does not depend on which other variants are drawn."""
    digest = hashlib.sha256(f"{seed}/{sample_id}/{kind}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def pick_variants(bases: list[dict[str, Any]], n: int, seed: int, max_atoms: int, max_z: int,
                  min_dist: float, screen: Screen) -> list[dict[str, Any]]:
    """n variants of seeded (base, kind) pairs, screened in a seeded order until n pass (rejects counted)."""
    pairs = [(i, kind) for i in range(len(bases)) for kind in VARIANTS]
    out: list[dict[str, Any]] = []
    for j in np.random.default_rng(seed).permutation(len(pairs)):
        if len(out) == n:
            break
        i, kind = pairs[j]
        v = _variant(bases[i], kind, _variant_rng(seed, bases[i]["id"], kind))
        reason = screen_reason(np.asarray(v["numbers"]), np.asarray(v["positions"]), np.asarray(v["cell"]),
                               8 * max_atoms, max_z, min_dist)
        if screen.keep(None if reason is None else f"variant: {reason}"):
            out.append(v)
    if len(out) < n:
        raise ConfigError(f"task crystals: only {len(out)} of {len(pairs)} variants pass the screens; {n} asked")
    return out


def _cache_inputs(seed: int, sources: list[str], files: dict[str, list[Path]], **opts: Any) -> list:
    """What the pool depends on besides the task code: seed, sources and their files' sizes, options, pymatgen."""
    import pymatgen.core

    stamp = [(str(p), p.stat().st_size) for name in sorted(files) for p in files[name]]
    return [seed, sorted(sources), opts, pymatgen.core.__version__, stamp]


def load(
    n_samples: int,
    seed: int,
    sources: list[str] | None = None,
    decorations: int = 2,
    max_atoms: int = 48,
    max_z: int = 83,
    min_dist: float = 0.6,
    equilibrium_fraction: float = 0.5,
) -> Loaded:
    """n_samples crystals: a seeded share `equilibrium_fraction` of distinct base crystals, the rest variants."""
    sources = list(sources or SOURCES)
    if not 0.0 <= equilibrium_fraction <= 1.0:
        raise ConfigError(f"task crystals: equilibrium_fraction={equilibrium_fraction} must lie in [0, 1]")
    opts = {"decorations": decorations, "max_atoms": max_atoms, "max_z": max_z, "min_dist": min_dist}
    inputs = _cache_inputs(seed, sources, source_files(sources), **opts)
    pool = cached_json("crystals", inputs, lambda: build_pool(seed, sources, **opts))
    bases = pool["bases"]
    n_base = min(len(bases), int(round(n_samples * equilibrium_fraction)))
    n_var = n_samples - n_base
    if n_var > len(VARIANTS) * len(bases):
        raise ConfigError(
            f"task crystals: n_samples={n_samples} exceeds the {(1 + len(VARIANTS)) * len(bases)} crystals available "
            f"({len(bases)} distinct, {len(VARIANTS)} variants of each)"
        )
    screen = Screen()
    screen.counts.update(pool["excluded"])
    chosen = [bases[i] for i in seeded_pick(len(bases), n_base, seed + 1)]
    chosen += pick_variants(bases, n_var, seed + 2, max_atoms, max_z, min_dist, screen)
    samples = [
        Sample(
            id=r["id"],
            numbers=np.asarray(r["numbers"], dtype=np.int64),
            positions=np.asarray(r["positions"], dtype=np.float64),
            cell=np.asarray(r["cell"], dtype=np.float64),
            pbc=True,
            info={"formula": r["formula"], "source": r["source"], "prototype": r["tag"], "variant": r["variant"]},
        )
        for r in sorted(chosen, key=lambda r: r["id"])
    ]
    return Loaded(samples, screen.as_dict(), {"pool": {"distinct": len(bases), "variant_kinds": list(VARIANTS)}})
