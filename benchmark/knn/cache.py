"""On-disk cache of kNN graphs, keyed by a digest of the features they were computed from."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from benchmark.knn.graph import KnnGraph, knn_graph

FORMAT_VERSION = 1


def features_digest(X: np.ndarray) -> str:
    """sha256 over shape, dtype and bytes of X: any change of the features changes it."""
    X = np.ascontiguousarray(X)
    h = hashlib.sha256(f"{X.shape}|{X.dtype.str}|".encode())
    h.update(memoryview(X).cast("B"))
    return h.hexdigest()


def _load(path: Path, n: int, k: int, metric: str, digest: str) -> KnnGraph | None:
    """The cached graph if it is readable and matches; None otherwise (it is then recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            ok = (
                int(z["format_version"]) == FORMAT_VERSION
                and str(z["metric"]) == metric
                and str(z["digest"]) == digest
                and z["indices"].shape[0] == n
                and z["indices"].shape[1] >= k
            )
            if not ok:
                return None
            return KnnGraph(z["indices"], z["values"], metric)
    except (OSError, ValueError, KeyError):
        return None


def cached_knn_graph(X: np.ndarray, k: int, metric: str, path: Path, **kw) -> KnnGraph:
    """`knn_graph(X, k, metric, **kw)` through a .npz cache at `path`, truncated to k.

    A cached graph is reused when it was computed from the same features (content digest),
    with the same metric and at least k neighbours; otherwise the graph is recomputed and
    written atomically (temporary file in the same folder, then os.replace), so concurrent
    runs never read a half-written file.
    """
    path = Path(path)
    digest = features_digest(X)
    g = _load(path, X.shape[0], k, metric, digest) if path.exists() else None
    if g is None:
        g = knn_graph(X, k, metric=metric, **kw)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    indices=g.indices,
                    values=g.values,
                    metric=np.array(metric),
                    digest=np.array(digest),
                    format_version=np.array(FORMAT_VERSION),
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return g.truncate(k)
