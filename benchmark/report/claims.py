"""The paper's four claims as pure statistics over benchmark results, each with a verdict.

Every claim returns a dict: `id`, `claim` (the paper's statement), `parts` (one dict per testable
statement: statistic name and value, CI, p-value, n, verdict, reason, and the run ids of the rows it
used), and the overall `verdict` / `reason`. Verdicts are "held", "did not hold" or "not testable here";
a claim holds when every testable part holds. Inputs are plain DataFrames, so the functions run the same
on synthetic data (tests) and on runs read back from MLflow (the report).

`results` frames have one row per (model, task) that ran: model, task, role (id/ood), modality,
is_reference, run_id, and the metric columns of docs/run-schema.md (missing metrics are NaN).
`pairs` frames have one row per model pair on a task: task, model_a, model_b, group_a, group_b, run_a,
run_b, cknna.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

HELD, NOT_HELD, UNTESTABLE = "held", "did not hold", "not testable here"
ALPHA = 0.05
#: modality -> representation group: SMILES and text models are both "string" models
MODALITY_GROUP = {"atoms": "3D", "smiles": "string", "text": "string", "protein": "sequence"}
#: the paper's intrinsic dimensions: QM9 "about 5" (read as 4-6), materials 8-10
PAPER_ID_BANDS = {"qm9": (4.0, 6.0), "crystals": (8.0, 10.0)}
#: a band is "narrow" when its interquartile range is at most this fraction of its median
MAX_RELATIVE_IQR = 0.5
#: "almost all models": at least this share shows the collapse indicator
COLLAPSE_SHARE = 2 / 3

CLAIMS = {
    "a": "Models of the same modality align strongly; string models (SMILES/text) align with 3D models above chance.",
    "b": "As MLIPs predict energies better, they align more with the best-performing model "
    "(Spearman's rho between energy MAE and alignment to the best model is negative).",
    "c": "Intrinsic dimension falls in a narrow band per dataset (QM9 about 5; materials about 8-10), higher for "
    "features that carry rotational degrees of freedom.",
    "d": "In distribution, strong models align and weak ones diverge; out of distribution, almost all models collapse "
    "onto a low-information representation that inflates alignment (information imbalance shows it).",
}


def part(
    name: str,
    statistic: str,
    value: float = float("nan"),
    *,
    verdict: str,
    reason: str,
    ci: tuple[float, float] | None = None,
    p_value: float | None = None,
    n: int = 0,
    sources: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One tested statement of a claim."""
    if verdict not in (HELD, NOT_HELD, UNTESTABLE):
        raise ValueError(f"unknown verdict {verdict!r}")
    return {
        "name": name, "statistic": statistic, "value": float(value), "ci": ci, "p_value": p_value, "n": int(n),
        "verdict": verdict, "reason": reason, "sources": sorted({s for s in sources if s}), "extra": extra or {},
    }


def combine(claim_id: str, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The claim dict: held when every testable part held, did not hold when any testable part failed."""
    tested = [p for p in parts if p["verdict"] != UNTESTABLE]
    failed = [p for p in tested if p["verdict"] == NOT_HELD]
    untested = [p["name"] for p in parts if p["verdict"] == UNTESTABLE]
    if not tested:
        verdict, reason = UNTESTABLE, "; ".join(f"{p['name']}: {p['reason']}" for p in parts)
    elif failed:
        verdict, reason = NOT_HELD, "; ".join(f"{p['name']}: {p['reason']}" for p in failed)
    else:
        verdict = HELD
        reason = "every testable part held" + (f" (not testable here: {', '.join(untested)})" if untested else "")
    return {"id": claim_id, "claim": CLAIMS[claim_id], "verdict": verdict, "reason": reason, "parts": list(parts)}


def _finite(frame: pd.DataFrame, *cols: str) -> pd.DataFrame:
    present = [c for c in cols if c in frame.columns]
    if len(present) < len(cols):
        return frame.iloc[0:0]
    mask = np.all([np.isfinite(frame[c].astype(float)) for c in cols], axis=0)
    return frame[mask]


def _run_ids(frame: pd.DataFrame, *cols: str) -> list[str]:
    return [str(v) for c in cols if c in frame.columns for v in frame[c].dropna()]


# --- (a) modality -------------------------------------------------------------------------------------


def _within_minus_cross(values: np.ndarray, a: np.ndarray, b: np.ndarray, group: dict[str, str]) -> float:
    within = np.array([group[x] == group[y] for x, y in zip(a, b)], dtype=bool)
    if within.all() or not within.any():
        return float("nan")
    return float(values[within].mean() - values[~within].mean())


def modality_permutation_test(
    pairs: pd.DataFrame, n_perm: int = 2000, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Mean within-group minus mean cross-group CKNNA over all pairs of all tasks.

    p-value: one-sided, shuffling the group labels over models (one labelling per draw, shared by every
    task); CI: percentile bootstrap over pairs, resampled within the within / cross strata.
    """
    pairs = _finite(pairs, "cknna")
    group = {**dict(zip(pairs["model_a"], pairs["group_a"])), **dict(zip(pairs["model_b"], pairs["group_b"]))}
    values, a, b = pairs["cknna"].to_numpy(float), pairs["model_a"].to_numpy(), pairs["model_b"].to_numpy()
    observed = _within_minus_cross(values, a, b, group)
    within = np.array([group[x] == group[y] for x, y in zip(a, b)], dtype=bool)
    out = {"observed": observed, "within_mean": float(values[within].mean()) if within.any() else float("nan"),
           "cross_mean": float(values[~within].mean()) if (~within).any() else float("nan"),
           "n_within": int(within.sum()), "n_cross": int((~within).sum()), "p_value": None, "ci": None}
    if not np.isfinite(observed):
        return out
    rng = np.random.default_rng(seed)
    models = sorted(group)
    labels = np.array([group[m] for m in models])
    null = []
    for _ in range(n_perm):
        shuffled = dict(zip(models, rng.permutation(labels)))
        null.append(_within_minus_cross(values, a, b, shuffled))
    null_arr = np.array(null)
    null_arr = null_arr[np.isfinite(null_arr)]
    out["p_value"] = float((np.sum(null_arr >= observed - 1e-12) + 1) / (null_arr.size + 1))
    counts = np.unique(labels, return_counts=True)[1]
    out["n_labellings"] = int(math.factorial(len(labels)) // math.prod(math.factorial(int(c)) for c in counts))
    w, c = values[within], values[~within]
    boots = [rng.choice(w, w.size).mean() - rng.choice(c, c.size).mean() for _ in range(n_boot)]
    out["ci"] = tuple(float(q) for q in np.quantile(boots, [0.025, 0.975]))
    return out


def string_3d_mask(pairs: pd.DataFrame) -> np.ndarray:
    """Rows of `pairs` that pair a string (SMILES/text) model with a 3D model."""
    return np.array([{ga, gb} == {"string", "3D"} for ga, gb in zip(pairs["group_a"], pairs["group_b"])], dtype=bool)


def claim_a(pairs: pd.DataFrame, string_vs_3d: dict[str, Any] | None, n_perm: int = 2000, seed: int = 0) -> dict:
    """(a): within-modality vs cross-modality CKNNA (label permutation test), and string-vs-3D CKNNA
    against its pooled row-permutation null (`null.pooled_permutation_null(...).as_dict()`)."""
    parts = []
    test = modality_permutation_test(pairs, n_perm=n_perm, seed=seed)
    sources = _run_ids(pairs, "run_a", "run_b")
    if not np.isfinite(test["observed"]):
        parts.append(part(
            "a1 same modality aligns more", "mean within-group CKNNA - mean cross-group CKNNA",
            verdict=UNTESTABLE, n=len(pairs), sources=sources,
            reason=f"needs pairs both within and across groups; have {test['n_within']} within, {test['n_cross']} across",
        ))
    else:
        why = (f"within {test['within_mean']:.3f} (n={test['n_within']}) vs cross {test['cross_mean']:.3f} "
               f"(n={test['n_cross']}); label-permutation p={test['p_value']:.3g}")
        if 1 / test["n_labellings"] < ALPHA:
            held = test["observed"] > 0 and test["p_value"] < ALPHA
            why += "" if held else f"; needs difference > 0 with p < {ALPHA}"
        else:
            held = test["ci"][0] > 0
            why += (f"; with {test['n_labellings']} distinct group labellings of these models the permutation test "
                    f"cannot reach p < {ALPHA}, so the verdict uses the bootstrap CI over pairs "
                    f"({'above' if held else 'not above'} 0; pairs share models, so this CI is optimistic)")
        parts.append(part(
            "a1 same modality aligns more", "mean within-group CKNNA - mean cross-group CKNNA", test["observed"],
            ci=test["ci"], p_value=test["p_value"], n=test["n_within"] + test["n_cross"], sources=sources,
            verdict=HELD if held else NOT_HELD, reason=why,
            extra={k: test[k] for k in ("within_mean", "cross_mean", "n_within", "n_cross", "n_labellings")},
        ))
    sv = pairs[string_3d_mask(pairs)]
    if string_vs_3d is None or sv.empty:
        parts.append(part(
            "a2 string vs 3D above chance", "mean string-3D CKNNA vs its permutation null", verdict=UNTESTABLE,
            reason="no task has both a string (SMILES/text) model and a 3D model that ran", n=len(sv),
        ))
    else:
        held = string_vs_3d["p_value"] < ALPHA and string_vs_3d["observed"] > string_vs_3d["null_mean"]
        parts.append(part(
            "a2 string vs 3D above chance", "mean string-3D CKNNA", string_vs_3d["observed"],
            p_value=string_vs_3d["p_value"], n=len(sv), sources=_run_ids(sv, "run_a", "run_b"),
            verdict=HELD if held else NOT_HELD,
            reason=(f"null mean {string_vs_3d['null_mean']:.4f} +- {string_vs_3d['null_std']:.4f} over "
                    f"{string_vs_3d['n_perm']} row permutations, z={string_vs_3d['z']:.1f}, p={string_vs_3d['p_value']:.3g}"
                    + ("" if held else f"; needs a mean above the null with p < {ALPHA}")),
            extra={k: string_vs_3d[k] for k in ("null_mean", "null_std", "z", "n_perm")},
        ))
    return combine("a", parts)


# --- (b) energy error vs alignment to the best model ----------------------------------------------------


def spearman_test(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Spearman rho with scipy's p-value and a percentile bootstrap CI over the points (models)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = x.size
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": float("nan"), "p_value": None, "ci": None, "n": n}
    res = stats.spearmanr(x, y)
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    rx, ry = stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    ok = denom > 0
    boots = (rx * ry).sum(axis=1)[ok] / denom[ok]
    ci = tuple(float(q) for q in np.quantile(boots, [0.025, 0.975])) if boots.size >= 10 else None
    return {"rho": float(res.statistic), "p_value": float(res.pvalue), "ci": ci, "n": n}


def mae_alignment_part(
    name: str, frame: pd.DataFrame, mae: str = "energy_mae", alignment: str = "cknna_to_ref", min_n: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Spearman(MAE, alignment to the best model) over the rows that are not the reference themselves."""
    rows = _finite(frame, mae, alignment)
    if "is_reference" in rows.columns:
        rows = rows[~rows["is_reference"].astype(bool)]
    statistic = f"Spearman rho({mae}, {alignment})"
    if len(rows) < min_n:
        return part(name, statistic, verdict=UNTESTABLE, n=len(rows), sources=_run_ids(rows, "run_id"),
                    reason=f"{len(rows)} models with both an energy MAE and an alignment to the best model "
                           f"(reference excluded); at least {min_n} are needed for a rank correlation")
    t = spearman_test(rows[mae], rows[alignment], seed=seed)
    if t["p_value"] is None:
        return part(name, statistic, verdict=UNTESTABLE, n=t["n"], sources=_run_ids(rows, "run_id"),
                    reason="MAE or alignment is constant over the models")
    held = t["rho"] < 0 and t["p_value"] < ALPHA
    return part(
        name, statistic, t["rho"], ci=t["ci"], p_value=t["p_value"], n=t["n"], sources=_run_ids(rows, "run_id"),
        verdict=HELD if held else NOT_HELD,
        reason=("lower MAE goes with higher alignment" if held else
                f"needs rho < 0 with p < {ALPHA}; got rho={t['rho']:.3f}, p={t['p_value']:.3g}"),
    )


def claim_b(frame: pd.DataFrame, mae: str = "energy_mae", alignment: str = "cknna_to_ref", seed: int = 0) -> dict:
    """(b) on a family of MLIPs: one row per model with its MAE and its alignment to the best model."""
    return combine("b", [mae_alignment_part("b1 MAE vs alignment to the best model", frame, mae, alignment, seed=seed)])


# --- (c) intrinsic dimension ---------------------------------------------------------------------------


def _bootstrap_median(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    meds = [np.median(rng.choice(values, values.size)) for _ in range(n_boot)]
    return tuple(float(q) for q in np.quantile(meds, [0.025, 0.975]))  # type: ignore[return-value]


def claim_c(
    results: pd.DataFrame, bands: dict[str, tuple[float, float]] = PAPER_ID_BANDS, min_models: int = 3,
    n_boot: int = 2000, seed: int = 0,
) -> dict:
    """(c): per task, the TwoNN band over models (median, IQR, bootstrap CI of the median): narrow when
    IQR <= MAX_RELATIVE_IQR * median, and consistent with the paper when its band meets the IQR. Then
    rotational features (column `rotational`) vs invariant ones (one-sided Mann-Whitney U)."""
    rows = _finite(results, "intrinsic_dimension")
    parts = []
    for task in sorted(rows["task"].unique()):
        t = rows[rows["task"] == task]
        v = t["intrinsic_dimension"].to_numpy(float)
        name = f"c-{task} band"
        if v.size < min_models:
            parts.append(part(name, "median TwoNN over models", verdict=UNTESTABLE, n=v.size,
                              sources=_run_ids(t, "run_id"), reason=f"{v.size} models; a band needs {min_models}"))
            continue
        q25, med, q75 = (float(q) for q in np.quantile(v, [0.25, 0.5, 0.75]))
        rel = (q75 - q25) / med if med > 0 else float("inf")
        narrow = rel <= MAX_RELATIVE_IQR
        band = bands.get(task)
        meets = band is None or (band[0] <= q75 and band[1] >= q25)
        why = [f"IQR [{q25:.2f}, {q75:.2f}] is {rel:.2f} x the median ({'narrow' if narrow else 'not narrow'}: "
               f"limit {MAX_RELATIVE_IQR})"]
        why.append(f"paper: {band[0]:g}-{band[1]:g}, {'meets' if meets else 'outside'} the IQR" if band
                   else "no paper value for this dataset")
        parts.append(part(
            name, "median TwoNN over models", med, ci=_bootstrap_median(v, n_boot, seed), n=v.size,
            sources=_run_ids(t, "run_id"), verdict=HELD if narrow and meets else NOT_HELD, reason="; ".join(why),
            extra={"q25": q25, "q75": q75, "relative_iqr": rel, "paper_band": band},
        ))
    rot = rows["rotational"].astype(bool) if "rotational" in rows.columns else pd.Series(False, index=rows.index)
    if not rot.any() or rot.all():
        parts.append(part(
            "c-rotational higher", "median TwoNN rotational - invariant", verdict=UNTESTABLE, n=len(rows),
            reason="needs models with features that carry rotational degrees of freedom (l > 0 channels, e.g. a "
                   "MACE entry with options.features: equivariant) next to invariant ones; "
                   + ("none ran here" if not rot.any() else "no invariant model ran"),
        ))
    else:
        a, b = rows.loc[rot, "intrinsic_dimension"], rows.loc[~rot, "intrinsic_dimension"]
        u = stats.mannwhitneyu(a, b, alternative="greater")
        diff = float(np.median(a) - np.median(b))
        held = diff > 0 and u.pvalue < ALPHA
        parts.append(part(
            "c-rotational higher", "median TwoNN rotational - invariant", diff, p_value=float(u.pvalue),
            n=len(rows), sources=_run_ids(rows, "run_id"), verdict=HELD if held else NOT_HELD,
            reason=f"Mann-Whitney U one-sided p={u.pvalue:.3g} ({len(a)} rotational vs {len(b)} invariant rows)",
        ))
    return combine("c", parts)


# --- (d) in vs out of distribution ---------------------------------------------------------------------


def id_ood_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per model (reference rows excluded): mean alignment, TwoNN and information imbalances on its ID
    and its OOD tasks, the imbalance asymmetry Delta(model->ref) - Delta(ref->model), and the collapse
    indicator (OOD alignment above ID and OOD TwoNN below ID)."""
    rows = results.copy()
    if "is_reference" in rows.columns:
        rows = rows[~rows["is_reference"].astype(bool)]
    for col in ("cknna_to_ref", "intrinsic_dimension", "info_imbalance_model_to_ref", "info_imbalance_ref_to_model"):
        if col not in rows.columns:
            rows[col] = np.nan
    rows["asymmetry"] = rows["info_imbalance_model_to_ref"] - rows["info_imbalance_ref_to_model"]
    out = []
    for model, g in rows.groupby("model", sort=True):
        rec: dict[str, Any] = {"model": model, "run_ids": ",".join(g["run_id"].dropna().astype(str))}
        for role in ("id", "ood"):
            r = g[g["role"] == role]
            rec[f"n_{role}"] = len(r)
            for col, short in (("cknna_to_ref", "align"), ("intrinsic_dimension", "twonn"),
                               ("info_imbalance_model_to_ref", "ii_m2r"), ("info_imbalance_ref_to_model", "ii_r2m"),
                               ("asymmetry", "asym")):
                vals = r[col].astype(float)
                rec[f"{short}_{role}"] = float(vals.mean()) if vals.notna().any() else float("nan")
        rec["collapse"] = bool(rec["align_ood"] > rec["align_id"] and rec["twonn_ood"] < rec["twonn_id"])
        out.append(rec)
    return pd.DataFrame(out)


def _paired_part(name: str, statistic: str, diff: pd.Series, table: pd.DataFrame, extra_reason: str = "") -> dict:
    d = diff.dropna()
    srcs = ",".join(table.loc[d.index, "run_ids"]).split(",") if len(d) else []
    if len(d) < 5:
        return part(name, statistic, verdict=UNTESTABLE, n=len(d), sources=srcs,
                    reason=f"{len(d)} models ran on both ID and OOD tasks with the metric; a one-sided Wilcoxon "
                           "test needs at least 5 to reach p < 0.05")
    w = stats.wilcoxon(d.to_numpy(float), alternative="greater")
    held = d.mean() > 0 and w.pvalue < ALPHA
    return part(name, statistic, float(d.mean()), p_value=float(w.pvalue), n=len(d), sources=srcs,
                verdict=HELD if held else NOT_HELD,
                reason=f"Wilcoxon signed-rank one-sided p={w.pvalue:.3g}" + extra_reason)


def claim_d(results: pd.DataFrame, seed: int = 0) -> dict:
    """(d): ID, Spearman(energy MAE, alignment) over ID rows; OOD, the paired rise of alignment with the
    share of models showing the collapse indicator, and the rise of the information-imbalance asymmetry
    (a model that collapses keeps less information than the reference: Delta(model->ref) > Delta(ref->model))."""
    id_rows = results[results["role"] == "id"]
    parts = [mae_alignment_part("d1 ID: strong models align, weak diverge", id_rows, seed=seed)]
    table = id_ood_table(results)
    diff = (table["align_ood"] - table["align_id"]) if len(table) else pd.Series(dtype=float)
    both = table[diff.notna()] if len(table) else table
    share = float(both["collapse"].mean()) if len(both) else float("nan")
    p2 = _paired_part("d2 OOD: alignment inflates", "mean over models of OOD - ID CKNNA to reference", diff, table,
                      extra_reason=f"; collapse indicator in {int(both['collapse'].sum()) if len(both) else 0} of "
                                   f"{len(both)} models (needs >= {COLLAPSE_SHARE:.2f})")
    p2["extra"]["collapse_share"] = share
    if p2["verdict"] == HELD and not share >= COLLAPSE_SHARE:
        p2["verdict"] = NOT_HELD
        p2["reason"] += "; alignment rises but too few models also lose intrinsic dimension"
    parts.append(p2)
    asym = (table["asym_ood"] - table["asym_id"]) if len(table) else pd.Series(dtype=float)
    parts.append(_paired_part(
        "d3 OOD: information imbalance shows less information",
        "mean over models of OOD - ID [Delta(model->ref) - Delta(ref->model)]", asym, table,
    ))
    return combine("d", parts)
