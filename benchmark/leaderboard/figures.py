"""Leaderboard figures (matplotlib, Agg): each function returns a Figure; `save` writes and closes it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

#: figure text is data (model keys, family and task names), never mathtext: "$\notacommand$" is drawn as typed
PLAIN_TEXT = {"text.parse_math": False}


def plain_text() -> None:
    """Make every figure drawn from here on treat `$` literally (the package's figures never use mathtext)."""
    matplotlib.rcParams.update(PLAIN_TEXT)


plain_text()


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for text in fig.findobj(Text):  # plain text even if rcParams were changed after the figure was made
        text.set_parse_math(False)
    with matplotlib.rc_context(PLAIN_TEXT):
        fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _heatmap(ax, matrix: pd.DataFrame, title: str, vmin: float = 0.0, vmax: float = 1.0) -> None:
    im = ax.imshow(matrix.to_numpy(dtype=float), cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(matrix.index)), [str(i) for i in matrix.index], fontsize=8)
    values = matrix.to_numpy(dtype=float)
    if len(matrix) <= 12:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def matrix_figure(matrix: pd.DataFrame, title: str) -> Figure:
    """A square model x model similarity matrix (CKNNA) as an annotated heatmap."""
    size = 2.5 + 0.45 * len(matrix)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    _heatmap(ax, matrix, title)
    return fig


def family_blocks(matrix: pd.DataFrame, families: dict[str, str]) -> pd.DataFrame:
    """Mean similarity between the models of two families; the diagonal of a model with itself is left out."""
    fams = sorted({families.get(m, "?") for m in matrix.index})
    values = matrix.to_numpy(dtype=float).copy()
    np.fill_diagonal(values, np.nan)
    labels = np.array([families.get(m, "?") for m in matrix.index])
    out = pd.DataFrame(np.nan, index=fams, columns=fams)
    for a in fams:
        for b in fams:
            block = values[np.ix_(labels == a, labels == b)]
            if np.isfinite(block).any():
                out.loc[a, b] = float(np.nanmean(block))
    return out


def dendrogram_figure(matrix: pd.DataFrame, title: str) -> Figure:
    """Average-linkage dendrogram of the models on the distance 1 - CKNNA (symmetrised, clipped at 0)."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    sim = matrix.to_numpy(dtype=float)
    dist = np.clip(1.0 - (sim + sim.T) / 2.0, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    fig, ax = plt.subplots(figsize=(6, 1.5 + 0.35 * len(matrix)))
    dendrogram(linkage(squareform(dist, checks=False), method="average"), labels=[str(m) for m in matrix.index],
               orientation="right", ax=ax, color_threshold=0)
    ax.set_xlabel("1 - CKNNA")
    ax.set_title(title)
    return fig


def alignment_vs_energy(per_task: pd.DataFrame) -> Figure:
    """CKNNA to the reference vs energy MAE, one point per (model, task), with Spearman's rho per task."""
    fig, ax = plt.subplots(figsize=(7, 5))
    rows = per_task[(per_task["is_reference"] != "true")]
    all_x = []
    for task, grp in rows.groupby("task", sort=True):
        mae = np.where(np.isfinite(grp["energy_mae"]), grp["energy_mae"], grp["probe_energy_mae"])
        ok = np.isfinite(mae) & np.isfinite(grp["cknna_to_ref"].to_numpy(dtype=float))
        if not ok.any():
            continue
        x, y = mae[ok], grp["cknna_to_ref"].to_numpy(dtype=float)[ok]
        all_x.extend(x)
        rho = spearman(x, y)
        label = f"{task}: rho = {rho:.2f} (n={len(x)})" if np.isfinite(rho) else f"{task}: rho n/a (n={len(x)})"
        ax.scatter(x, y, label=label)
        for xi, yi, name in zip(x, y, grp["model"].to_numpy()[ok]):
            ax.annotate(str(name), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if all_x and min(all_x) > 0:
        ax.set_xscale("log")
    ax.set_xlabel("energy MAE, eV/atom (own head, else ridge probe; lower is better)")
    ax.set_ylabel("CKNNA to reference (higher is better)")
    ax.set_title("Alignment vs energy error (Spearman's rho per task)")
    if all_x:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no model has both numbers", transform=ax.transAxes, ha="center")
    return fig


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for fewer than 3 points or a constant input."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(pd.Series(x).corr(pd.Series(y), method="spearman"))


def _grouped_bars(per_task: pd.DataFrame, column: str, ylabel: str, title: str) -> Figure:
    pivot = per_task.pivot_table(index="model", columns="task", values=column, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(pivot) * max(1, len(pivot.columns)) / 2 + 3), 4.5))
    width = 0.8 / max(1, len(pivot.columns))
    xs = np.arange(len(pivot))
    for j, task in enumerate(pivot.columns):
        ax.bar(xs + j * width - 0.4 + width / 2, pivot[task].to_numpy(dtype=float), width, label=str(task))
    ax.set_xticks(xs, [str(m) for m in pivot.index], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(pivot.columns):
        ax.legend(fontsize=8)
    return fig


def intrinsic_dimension_figure(per_task: pd.DataFrame) -> Figure:
    return _grouped_bars(per_task, "intrinsic_dimension", "intrinsic dimension (TwoNN)",
                         "Intrinsic dimension per model and task")


def info_imbalance_plane(per_task: pd.DataFrame) -> Figure:
    """Information-imbalance plane: Delta(ref->model) vs Delta(model->ref), one point per (model, task).

    Near (0, 0): the two spaces are equivalent; below the diagonal the model holds the reference's
    information better than the reference holds the model's.
    """
    fig, ax = plt.subplots(figsize=(6, 6))
    rows = per_task[per_task["is_reference"] != "true"]
    for task, grp in rows.groupby("task", sort=True):
        x = grp["info_imbalance_ref_to_model"].to_numpy(dtype=float)
        y = grp["info_imbalance_model_to_ref"].to_numpy(dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], label=str(task))
        for xi, yi, name in zip(x[ok], y[ok], grp["model"].to_numpy()[ok]):
            ax.annotate(str(name), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.plot([0, 1.1], [0, 1.1], color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 1.1)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("Delta(reference -> model)")
    ax.set_ylabel("Delta(model -> reference)")
    ax.set_title("Information-imbalance plane (lower is more informative)")
    ax.legend(fontsize=8)
    return fig


def id_vs_ood(models: pd.DataFrame) -> Figure:
    """ID score vs OOD score per model; red crosses mark OOD collapse (see table.py)."""
    fig, ax = plt.subplots(figsize=(6, 6))
    ok = np.isfinite(models["id_score"].astype(float)) & np.isfinite(models["ood_score"].astype(float))
    for _, r in models[ok].iterrows():
        collapsed = r["ood_collapse"] == "yes"
        ax.scatter(r["id_score"], r["ood_score"], marker="x" if collapsed else "o", color="red" if collapsed else "C0")
        ax.annotate(str(r["model"]), (r["id_score"], r["ood_score"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("ID score: mean CKNNA to reference on id tasks")
    ax.set_ylabel("OOD score: mean CKNNA to reference on ood tasks")
    ax.set_title("In- vs out-of-distribution alignment (x: OOD collapse)")
    return fig
