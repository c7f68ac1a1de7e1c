"""On-disk cache of kNN graphs, keyed by a digest of the features they were computed from."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from benchmark.io import array_digest, atomic_write_bytes
from benchmark.knn.graph import KnnGraph, knn_graph

FORMAT_VERSION = 2


def features_digest(X: np.ndarray) -> str:
    """sha256 over shape, dtype and bytes of X: any change of the features changes it."""
    return array_digest(X)


def _graph_digest(indices: np.ndarray, values: np.ndarray) -> str:
    return array_digest(indices) + array_digest(values)


def _load(path: Path, n: int, k: int, metric: str, digest: str) -> KnnGraph | None:
    """The cached graph if it is readable, intact (content digest) and matches; None otherwise (then recomputed).

    A file that cannot be read or whose arrays differ from the digest written with them is reported on stderr,
    naming it; a valid graph of other features / metric / smaller k is replaced silently (an ordinary miss).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format_version"]) != FORMAT_VERSION:
                return None
            if not (str(z["metric"]) == metric and str(z["digest"]) == digest):
                return None
            indices, values = z["indices"], z["values"]
            intact = str(z["content_digest"]) == _graph_digest(indices, values)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, TypeError) as exc:
        print(f"matteralign: kNN cache file {path} is unreadable ({type(exc).__name__}: {exc}); recomputing it",
              file=sys.stderr)
        return None
    if not intact:
        print(f"matteralign: kNN cache file {path} does not match its content digest; recomputing it", file=sys.stderr)
        return None
    if indices.ndim != 2 or indices.shape[0] != n or indices.shape[1] < k or values.shape != indices.shape:
        return None
    return KnnGraph(indices, values, metric)


def cached_knn_graph(X: np.ndarray, k: int, metric: str, path: Path, **kw) -> KnnGraph:
    """`knn_graph(X, k, metric, **kw)` through a .npz cache at `path`, truncated to k.

    A cached graph is reused when it was computed from the same features (content digest),
    with the same metric and at least k neighbours, and its own arrays match the digest written with them;
    otherwise (a truncated, empty or corrupt file included) the graph is recomputed and written atomically
    (benchmark.io.atomic_write_bytes), so concurrent runs never read a half-written file.
    """
    path = Path(path)
    digest = features_digest(X)
    g = _load(path, X.shape[0], k, metric, digest) if path.exists() else None
    if g is None:
        g = knn_graph(X, k, metric=metric, **kw)
        buf = io.BytesIO()
        np.savez(
            buf,
            indices=g.indices,
            values=g.values,
            metric=np.array(metric),
            digest=np.array(digest),
            content_digest=np.array(_graph_digest(g.indices, g.values)),
            format_version=np.array(FORMAT_VERSION),
        )
        atomic_write_bytes(path, buf.getvalue())
    return g.truncate(k)
