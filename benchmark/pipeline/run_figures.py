"""Small per-run PNGs for a child run's MLflow page: an embedding preview (stage 1) and the bootstrap
distribution of cknna_to_ref (stage 2).

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, nothing to close, safe in threads),
4 x 4 in at 80 dpi (320 x 320 px, tens of KB). Text is data (model keys, task names), never mathtext.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: figure size (inches) and resolution: 320 x 320 px
SIZE = (4.0, 4.0)
DPI = 80
#: points drawn and used for the projection at most (a fixed-seed subsample above): bounds the cost on big tasks
MAX_POINTS = 2000


def pca_2d(features: np.ndarray) -> np.ndarray:
    """The n x 2 projection of `features` (n x d) on its first two principal axes, from the eigenvectors of
    the smaller of the d x d covariance and the n x n Gram matrix of the centred rows (cost O(n d min(n, d)),
    about 10 ms at 1,000 x 256; a thin SVD is several times slower). Missing axes (d or n < 2) are zero."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"features must be an n x d array with n >= 1, got shape {x.shape}")
    x = x - x.mean(axis=0)
    out = np.zeros((x.shape[0], 2))
    m = min(2, *x.shape)
    if x.shape[1] <= x.shape[0]:
        _, vecs = np.linalg.eigh(x.T @ x)
        out[:, :m] = x @ vecs[:, ::-1][:, :m]
    else:
        vals, vecs = np.linalg.eigh(x @ x.T)
        out[:, :m] = vecs[:, ::-1][:, :m] * np.sqrt(np.clip(vals[::-1][:m], 0.0, None))
    return out


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    import matplotlib
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
    with matplotlib.rc_context({"text.parse_math": False}):
        fig.savefig(path, dpi=DPI)
    return path


def embedding_preview(features: np.ndarray, labels: np.ndarray | None, title: str, path: Path) -> Path:
    """Write a PCA scatter of `features` to `path`, coloured by `labels` (eV) where they are finite, grey
    otherwise. Above MAX_POINTS rows a fixed-seed subsample is projected and drawn."""
    x = np.asarray(features)
    idx = np.arange(len(x))
    if len(x) > MAX_POINTS:
        idx = np.sort(np.random.default_rng(0).choice(len(x), MAX_POINTS, replace=False))
    xy = pca_2d(x[idx])
    fig = _figure()
    ax = fig.add_subplot()
    lab = None if labels is None else np.asarray(labels, dtype=np.float64)[idx]
    has = lab is not None and np.isfinite(lab).any()
    if has:
        ok = np.isfinite(lab)
        ax.scatter(xy[~ok, 0], xy[~ok, 1], s=4, c="0.7", linewidths=0)
        sc = ax.scatter(xy[ok, 0], xy[ok, 1], s=4, c=lab[ok], cmap="viridis", linewidths=0)
        fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02).set_label("energy label (eV)", fontsize=7)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, c="tab:blue", linewidths=0)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("PC 1", fontsize=7)
    ax.set_ylabel("PC 2", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _save(fig, path)


def bootstrap_figure(replicates: np.ndarray, point: float, ci: tuple[float, float] | None, title: str,
                     path: Path) -> Path:
    """Write a histogram of the finite bootstrap replicates of cknna_to_ref to `path`, with the point value
    (solid line) and the 95% interval (shaded) when given."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        raise ValueError("no finite bootstrap replicate to draw")
    fig = _figure()
    ax = fig.add_subplot()
    if ci is not None and all(np.isfinite(ci)):
        ax.axvspan(ci[0], ci[1], color="tab:orange", alpha=0.2, label=f"95% CI [{ci[0]:.3f}, {ci[1]:.3f}]")
    ax.hist(reps, bins=min(30, max(5, reps.size // 5)), color="tab:blue", alpha=0.8)
    if np.isfinite(point):
        ax.axvline(point, color="k", lw=1.2, label=f"cknna_to_ref = {point:.3f}")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(f"cknna_to_ref, {reps.size} bootstrap replicates", fontsize=7)
    ax.set_ylabel("count", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)
