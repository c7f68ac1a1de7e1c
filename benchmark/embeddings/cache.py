"""Content-addressed embedding cache with atomic shards, so interrupted extraction resumes exactly.

Layout under the cache root (``$MATTERALIGN_CACHE``, default ``~/.cache/matteralign``)::

    embeddings/<key>/shards/shard-000003.npz   written while extracting, one file per group of batches
    embeddings/<key>/features.npy              the finished (n, d) array, in sample order
    embeddings/<key>/energies.npy              model energies (total eV), when the model has a head
    embeddings/<key>/ids.json                  the sample ids, in order
    embeddings/<key>/meta.json                 written last: its presence marks the entry complete

Every file is written to a temporary name and moved into place with ``os.replace``, so a killed run
leaves whole files or nothing; the key hashes everything that determines the numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import DataError
from benchmark.io import HOST_TAG as _HOST
from benchmark.io import array_digest, atomic_save_json, atomic_save_npy, atomic_write_bytes, cache_root

__all__ = [
    "CACHE_SCHEMA", "CacheMismatch", "EmbeddingStore", "Embeddings", "arrays_digest", "atomic_save_json",
    "atomic_save_npy", "atomic_write_bytes", "cache_key", "cache_root", "pid_alive", "remove_stale_tmp",
]

CACHE_SCHEMA = 1


def cache_key(fields: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines an embedding."""
    blob = json.dumps({"schema": CACHE_SCHEMA, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


#: temporary files name their writer (host digest + pid), so a cleanup removes only those of dead writers
_TMP_OWNER = re.compile(r"\.h(?P<host>[0-9a-f]{8})p(?P<pid>\d+)\.[^.]*\.tmp$")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(folder: Path) -> None:
    """Delete temporary files in `folder` whose writer died on this host (a killed run's leftovers).

    A live writer's file is never touched, even when another process finishes the same cache entry at the same
    time; files written from another host are left alone (its processes cannot be checked from here).
    """
    for tmp in folder.glob(".*.tmp"):
        owner = _TMP_OWNER.search(tmp.name)
        if owner is None or (owner["host"] == _HOST and not pid_alive(int(owner["pid"]))):
            tmp.unlink(missing_ok=True)


class CacheMismatch(DataError):
    """A finished entry whose arrays do not match the digest written with them (or that has none): recompute it."""


def arrays_digest(features: np.ndarray, energies: np.ndarray | None) -> dict[str, str | None]:
    """The digests written in meta.json at write time and checked on every read (sha256 of shape, dtype, bytes)."""
    return {"features": array_digest(features), "energies": None if energies is None else array_digest(energies)}


@dataclass
class Embeddings:
    """A finished cache entry."""

    key: str
    path: Path
    features: np.ndarray
    ids: list[str]
    energies: np.ndarray | None
    meta: dict[str, Any]


class EmbeddingStore:
    """One cache entry: shards while extracting, a finished array afterwards."""

    def __init__(self, key: str, root: Path | None = None) -> None:
        self.key = key
        self.path = (root or cache_root()) / "embeddings" / key
        self.shard_dir = self.path / "shards"

    @property
    def complete(self) -> bool:
        return (self.path / "meta.json").is_file()

    def shard_path(self, index: int) -> Path:
        return self.shard_dir / f"shard-{index:06d}.npz"

    def read_shard(
        self, index: int, expected_ids: list[str], dtype: np.dtype | type | None = None
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """A finished, well-formed shard; None when it is absent, unreadable or wrong in any way (then redone).

        Well-formed: exactly these ids, 2-D finite features of `dtype` (when given) with one row per id,
        and energies (if any) of shape (n,).
        """
        path = self.shard_path(index)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                ids = [str(x) for x in z["ids"]]
                feats = z["features"]
                energies = z["energies"] if "energies" in z.files else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if ids != expected_ids or feats.ndim != 2 or feats.shape[0] != len(ids):
            return None
        if (dtype is not None and feats.dtype != np.dtype(dtype)) or not np.isfinite(feats).all():
            return None
        if energies is not None and energies.shape != (len(ids),):
            return None
        return feats, energies

    def write_shard(self, index: int, ids: list[str], features: np.ndarray, energies: np.ndarray | None) -> None:
        import io

        arrays: dict[str, np.ndarray] = {"ids": np.asarray(ids, dtype=str), "features": features}
        if energies is not None:
            arrays["energies"] = energies
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            atomic_write_bytes(self.shard_path(index), buf.getvalue())
        except FileNotFoundError:
            if not self.complete:  # the shard folder vanished, and not because another process finished the entry
                raise

    def finalize(self, ids: list[str], features: np.ndarray, energies: np.ndarray | None, meta: dict) -> Embeddings:
        remove_stale_tmp(self.path)
        atomic_save_npy(self.path / "features.npy", features)
        if energies is not None:
            atomic_save_npy(self.path / "energies.npy", energies)
        atomic_save_json(self.path / "ids.json", ids)
        atomic_save_json(self.path / "meta.json", {
            **meta, "key": self.key, "n": len(ids), "dim": int(features.shape[1]),
            "digest": arrays_digest(features, energies),
        })
        shutil.rmtree(self.shard_dir, ignore_errors=True)
        return self.load()

    def invalidate(self) -> None:
        """Mark the entry incomplete (meta.json first) and drop its finished arrays, so it is recomputed."""
        for name in ("meta.json", "features.npy", "energies.npy", "ids.json"):
            (self.path / name).unlink(missing_ok=True)

    def load(self) -> Embeddings:
        """The finished entry, its arrays checked against the digest in meta.json (~1 GB/s of sha256).

        CacheMismatch (a DataError) naming the folder when any file is unreadable, inconsistent, or differs from
        what was written (wrong width, other values, a deleted energies.npy) or the entry predates digests.
        """
        if not self.complete:
            raise DataError(f"embedding cache entry {self.path} is incomplete; rerun the extraction to finish it")
        fix = "delete the folder and rerun (it is recomputed)"
        try:
            meta = json.loads((self.path / "meta.json").read_text(encoding="utf-8"))
            ids = json.loads((self.path / "ids.json").read_text(encoding="utf-8"))
            features = np.load(self.path / "features.npy", allow_pickle=False)
            epath = self.path / "energies.npy"
            energies = np.load(epath, allow_pickle=False) if epath.is_file() else None
        except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
            raise CacheMismatch(f"embedding cache entry {self.path} is corrupt ({type(exc).__name__}: {exc}); {fix}") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("digest"), dict):
            raise CacheMismatch(f"embedding cache entry {self.path} has no content digest (written before digests); {fix}")
        if not isinstance(ids, list) or features.ndim != 2 or features.shape[0] != len(ids):
            raise CacheMismatch(
                f"embedding cache entry {self.path} is inconsistent: features {features.shape} for "
                f"{len(ids) if isinstance(ids, list) else '?'} ids; {fix}"
            )
        if not np.isfinite(features).all():
            raise CacheMismatch(f"embedding cache entry {self.path} holds NaN/inf features; {fix}")
        if energies is not None and energies.shape != (len(ids),):
            raise CacheMismatch(f"embedding cache entry {self.path}: energies {energies.shape} for {len(ids)} ids; {fix}")
        found = arrays_digest(features, energies)
        for part, want in meta["digest"].items():
            if found.get(part) != want:
                state = "missing" if found.get(part) is None else ("unexpected" if want is None else "changed")
                raise CacheMismatch(
                    f"embedding cache entry {self.path}: {part} {state} since it was written (digest mismatch); {fix}"
                )
        return Embeddings(self.key, self.path, features, ids, energies, meta)
