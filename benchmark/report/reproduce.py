"""`matteralign reproduce`: run what the paper's claims need, test each claim, write report/REPORT.md.

Runs the default benchmark (cached embeddings are reused), the convergence experiment (unless skipped),
computes every pairwise alignment with its permutation null, evaluates claims (a)-(d) with
`benchmark.report.claims`, and writes REPORT.md and figures/*.png. Every number in the report is either a
metric of a child run (its run id is on the line) or is logged as a metric of the report's own MLflow run
(a run of kind `report`), whose id is on the line too.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark import __version__, tracking
from benchmark.embeddings import cache_root
from benchmark.errors import DataError
from benchmark.pipeline.run import run_benchmark
from benchmark.pipeline.types import RunConfig, RunSummary
from benchmark.registry import load_models, load_tasks, models_by_key
from benchmark.report import claims as C
from benchmark.report.null import cosine_graph, permutation_null, pooled_permutation_null
from benchmark.tracking import schema as S

TINY_N_SAMPLES = 100
METRIC_COLUMNS = (
    "energy_mae", "probe_energy_mae", "cknna_to_ref", "cknna_to_ref_ci_low", "cknna_to_ref_ci_high",
    "mutual_knn_to_ref", "cka_to_ref", "intrinsic_dimension", "mle_dimension", "info_imbalance_model_to_ref",
    "info_imbalance_ref_to_model",
)

PAIR_COLUMNS = [
    "task", "model_a", "model_b", "run_a", "run_b", "group_a", "group_b", "cknna", "mutual_knn", "null_mean",
    "null_std", "z", "p_value", "mknn_z", "mknn_p",
]


def _say(msg: str) -> None:
    print(f"[reproduce] {msg}", file=sys.stderr, flush=True)


# --- frames from a run -----------------------------------------------------------------------------------


def results_frame(summary: RunSummary, entries: dict) -> pd.DataFrame:
    """One row per (model, task) of the run with status, role, modality, reference flag, run id, metrics."""
    rows = []
    for r in summary.results:
        entry = entries.get(r.model)
        ref = summary.references.get(r.task)
        row: dict[str, Any] = {
            "model": r.model, "task": r.task, "status": r.status, "reason": r.reason, "role": r.role,
            "run_id": r.run_id, "modality": entry.modality if entry else "",
            "group": C.MODALITY_GROUP.get(entry.modality, entry.modality) if entry else "",
            "rotational": bool(entry and entry.options.get("features") == "equivariant"),
            "is_reference": bool(ref is not None and ref.model == r.model),
        }
        row.update({m: r.metrics.get(m, np.nan) for m in METRIC_COLUMNS})
        rows.append(row)
    return pd.DataFrame(rows)


def pair_frame(summary: RunSummary, entries: dict, k: int, n_perm: int, seed: int,
               knn_dir: Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Every model pair per task: CKNNA, mutual-kNN and their row-permutation nulls; also the graphs (the
    run's cached alignment graphs when knn_dir is its kNN cache)."""
    rows, graphs = [], {}
    for task in sorted({r.task for r in summary.results}):
        ok = sorted((r for r in summary.results if r.task == task and r.status == "ok" and r.features is not None),
                    key=lambda r: r.model)
        for r in ok:
            try:
                graphs[(task, r.model)] = cosine_graph(r.features, min(k, len(r.ids) - 1), knn_dir, r.cache_key)
            except DataError as exc:
                _say(f"{r.model}/{task}: no alignment graph ({exc})")
        ok = [r for r in ok if (task, r.model) in graphs]
        for i, a in enumerate(ok):
            for b in ok[i + 1:]:
                ga, gb = graphs[(task, a.model)], graphs[(task, b.model)]
                null = permutation_null(ga, gb, ga.k, n_perm=n_perm, seed=seed)
                ea, eb = entries[a.model], entries[b.model]
                rows.append({
                    "task": task, "model_a": a.model, "model_b": b.model, "run_a": a.run_id, "run_b": b.run_id,
                    "group_a": C.MODALITY_GROUP.get(ea.modality, ea.modality),
                    "group_b": C.MODALITY_GROUP.get(eb.modality, eb.modality),
                    "cknna": null["cknna"].observed, "mutual_knn": null["mutual_knn"].observed,
                    "null_mean": null["cknna"].null_mean, "null_std": null["cknna"].null_std,
                    "z": null["cknna"].z, "p_value": null["cknna"].p_value,
                    "mknn_z": null["mutual_knn"].z, "mknn_p": null["mutual_knn"].p_value,
                })
    return pd.DataFrame(rows, columns=PAIR_COLUMNS), graphs


def string_3d_null(pairs: pd.DataFrame, graphs: dict, n_perm: int, seed: int) -> dict[str, Any] | None:
    """Pooled permutation null of the mean CKNNA over every string-3D pair (all tasks)."""
    if pairs.empty:
        return None
    sv = pairs[C.string_3d_mask(pairs)]
    if sv.empty:
        return None
    pg = [(graphs[(r.task, r.model_a)], graphs[(r.task, r.model_b)]) for r in sv.itertuples()]
    return pooled_permutation_null(pg, pg[0][0].k, n_perm=n_perm, seed=seed).as_dict()


# --- figures ---------------------------------------------------------------------------------------------


def _plt():
    from benchmark.leaderboard.figures import plain_text, plt  # Agg backend

    plain_text()  # names are never parsed as mathtext
    return plt


def alignment_figure(pairs: pd.DataFrame, path: Path) -> Path | None:
    """Pairwise CKNNA per task (models ordered by representation group)."""
    if pairs.empty:
        return None
    plt = _plt()
    tasks = sorted(pairs["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        t = pairs[pairs["task"] == task]
        group = {**dict(zip(t["model_a"], t["group_a"])), **dict(zip(t["model_b"], t["group_b"]))}
        models = sorted(group, key=lambda m: (group[m], m))
        M = pd.DataFrame(np.eye(len(models)), index=models, columns=models)
        for r in t.itertuples():
            M.loc[r.model_a, r.model_b] = M.loc[r.model_b, r.model_a] = r.cknna
        im = ax.imshow(M.to_numpy(float), vmin=0, vmax=1, cmap="viridis")
        labels = [f"{m} [{group[m]}]" for m in models]
        ax.set_xticks(range(len(models)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(models)), labels, fontsize=7)
        ax.set_title(f"CKNNA, {task}")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, path)


def intrinsic_dimension_figure(results: pd.DataFrame, path: Path) -> Path | None:
    ok = results[np.isfinite(results["intrinsic_dimension"].astype(float))]
    if ok.empty:
        return None
    plt = _plt()
    tasks = sorted(ok["task"].unique())
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tasks), 4))
    for i, task in enumerate(tasks):
        t = ok[ok["task"] == task]
        band = C.PAPER_ID_BANDS.get(task)
        if band:
            ax.fill_between([i - 0.35, i + 0.35], band[0], band[1], color="orange", alpha=0.3,
                            label="paper" if i == 0 or "paper" not in ax.get_legend_handles_labels()[1] else None)
        x = i + np.linspace(-0.2, 0.2, len(t))
        ax.scatter(x, t["intrinsic_dimension"], c=["C1" if r else "C0" for r in t["rotational"]], zorder=3)
        for xi, r in zip(x, t.itertuples()):
            ax.annotate(r.model, (xi, r.intrinsic_dimension), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("TwoNN intrinsic dimension")
    ax.set_title("Intrinsic dimension per task (orange: paper's band)")
    fig.tight_layout()
    return _save(fig, path)


def id_ood_figure(table: pd.DataFrame, path: Path) -> Path | None:
    both = table[np.isfinite(table["align_id"]) & np.isfinite(table["align_ood"])] if len(table) else table
    if both.empty:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (short, label) in zip(axes, (("align", "CKNNA to reference"), ("twonn", "TwoNN intrinsic dimension"),
                                         ("asym", "Delta(model->ref) - Delta(ref->model)"))):
        for r in both.itertuples():
            ax.plot([0, 1], [getattr(r, f"{short}_id"), getattr(r, f"{short}_ood")], "o-",
                    c="C3" if r.collapse else "C0", alpha=0.8)
            ax.annotate(r.model, (1, getattr(r, f"{short}_ood")), fontsize=6, xytext=(3, 0), textcoords="offset points")
        ax.set_xticks([0, 1], ["ID", "OOD"])
        ax.set_xlim(-0.3, 1.6)
        ax.set_title(label, fontsize=9)
    fig.suptitle("ID vs OOD per model (red: collapse indicator)")
    fig.tight_layout()
    return _save(fig, path)


def null_figure(pairs: pd.DataFrame, path: Path) -> Path | None:
    if pairs.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for task, t in pairs.groupby("task"):
        ax.errorbar(t["cknna"], t["null_mean"], yerr=2 * t["null_std"], fmt="o", label=task, capsize=2)
    lim = [min(0, pairs["null_mean"].min() - 0.05), max(1, pairs["cknna"].max())]
    ax.plot(lim, lim, "k:", lw=0.8)
    ax.set_xlabel("observed CKNNA of a model pair")
    ax.set_ylabel("row-permutation null (mean +- 2 sd)")
    ax.set_title("Null calibration of pairwise CKNNA")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


# --- report text -----------------------------------------------------------------------------------------


def _f(v: Any, digits: int = 3) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return str(v)


def _p(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def metric_name(claim_id: str, part_name: str, what: str) -> str:
    """MLflow metric name under which a part's number is logged in the report run."""
    slug = re.sub(r"[^a-z0-9]+", "_", part_name.lower()).strip("_")
    return f"claim_{claim_id}.{slug}.{what}"


def part_metrics(claim: dict[str, Any]) -> dict[str, float]:
    out = {}
    for p in claim["parts"]:
        vals = {"value": p["value"], "p_value": p["p_value"], "n": p["n"]}
        if p["ci"]:
            vals["ci_low"], vals["ci_high"] = p["ci"]
        for k, v in {**vals, **{k: v for k, v in p["extra"].items() if isinstance(v, (int, float))}}.items():
            if v is not None and np.isfinite(float(v)):
                out[metric_name(claim["id"], p["name"], k)] = float(v)
    return out


def _table(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    cols = [c for c in columns if c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in frame[cols].iterrows():
        cells = [(f"`{r[c]}`" if isinstance(r[c], str) and r[c] else "") if c.startswith("run") or c.endswith("run_id")
                 else _f(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def claim_section(claim: dict[str, Any], cite: str) -> list[str]:
    lines = [f"## Claim ({claim['id']}): {claim['verdict'].upper()}", "", f"> {claim['claim']}", "",
             f"**Verdict: {claim['verdict']}** ({claim['reason']}). Runs: {cite}", ""]
    for p in claim["parts"]:
        if p["verdict"] == C.UNTESTABLE and not np.isfinite(p["value"]):
            lines.append(f"- **{p['name']}** ({p['statistic']}): not testable here: {p['reason']} (n = {p['n']}). "
                         f"Runs: {cite}")
            continue
        stat = [f"95% CI [{_f(p['ci'][0])}, {_f(p['ci'][1])}]"] if p["ci"] else []
        stat += [f"p = {_p(p['p_value'])}"] if p["p_value"] is not None else []
        stat += [f"n = {p['n']}"]
        lines.append(
            f"- **{p['name']}**: {p['statistic']} = {_f(p['value'])} ({', '.join(stat)}): "
            f"**{p['verdict']}**. {p['reason']}. Runs: {cite}"
        )
    srcs = sorted({s for p in claim["parts"] for s in p["sources"]})
    lines += ["", f"Source runs ({len(srcs)}): " + (", ".join(f"`{s}`" for s in srcs) or "none"), ""]
    return lines


_ABS_PATH = re.compile(r"(?<![\w/.])/(?:[\w.+\-]+/)*[\w.+\-]+")
PRODUCED_ELSEWHERE = (
    "This report was produced on another machine: the run ids below live in the tracking store that "
    "`matteralign reproduce` wrote there (not in this repository), and paths are relative to this folder "
    "or shortened to `.../name`. Rerun `matteralign reproduce` to get a store whose runs you can open."
)


def portable(text: str, out_dir: Path) -> str:
    """`text` with every absolute path made relative to the report folder, or shortened to `.../name` when it
    lies outside it, so a committed report names nothing of the machine that produced it."""
    base = Path(out_dir).resolve()

    def fix(m: re.Match) -> str:
        p = Path(m.group(0))
        try:
            return str(p.resolve().relative_to(base)) or "."
        except ValueError:
            return f".../{p.name}"

    return _ABS_PATH.sub(fix, text.replace("sqlite:///", "sqlite:"))


def write_report(ctx: dict[str, Any], path: Path) -> Path:
    """REPORT.md from the evaluated claims and frames in `ctx` (see `main`)."""
    rid, bid = ctx["report_run_id"], ctx["benchmark_run_id"]
    cite = f"benchmark `{bid}`, report `{rid}`"
    conv = ctx.get("convergence")
    ccite = cite + (f", convergence `{conv.summary.parent_run_id}`" if conv else "")
    L = [
        "# matteralign reproduce: the paper's claims on this benchmark", "",
        f"Generated {ctx['date']} by `matteralign reproduce --size {ctx['size']}`. Tracking store `{ctx['uri']}`, "
        f"experiment `{ctx['experiment']}`; benchmark version `{__version__}` and git `{ctx['git_sha'][:12]}` are tags "
        f"of the report run `{rid}`.", "", PRODUCED_ELSEWHERE, "",
        f"- Report run (every statistic below is one of its metrics): `{rid}`",
        f"- Benchmark parent run (default models x tasks): `{bid}`",
    ]
    if conv:
        from benchmark.report.convergence import TASK as CONVERGENCE_TASK

        L.append(f"- Convergence parent run (SchNet family on {CONVERGENCE_TASK}): "
                 f"`{conv.summary.parent_run_id}`; training runs: "
                 + ", ".join(f"`{r['run_id']}`" for r in conv.records))
    else:
        L.append("- Convergence experiment: skipped (`--skip-convergence`)")
    L += [f"- Wall time of this reproduce: {ctx['wall_s']:.1f} s (report run `{rid}`, metric `wall_seconds`)", "",
          "## Verdicts", "", "| claim | verdict | why |", "|---|---|---|"]
    for c in ctx["claims"]:
        L.append(f"| ({c['id']}) {c['claim']} | **{c['verdict']}** | {c['reason']} (runs: {ccite if c['id'] == 'b' else cite}) |")
    L.append("")
    res, pairs = ctx["results"], ctx["pairs"]
    L += ["## What ran", "",
          "Alignment is to each task's reference model (docs/run-schema.md); `is_reference` rows align with "
          "themselves and are left out of every alignment statistic.", ""]
    L += _table(res, ["model", "task", "role", "group", "status", "is_reference", "energy_mae", "cknna_to_ref",
                      "cknna_to_ref_ci_low", "cknna_to_ref_ci_high", "intrinsic_dimension",
                      "info_imbalance_model_to_ref", "info_imbalance_ref_to_model", "run_id"])
    skipped = res[res["status"] != "ok"]
    if len(skipped):
        L += ["", "Not run (these cannot enter any statistic):", ""]
        L += [f"- {r.model}/{r.task}: {r.status}: {r.reason} (run `{r.run_id}`)" for r in skipped.itertuples()]
    L.append("")
    for c in ctx["claims"]:
        L += claim_section(c, ccite if c["id"] == "b" else cite)
        if c["id"] == "a" and not pairs.empty:
            L += ["Pairwise CKNNA (platonic-rep preparation, cosine kNN, k as in the run) with the row-permutation "
                  f"null ({ctx['n_perm']} permutations of model_b's rows):", ""]
            L += _table(pairs, ["task", "model_a", "model_b", "group_a", "group_b", "cknna", "mutual_knn", "null_mean",
                                "null_std", "z", "p_value", "mknn_z", "run_a", "run_b"])
            L += ["", "![pairwise alignment](figures/alignment.png)", ""]
        if c["id"] == "b" and conv is not None:
            L += [f"Convergence family (reference: best held-out MAE, `{conv.best}`; `{conv.random_key}` is its "
                  "random-init copy):", ""]
            L += _table(conv.frame, ["model", "train_size", "epochs", "status", "test_mae", "energy_mae", "cknna_to_ref",
                                     "cknna_to_ref_ci_low", "cknna_to_ref_ci_high", "null_z", "run_id", "train_run_id"])
            L += ["", "![convergence](figures/convergence.png)", ""]
        if c["id"] == "c":
            L += ["![intrinsic dimension](figures/intrinsic_dimension.png)", ""]
        if c["id"] == "d" and len(ctx["id_ood"]):
            L += ["Per model, means over its ID and its OOD tasks (reference rows excluded); `asym` = "
                  "Delta(model->ref) - Delta(ref->model):", ""]
            L += _table(ctx["id_ood"], ["model", "n_id", "n_ood", "align_id", "align_ood", "twonn_id", "twonn_ood",
                                        "ii_m2r_id", "ii_m2r_ood", "asym_id", "asym_ood", "collapse", "run_ids"])
            L += ["", "![ID vs OOD](figures/id_vs_ood.png)", ""]
    L += null_section(ctx, cite)
    L += method_notes(rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(portable("\n".join(L) + "\n", path.parent))
    return path


def null_section(ctx: dict[str, Any], cite: str) -> list[str]:
    pairs, conv, s3 = ctx["pairs"], ctx.get("convergence"), ctx.get("string_3d")
    L = ["## Null calibration", "",
         "Row-permutation null: model_b's rows are shuffled (its kNN graph relabelled), which keeps both geometries "
         "and breaks the pairing; z = (observed - null mean) / null sd, p = (#null >= observed + 1) / (n + 1).", ""]
    if not pairs.empty:
        above = int((pairs["p_value"] < C.ALPHA).sum())
        L.append(f"- {above} of {len(pairs)} model pairs have CKNNA above their permutation null at p < {C.ALPHA}; "
                 f"median z = {_f(float(pairs['z'].median()))}; median null mean = "
                 f"{_f(float(pairs['null_mean'].median()))}. Runs: {cite}")
    if s3:
        L.append(f"- String vs 3D pooled: mean CKNNA {_f(s3['observed'])} vs null {_f(s3['null_mean'])} +- "
                 f"{_f(s3['null_std'])} (z = {_f(s3['z'])}, p = {_p(s3['p_value'])}). Runs: {cite}")
    if conv is not None:
        rnd = conv.frame[conv.frame["random_init"]]
        null = conv.nulls.get(conv.random_key)
        if len(rnd) and null:
            r = rnd.iloc[0]
            L.append(f"- Random-init null: `{conv.best}` vs its untrained copy: CKNNA {_f(r['cknna_to_ref'])} "
                     f"(row-permutation z = {_f(null['z'])}, p = {_p(null['p_value'])}); trained checkpoints must beat "
                     f"this to show learning beyond the architecture's prior. Runs: `{r['run_id']}`, "
                     f"convergence `{conv.summary.parent_run_id}`, report `{ctx['report_run_id']}`")
        elif len(rnd):
            L.append(f"- Random-init null: `{conv.random_key}` did not produce an alignment ({rnd.iloc[0]['status']}: "
                     f"{rnd.iloc[0]['reason']}).")
    L += ["", "![null calibration](figures/null_calibration.png)", ""]
    return L


def method_notes(report_run_id: str) -> list[str]:
    cite = f" (thresholds: params of report run `{report_run_id}`)"
    lines = [
        f"- Verdicts: a part holds when its test is significant at p < {C.ALPHA} in the claimed direction; a claim "
        "holds when every testable part holds; a part is not testable here when the models that ran cannot answer it.",
        "- (a) groups: atoms models are 3D; SMILES and text models are string models. Within-group minus cross-group "
        "mean CKNNA over all pairs of all tasks; p-value from shuffling the group labels over models; CI from a "
        "stratified bootstrap over pairs. String vs 3D: pooled row-permutation null of the mean CKNNA of those pairs.",
        "- (b) Spearman rho between energy MAE and CKNNA to the best model (scipy p-value, percentile bootstrap CI "
        "over models, reference excluded); the claim predicts rho < 0. Convergence family: held-out test MAE of the "
        "training runs (one shared test set), and the per-element-referenced MAE on the alignment task.",
        f"- (c) TwoNN (DADApy defaults) per (model, task); a band is narrow when IQR <= {C.MAX_RELATIVE_IQR} x median "
        "and agrees with the paper when the paper's range (QM9 'about 5' read as 4-6; materials 8-10, task crystals) "
        "meets the interquartile range.",
        f"- (d) per model, means over its ID and OOD tasks (roles from the task YAMLs); collapse indicator: OOD CKNNA "
        f"above ID and OOD TwoNN below ID, needed in >= {C.COLLAPSE_SHARE:.2f} of the models; one-sided Wilcoxon "
        "signed-rank tests over models for the OOD - ID change of alignment and of the information-imbalance "
        "asymmetry (a model that keeps less information than the reference has Delta(model->ref) > Delta(ref->model)).",
    ]
    return ["## Definitions and thresholds", "", *(line + cite for line in lines), ""]


# --- main ------------------------------------------------------------------------------------------------


def _n_samples(size: str, tasks_dir: Path | None) -> dict[str, int] | None:
    if size == "default":
        return None
    return {name: min(spec.n_samples, TINY_N_SAMPLES) for name, spec in load_tasks(tasks_dir).items()}


def claim_models(models_file: Any, root: Path | None = None) -> list[str] | None:
    """The default models plus every runnable entry whose features are equivariant (`options.features:
    equivariant`), which claim (c) compares with invariant ones; None when that adds nothing (a default run)."""
    from benchmark.pipeline.suite import availability

    models = load_models(models_file)
    default = [e.key for e in models.models if e.default]
    extra = [e.key for e in models.models if not e.default and e.options.get("features") == "equivariant"
             and availability(e, root)[0]]
    return default + extra if extra else None


def reproduce(args: Any) -> int:
    """Everything `matteralign reproduce` does; `args` carries the options of the `reproduce` command."""
    import mlflow

    start = time.perf_counter()
    out: Path = args.out
    figures = out / "figures"
    uri, experiment = tracking.setup(args.tracking_uri, args.experiment)
    entries = models_by_key(load_models(args.models_file))
    keys = claim_models(args.models_file, args.cache_dir)
    extra = [k for k in keys or [] if not entries[k].default]
    _say("running the default benchmark (cached embeddings are reused)"
         + (f" with {', '.join(extra)} for claim (c)" if extra else ""))
    bench = run_benchmark(RunConfig(
        models=keys, tasks=None, n_samples=_n_samples(args.size, args.tasks_dir), k=args.k, tracking_uri=uri, experiment=experiment,
        models_file=args.models_file, tasks_dir=args.tasks_dir, cache_dir=args.cache_dir, leaderboard_dir=None,
        progress=False, run_name="reproduce-benchmark",
    ))
    results = results_frame(bench, entries)
    _say("pairwise alignment and permutation nulls")
    pairs, graphs = pair_frame(bench, entries, args.k, args.n_perm, args.seed,
                               knn_dir=(args.cache_dir or cache_root()) / "knn")
    s3 = string_3d_null(pairs, graphs, args.n_perm, args.seed)
    conv = None
    if not args.skip_convergence:
        from benchmark.report.convergence import run_convergence  # imports torch/lightning only when needed

        _say(f"convergence experiment ({args.size})")
        conv = run_convergence(out / "convergence", args.size, uri, experiment, args.models_file, args.cache_dir,
                               k=args.k, n_perm=args.n_perm, seed=args.seed,
                               threads=args.threads)
    ok = results[results["status"] == "ok"]
    zoo_b = [C.mae_alignment_part(f"b-zoo {task}: pretrained models", ok[ok["task"] == task], seed=args.seed)
             for task in sorted(ok.loc[np.isfinite(ok["energy_mae"].astype(float)), "task"].unique())]
    b_parts = (conv.claim_parts if conv else []) + zoo_b
    if not b_parts:
        b_parts = [C.part("b1 MAE vs alignment to the best model", "Spearman rho(energy_mae, cknna_to_ref)",
                          verdict=C.UNTESTABLE,
                          reason="no model with an energy MAE ran and the convergence experiment was skipped")]
    claims = [
        C.claim_a(pairs, s3, seed=args.seed),
        C.combine("b", b_parts),
        C.claim_c(ok, seed=args.seed),
        C.claim_d(ok, seed=args.seed),
    ]
    id_ood = C.id_ood_table(ok) if len(ok) else pd.DataFrame()
    made = [alignment_figure(pairs, figures / "alignment.png"),
            intrinsic_dimension_figure(ok, figures / "intrinsic_dimension.png"),
            id_ood_figure(id_ood, figures / "id_vs_ood.png"), null_figure(pairs, figures / "null_calibration.png")]
    if conv is not None and conv.figure is not None:
        made.append(Path(shutil.copy(conv.figure, figures / "convergence.png")))
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=tracking.get_or_create_experiment(experiment),
                          run_name=f"reproduce-{args.size}") as run:
        mlflow.set_tags({S.KIND: S.Kind.REPORT, S.BENCHMARK_VERSION: __version__, S.GIT_SHA: tracking.git_sha(),
                         S.tag(f"{S.SOURCE}.benchmark"): bench.parent_run_id,
                         S.tag(f"{S.SOURCE}.convergence"): conv.summary.parent_run_id if conv else "skipped"})
        for c in claims:
            mlflow.set_tag(S.tag(f"{S.VERDICT}.{c['id']}"), c["verdict"])
        mlflow.log_params({"size": args.size, "k": args.k, "n_perm": args.n_perm, "seed": args.seed,
                           "skip_convergence": args.skip_convergence, "alpha": C.ALPHA,
                           "max_relative_iqr": C.MAX_RELATIVE_IQR, "collapse_share": round(C.COLLAPSE_SHARE, 4),
                           "paper_id_bands": str(C.PAPER_ID_BANDS)})
        metrics = {k: v for c in claims for k, v in part_metrics(c).items()}
        if not pairs.empty:
            metrics.update({"null.pairs_above_chance": float((pairs["p_value"] < C.ALPHA).sum()),
                            "null.pairs": float(len(pairs)), "null.median_z": float(pairs["z"].median()),
                            "null.median_null_mean": float(pairs["null_mean"].median())})
        if s3:
            metrics.update({f"null.string_3d.{k}": float(s3[k]) for k in ("observed", "null_mean", "null_std", "z", "p_value")})
        if conv is not None and conv.random_key in conv.nulls:
            rn = conv.nulls[conv.random_key]
            metrics.update({"null.random_init.cknna": rn["observed"], "null.random_init.z": rn["z"],
                            "null.random_init.p_value": rn["p_value"]})
        metrics["wall_seconds"] = time.perf_counter() - start
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        ctx = {"report_run_id": run.info.run_id, "benchmark_run_id": bench.parent_run_id, "claims": claims,
               "results": results, "pairs": pairs, "id_ood": id_ood, "convergence": conv, "string_3d": s3,
               "size": args.size, "uri": uri, "experiment": experiment, "git_sha": tracking.git_sha(),
               "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "n_perm": args.n_perm,
               "wall_s": metrics["wall_seconds"]}
        report = write_report(ctx, out / "REPORT.md")
        pairs.to_csv(out / "pairs.csv", index=False)
        mlflow.log_artifact(str(report))
        mlflow.log_artifact(str(out / "pairs.csv"))
        for fig in made:
            if fig is not None:
                mlflow.log_artifact(str(fig), artifact_path="figures")
    for c in claims:
        _say(f"({c['id']}) {c['verdict']}: {c['reason']}")
    _say(f"wrote {report} (report run {run.info.run_id}) in {metrics['wall_seconds']:.0f} s")
    return 0
