"""Small per-run PNGs for a child run's MLflow page: an embedding preview (stage 1), the bootstrap
distribution of cknna_to_ref, the CKNNA row to the task's other models and the TwoNN fit (stage 2).

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


def cknna_row_figure(row: dict[str, float], reference: str | None, title: str, path: Path) -> Path:
    """Write a horizontal bar chart of `row` ({other model: CKNNA from this model}) to `path`, highest first,
    the reference's bar highlighted. The height grows with the number of models (0.22 in each above 12)."""
    items = sorted(((m, float(v)) for m, v in row.items() if np.isfinite(v)), key=lambda mv: (-mv[1], mv[0]))
    if not items:
        raise ValueError("no finite CKNNA to another model to draw")
    fig = _figure()
    fig.set_size_inches(SIZE[0], max(SIZE[1], 1.4 + 0.22 * len(items)))
    ax = fig.add_subplot()
    names = [m for m, _ in items][::-1]
    values = [v for _, v in items][::-1]
    colours = ["tab:orange" if m == reference else "tab:blue" for m in names]
    ax.barh(range(len(names)), values, color=colours)
    ax.set_yticks(range(len(names)), [f"{m} (reference)" if m == reference else m for m in names], fontsize=6)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.3f}", va="center", fontsize=5)
    ax.set_xlim(min(0.0, min(values)), max(1.0, max(values)) * 1.12)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("CKNNA from this model", fontsize=7)
    ax.tick_params(axis="x", labelsize=6)
    fig.tight_layout()
    return _save(fig, path)


def twonn_curve(r1: np.ndarray, r2: np.ndarray, discard_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray, float]:
    """(x, y, d) of the TwoNN fit the run's intrinsic_dimension is (`benchmark.metrics.intrinsic_dim.twonn_fit`)."""
    from benchmark.metrics.intrinsic_dim import twonn_fit

    return twonn_fit(r1, r2, discard_fraction)


def id_curve_figure(x: np.ndarray, y: np.ndarray, d: float, title: str, path: Path) -> Path:
    """Write the TwoNN fit to `path`: the points (at most MAX_POINTS, evenly spaced in rank) and the fitted
    line y = d x through the origin, labelled with d."""
    idx = np.unique(np.linspace(0, len(x) - 1, min(len(x), MAX_POINTS)).astype(int))
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(x[idx], y[idx], s=4, c="tab:blue", linewidths=0, label=f"{len(x)} points (largest 10% of mu dropped)")
    xs = np.array([0.0, float(x.max())])
    ax.plot(xs, d * xs, color="k", lw=1.2, label=f"slope = intrinsic dimension {d:.2f}")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("log(mu), mu = r2 / r1", fontsize=7)
    ax.set_ylabel("-log(1 - F(mu))", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)
