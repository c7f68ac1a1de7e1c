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
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import DataError

CACHE_SCHEMA = 1


def cache_root() -> Path:
    return Path(os.environ.get("MATTERALIGN_CACHE", Path.home() / ".cache" / "matteralign")).expanduser()


def cache_key(fields: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines an embedding."""
    blob = json.dumps({"schema": CACHE_SCHEMA, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())


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

    def read_shard(self, index: int, expected_ids: list[str]) -> tuple[np.ndarray, np.ndarray | None] | None:
        """A finished shard, or None when it is absent or does not hold exactly these ids (then redone)."""
        path = self.shard_path(index)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                ids = [str(x) for x in z["ids"]]
                feats = z["features"]
                energies = z["energies"] if "energies" in z.files else None
        except (OSError, ValueError, KeyError):
            return None
        if ids != expected_ids or feats.shape[0] != len(ids):
            return None
        return feats, energies

    def write_shard(self, index: int, ids: list[str], features: np.ndarray, energies: np.ndarray | None) -> None:
        import io

        arrays: dict[str, np.ndarray] = {"ids": np.asarray(ids, dtype=str), "features": features}
        if energies is not None:
            arrays["energies"] = energies
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.shard_path(index), buf.getvalue())

    def finalize(self, ids: list[str], features: np.ndarray, energies: np.ndarray | None, meta: dict) -> Embeddings:
        atomic_save_npy(self.path / "features.npy", features)
        if energies is not None:
            atomic_save_npy(self.path / "energies.npy", energies)
        atomic_save_json(self.path / "ids.json", ids)
        atomic_save_json(self.path / "meta.json", {**meta, "key": self.key, "n": len(ids), "dim": int(features.shape[1])})
        shutil.rmtree(self.shard_dir, ignore_errors=True)
        return self.load()

    def load(self) -> Embeddings:
        if not self.complete:
            raise DataError(f"embedding cache entry {self.path} is incomplete; rerun the extraction to finish it")
        meta = json.loads((self.path / "meta.json").read_text())
        ids = json.loads((self.path / "ids.json").read_text())
        features = np.load(self.path / "features.npy", allow_pickle=False)
        epath = self.path / "energies.npy"
        energies = np.load(epath, allow_pickle=False) if epath.is_file() else None
        if features.ndim != 2 or features.shape[0] != len(ids):
            raise DataError(
                f"embedding cache entry {self.path} is inconsistent: features {features.shape} for {len(ids)} ids; "
                "delete the folder and rerun"
            )
        return Embeddings(self.key, self.path, features, ids, energies, meta)
