"""Protein chains (RCSB-like): sequence + backbone pairs from the experimental PDB/mmCIF files in packages.

Sources (named by the task's `sources` option, each located on disk without importing its package):
- `mdanalysistests`: the PyPI package MDAnalysisTests (its `data/` folder: crystal and NMR entries);
- `theseus-examples`: Debian's theseus-examples (/usr/share/doc/theseus/examples: PDB chains and SCOP domains).

A file counts as an experimental structure when it carries an experimental-method record (PDB `EXPDTA`,
mmCIF `_exptl.method`) or its name is nothing but a PDB id or SCOP/ASTRAL domain id (`1a5z_A.pdb.gz`,
`d1cih__.pdb.gz`); processed files (`adk_oplsaa.pdb`, `1grm_elNemo_mode7.pdb`) are simulation or model
outputs and are skipped. One sample per protein chain of the first model: the polymer's amino-acid residues
(hetero records dropped, selenomethionine read as M), each with its N, CA, C and O atoms (first altloc);
chains with any other non-standard residue, fewer than `min_length` or more than `max_length` residues are
dropped. Chains are then made non-redundant at `max_identity` sequence identity, the PISCES-style
filter of the paper: greedy, longest chain first (ties by id), a chain is kept when its identity to every
kept chain is <= max_identity. Identity = identical aligned residues / length of the shorter chain, from an
optimal semi-global alignment (biotite.sequence.align.align_optimal, BLOSUM62, gap open -10, extend -1,
free terminal gaps). Pairs sharing fewer than 10% of the shorter chain's distinct 3-mers are not aligned
(an unrelated pair; at 70% identity about a third of 3-mers are shared), which keeps the filter to seconds.

The filtered pool is cached under $MATTERALIGN_CACHE/data (it takes ~30 s to build); `load` then draws a
seeded sample sorted by id. Ids are `<source>/<file path in the source>:<chain>` (`_` for a blank chain id).
"""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from benchmark.errors import ConfigError
from benchmark.structures import Sample
from benchmark.tasks.common import cached_json

THESEUS_DIR = Path("/usr/share/doc/theseus/examples")
THREE_TO_ONE = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G", "HIS": "H",
    "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S", "THR": "T", "TRP": "W",
    "TYR": "Y", "VAL": "V", "MSE": "M",
}
BACKBONE = ("N", "CA", "C", "O")
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif")
ID_NAME_RE = re.compile(r"d?[0-9][a-z0-9]{3}(_?[a-z0-9]{1,2})?_{0,2}")
KMER = 3
KMER_PREFILTER = 0.10


@dataclass(frozen=True)
class Chain:
    id: str
    sequence: str
    backbone: np.ndarray  # (L, 4, 3)
    residue_ids: np.ndarray  # (L,)


def _mdanalysistests_dir() -> Path:
    spec = importlib.util.find_spec("MDAnalysisTests")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "task proteins: source 'mdanalysistests' needs the PyPI package MDAnalysisTests (it ships the PDB "
            "files): pip install --no-deps mdanalysistests==2.11.0 (or ./install.sh)"
        )
    return Path(spec.origin).parent / "data"


def _theseus_dir() -> Path:
    if not THESEUS_DIR.is_dir():
        raise ConfigError(
            f"task proteins: source 'theseus-examples' needs Debian's theseus-examples ({THESEUS_DIR} is missing): "
            "apt-get install theseus-examples (or ./install.sh as root)"
        )
    return THESEUS_DIR


SOURCES: dict[str, Callable[[], Path]] = {"mdanalysistests": _mdanalysistests_dir, "theseus-examples": _theseus_dir}


def _base_name(path: Path) -> str:
    name = path.name.lower()
    for ext in (".gz", ".bz2"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def structure_files(source: str) -> list[tuple[str, Path]]:
    """(id prefix, path) of every PDB/mmCIF file of a source, sorted by path."""
    if source not in SOURCES:
        raise ConfigError(f"task proteins: unknown source {source!r}; known: {sorted(SOURCES)}")
    root = SOURCES[source]()
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and _base_name(p).endswith(STRUCTURE_SUFFIXES)]
    return [(f"{source}/{p.relative_to(root).as_posix()}", p) for p in files]


def read_text(path: Path) -> str | None:
    """The file's text (gzip/bzip2 undone), or None when it is not what its name says (e.g. a mislabelled stub)."""
    raw = path.read_bytes()
    try:
        if path.name.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
        elif path.name.lower().endswith(".bz2"):
            raw = bz2.decompress(raw)
    except (OSError, EOFError, ValueError):
        return None
    return raw.decode("latin-1")


def is_experimental(path: Path, text: str) -> bool:
    """An experimental-method record, or a file named by its PDB / SCOP id only (see the module docstring)."""
    base = _base_name(path)
    if base.endswith(".cif"):
        if "_exptl.method" in text:
            return True
    elif text.startswith("EXPDTA") or "\nEXPDTA" in text:
        return True
    return ID_NAME_RE.fullmatch(base.rsplit(".", 1)[0]) is not None


def parse_chains(sample_prefix: str, path: Path, text: str, min_length: int, max_length: int) -> list[Chain]:
    """The qualifying protein chains of the first model of one file (see the module docstring)."""
    import biotite.structure as struc
    from biotite.structure.io import pdb, pdbx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if _base_name(path).endswith(".cif"):
                atoms = pdbx.get_structure(pdbx.CIFFile.read(io.StringIO(text)), model=1)
            else:
                atoms = pdb.PDBFile.read(io.StringIO(text)).get_structure(model=1)
        except Exception:  # noqa: BLE001 - a file biotite cannot parse is not a sample; it is skipped
            return []
    atoms = atoms[struc.filter_amino_acids(atoms)]
    chains = []
    for chain_id in sorted(set(atoms.chain_id.tolist())):
        chain = atoms[atoms.chain_id == chain_id]
        chain = chain[~chain.hetero | (chain.res_name == "MSE")]
        if len(chain) == 0:
            continue
        starts = struc.get_residue_starts(chain)
        names = chain.res_name[starts]
        if any(n not in THREE_TO_ONE for n in names):
            continue
        residue_of = np.searchsorted(starts, np.arange(len(chain)), side="right") - 1
        first = np.full((len(starts), len(BACKBONE)), -1, dtype=np.int64)
        for j, atom in enumerate(BACKBONE):
            hits = np.flatnonzero(chain.atom_name == atom)
            res, at = np.unique(residue_of[hits], return_index=True)
            first[res, j] = hits[at]
        complete = (first >= 0).all(axis=1)
        coords = chain.coord[first[complete]]
        res_ids = chain.res_id[starts[complete]]
        letters = [THREE_TO_ONE[n] for n in names[complete]]
        if min_length <= len(letters) <= max_length:
            chains.append(Chain(f"{sample_prefix}:{chain_id.strip() or '_'}", "".join(letters),
                                np.asarray(coords, dtype=np.float64), np.asarray(res_ids, dtype=np.int64)))
    return chains


def sequence_identity(a: str, b: str) -> float:
    """Identical residues in the optimal semi-global BLOSUM62 alignment / length of the shorter sequence."""
    import biotite.sequence as bseq
    import biotite.sequence.align as align

    matrix = align.SubstitutionMatrix.std_protein_matrix()
    ali = align.align_optimal(
        bseq.ProteinSequence(a), bseq.ProteinSequence(b), matrix,
        gap_penalty=(-10, -1), terminal_penalty=False, max_number=1,
    )[0]
    trace = ali.trace
    both = (trace[:, 0] >= 0) & (trace[:, 1] >= 0)
    ca = np.frombuffer(a.encode(), dtype=np.uint8)[trace[both, 0]]
    cb = np.frombuffer(b.encode(), dtype=np.uint8)[trace[both, 1]]
    return float((ca == cb).sum()) / min(len(a), len(b))


def _kmers(s: str) -> set[str]:
    return {s[i: i + KMER] for i in range(len(s) - KMER + 1)}


def nonredundant(chains: list[Chain], max_identity: float) -> list[Chain]:
    """Greedy PISCES-style filter, longest first (ties by id): keep a chain if no kept one exceeds max_identity."""
    ordered = sorted(chains, key=lambda c: (-len(c.sequence), c.id))
    kept: list[Chain] = []
    kept_kmers: list[set[str]] = []
    by_sequence: set[str] = set()
    for chain in ordered:
        if chain.sequence in by_sequence:
            continue
        kmers = _kmers(chain.sequence)
        shared = [len(kmers & k) / max(1, min(len(kmers), len(k))) for k in kept_kmers]
        # most similar first: a redundant chain usually meets its match in the first alignment
        near = sorted((i for i, f in enumerate(shared) if f >= KMER_PREFILTER), key=lambda i: (-shared[i], i))
        redundant = any(sequence_identity(chain.sequence, kept[i].sequence) > max_identity for i in near)
        if not redundant:
            kept.append(chain)
            kept_kmers.append(kmers)
            by_sequence.add(chain.sequence)
    return sorted(kept, key=lambda c: c.id)


def candidate_chains(sources: list[str], min_length: int, max_length: int) -> list[Chain]:
    """Every qualifying chain of every experimental file of the sources, in file then chain order."""
    out: list[Chain] = []
    for source in sources:
        for prefix, path in structure_files(source):
            text = read_text(path)
            if text is None or not is_experimental(path, text):
                continue
            out.extend(parse_chains(prefix, path, text, min_length, max_length))
    return out


def _pool_inputs(sources: list[str], min_length: int, max_length: int, max_identity: float) -> list:
    """What the pool depends on besides the task code: sources and their files' sizes, filters, biotite."""
    import biotite

    listing = [(prefix, p.stat().st_size) for s in sources for prefix, p in structure_files(s)]
    return [sources, min_length, max_length, max_identity, biotite.__version__, listing]


def pool(sources: list[str], min_length: int, max_length: int, max_identity: float) -> list[Chain]:
    """The non-redundant chains of the sources, sorted by id (cached: the identity filter takes ~30 s)."""
    def build() -> list[dict]:
        chains = nonredundant(candidate_chains(sources, min_length, max_length), max_identity)
        return [{"id": c.id, "sequence": c.sequence, "backbone": np.round(c.backbone, 3).tolist(),
                 "residue_ids": c.residue_ids.tolist()} for c in chains]

    def parse(records: list[dict]) -> list[Chain]:
        return [Chain(r["id"], r["sequence"], np.asarray(r["backbone"], dtype=np.float64),
                      np.asarray(r["residue_ids"], dtype=np.int64)) for r in records]

    return cached_json("proteins", _pool_inputs(sources, min_length, max_length, max_identity), build, parse)


def load(
    n_samples: int,
    seed: int,
    sources: list[str] | None = None,
    min_length: int = 30,
    max_length: int = 1000,
    max_identity: float = 0.7,
) -> list[Sample]:
    """A seeded sample (uniform without replacement) of the non-redundant chains, sorted by id."""
    sources = list(sources or ["mdanalysistests", "theseus-examples"])
    if not 0.0 < max_identity <= 1.0:
        raise ConfigError(f"task proteins: option max_identity={max_identity} must lie in (0, 1]")
    if not 1 <= min_length <= max_length:
        raise ConfigError(f"task proteins: options min_length={min_length}, max_length={max_length} are not a range")
    chains = pool(sources, min_length, max_length, max_identity)
    if n_samples > len(chains):
        raise ConfigError(
            f"task proteins: n_samples={n_samples} exceeds the {len(chains)} chains left after the "
            f"{max_identity:.0%} identity filter; lower n_samples or add a source"
        )
    chosen = np.sort(np.random.default_rng(seed).choice(len(chains), size=n_samples, replace=False))
    return [
        Sample(id=c.id, sequence=c.sequence, backbone=c.backbone, residue_ids=c.residue_ids,
               info={"n_residues": len(c.sequence)})
        for c in (chains[i] for i in chosen)
    ]
