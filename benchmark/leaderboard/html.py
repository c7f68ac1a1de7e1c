"""The leaderboard as one self-contained, offline HTML page: inline CSS and JS (assets/), figures as base64 PNG.

Layout (anchors: Matbench Discovery's and MTEB's boards): metric columns first, metadata columns on demand;
click-to-sort on every column, a text filter and modality / family / domain filters, one tab per task, a card per
model, metric definitions (header tooltips and a glossary) generated from `benchmark.metrics.METRICS`, downloads
of the CSV and JSON, and the figures with captions. Columns come from the tables: any column whose name (before
`[task]`) is a registered metric is shown as a metric, so a new metric needs no change here.

Safety: every string from models.yaml or MLflow goes through `html.escape` and is rendered server-side (the script
only reorders and hides existing rows, and never builds markup from data), so a model named `<script>` shows as
text. The inlined assets are checked not to contain a closing `</script` / `</style` tag.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from benchmark.errors import MatteralignError
from benchmark.leaderboard.collect import Board
from benchmark.leaderboard.table import Tables
from benchmark.metrics.registry import METRICS

ASSETS = Path(__file__).with_name("assets")
#: env var naming an MLflow tracking server UI (http/https) the page links each run to
MLFLOW_URL_ENV = "MATTERALIGN_MLFLOW_URL"
#: the ranking's leading columns, in this order, when the table has them; other metrics follow in table order
PRIMARY = ("cknna_to_ref", "id_score", "ood_score", "ood_collapse", "energy_mae")
#: compact headers for the leading columns (the full label and definition are in the tooltip)
SHORT = {"cknna_to_ref": "score", "id_score": "ID", "ood_score": "OOD", "ood_collapse": "OOD collapse",
         "energy_mae": "energy MAE"}
#: rank-interval column pairs the table may carry (first pair found is used); absent: the rank shows alone
RANK_INTERVALS = (("rank_low", "rank_high"), ("rank_ci_low", "rank_ci_high"))
RANK_TIED = ("tied", "rank_tied")
#: columns shown in the model card's header or elsewhere, never as generic metadata
CARD_OWN = {"rank", "model", "name", *(c for pair in RANK_INTERVALS for c in pair), *RANK_TIED}
FILTERS = ("modality", "family", "domain")
DIGEST_CHARS = 12
CITATION_LINKS = (
    (re.compile(r"https?://[^\s,;)]+"), "{0}"),
    (re.compile(r"\b(10\.\d{4,9}/[^\s,;)]+)"), "https://doi.org/{1}"),
    (re.compile(r"arXiv:\s*(\d{4}\.\d{4,5})", re.I), "https://arxiv.org/abs/{1}"),
)


def e(value: object) -> str:
    """Escape any value for HTML text or attribute context (None -> empty)."""
    return html.escape("" if value is None else str(value), quote=True)


def inline_markup(text: object) -> str:
    """Escape, then render Markdown `code` and *emphasis* (the notes and metric descriptions use both)."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", e(text))
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<em>\1</em>", out)


def asset(name: str) -> str:
    """An asset's text, refused if it could close the element it is inlined into."""
    text = (ASSETS / name).read_text(encoding="utf-8")
    if re.search(r"</(script|style)", text, re.I):
        raise MatteralignError(f"{ASSETS / name} contains a closing </script or </style tag; it cannot be inlined.")
    return text


def _finite(v: object) -> bool:
    try:
        return v is not None and v != "" and math.isfinite(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def fmt(v: object) -> str:
    """Numbers for people: 4 significant digits; missing -> empty."""
    if isinstance(v, str):
        return v
    return f"{float(v):.4g}" if _finite(v) else ""


def base_metric(column: str) -> str | None:
    """The registered metric a column shows ('cknna_to_ref[qm9]' -> 'cknna_to_ref'), else None."""
    name = column.split("[", 1)[0]
    return name if name in METRICS else None


def stage_of(column: str) -> str:
    m = base_metric(column)
    return METRICS[m].stage if m else ""


def direction_of(column: str) -> str:
    m = base_metric(column)
    return METRICS[m].direction if m else ""


def tooltip(column: str, header: str = "") -> str:
    """A metric's definition from METRICS (label, description, unit, direction); the header for other columns."""
    m = base_metric(column)
    if m is None:
        return header or column
    info = METRICS[m]
    task = column[len(m) + 1:-1] if column.endswith("]") else ""
    way = {"higher": "higher is better", "lower": "lower is better"}.get(info.direction, "descriptive")
    parts = [f"{info.display} ({m})" + (f" on {task}" if task else ""), info.description.replace("`", "")]
    if info.unit:
        parts.append(f"unit: {info.unit}")
    parts.append(way)
    return ". ".join(parts)


def short_header(column: str) -> str:
    if column in SHORT:
        return SHORT[column]
    m = base_metric(column)
    if m and column.endswith("]"):
        return column[len(m) + 1:-1] if m == "cknna_to_ref" else f"{METRICS[m].display} · {column[len(m) + 1:-1]}"
    return re.sub(r"\s*\([^)]*\)$", "", METRICS[m].display) if m else column.replace("_", " ")


def direction_line(column: str) -> str:
    """'↑ better' / '↓ better' / 'descriptive'; a per-task score column says which score it is."""
    line = {"higher": "↑ better", "lower": "↓ better", "none": "descriptive"}.get(direction_of(column), "")
    m = base_metric(column)
    if column.startswith("cknna_to_ref["):
        return f"{line} · CKNNA"
    return f"{line} · {METRICS[m].unit}" if m and METRICS[m].unit else line


def header_cell(column: str, label: str, title: str, numeric: bool, extra_class: str = "") -> str:
    better = direction_of(column)
    cls = " ".join(c for c in ("sortable", extra_class) if c)
    dirline = direction_line(column)
    return (f'<th class="{cls}" scope="col" tabindex="0" data-col="{e(column)}" data-type="{"num" if numeric else "text"}"'
            f' data-better="{e(better)}" title="{e(title)}">{e(label)}<span class="arrow"></span>'
            + (f'<span class="dir">{e(dirline)}</span>' if dirline else "") + "</th>")


def quality(values: pd.Series, better: str, skip: pd.Series | None = None) -> dict[int, float]:
    """Per row index, 0..1 where 1 is the best value of the column (for the shading); empty when not rankable.

    skip: rows left out of the scale (the reference's self-alignment of 1 would flatten everyone else).
    """
    if better not in ("higher", "lower"):
        return {}
    finite = pd.to_numeric(values, errors="coerce")
    if skip is not None:
        finite = finite[~skip.to_numpy(dtype=bool)]
    finite = finite.dropna()
    if finite.nunique() < 2:
        return {}
    lo, hi = float(finite.min()), float(finite.max())
    return {int(i): round(((v - lo) / (hi - lo)) if better == "higher" else ((hi - v) / (hi - lo)), 3)
            for i, v in finite.items()}


def metric_cell(value: object, column: str, q: float | None, extra: str = "", primary: bool = False) -> str:
    classes = ["num"] + (["metric"] if q is not None else []) + (["primary"] if primary else [])
    style = f' style="--q:{q}"' if q is not None else ""
    data = float(value) if _finite(value) else ""  # type: ignore[arg-type]
    return f'<td class="{" ".join(classes)}" data-v="{data}"{style}>{e(fmt(value))}{extra}</td>'


def collapse_cell(value: object) -> str:
    word = str(value or "n/a")
    cls = {"yes": "yes", "no": "no"}.get(word, "na")
    order = {"yes": "2", "no": "0"}.get(word, "")
    return f'<td data-v="{order}"><span class="badge {cls}">{e(word)}</span></td>'


def digest_html(digest: object) -> str:
    text = str(digest or "")
    if not text:
        return ""
    return (f'<span class="digest" title="{e(text)}">{e(text[:DIGEST_CHARS])}…</span>'
            f'<button type="button" class="copy" data-copy="{e(text)}" title="copy the full digest">copy</button>')


def run_link(run_id: object, mlflow_url: str | None) -> str:
    rid = str(run_id or "")
    if not rid:
        return ""
    if mlflow_url:
        return f'<a href="{e(mlflow_url)}/#/runs/{e(rid)}" title="open run {e(rid)} in MLflow">{e(rid[:8])}</a>'
    return f'<span class="digest" title="MLflow run {e(rid)}">{e(rid[:8])}</span>'


def citation_html(citation: str) -> str:
    """The citation text with its first URL / DOI / arXiv id linked."""
    for pattern, template in CITATION_LINKS:
        hit = pattern.search(citation)
        if hit:
            href = template.format(hit.group(0), hit.group(hit.lastindex or 0))
            return f'{e(citation)} <a href="{e(href)}" rel="noopener">link</a>'
    return e(citation)


def resolve_mlflow_url(mlflow_url: str | None) -> str | None:
    """The tracking server UI to link runs to: the argument, else $MATTERALIGN_MLFLOW_URL; http(s) only."""
    url = (mlflow_url or os.environ.get(MLFLOW_URL_ENV, "")).strip().rstrip("/")
    if not url:
        return None
    if not re.match(r"^https?://[^\s\"'<>]+$", url):
        raise MatteralignError(
            f"MLflow UI URL {url!r} (argument or ${MLFLOW_URL_ENV}) must be an http:// or https:// address, "
            "e.g. http://127.0.0.1:5000; unset it to leave runs unlinked."
        )
    return url


def registry_info(keys: Iterable[str]) -> dict[str, dict[str, str]]:
    """Licence and citation per model key from models.yaml, for boards whose runs do not carry them; {} when
    models.yaml cannot be read (the card then says 'not recorded')."""
    try:
        from benchmark.registry.loader import load_models, models_by_key

        entries = models_by_key(load_models())
    except (MatteralignError, OSError):
        return {}
    return {k: {"license": entries[k].license, "citation": entries[k].citation} for k in keys if k in entries}


def board_label(board: Board) -> str:
    """"Board <id>" for a frozen board, else "Provisional board" (references chosen per run)."""
    return f"Board {board.definition.id}" if board.definition is not None else "Provisional board"


class Page:
    """Builds the page's fragments from the tables; one instance per render."""

    def __init__(self, tables: Tables, board: Board, mlflow_url: str | None,
                 model_info: dict[str, dict[str, str]]) -> None:
        self.t, self.board, self.url = tables, board, mlflow_url
        self.models = tables.models.reset_index(drop=True)
        self.per_task = tables.per_task.reset_index(drop=True)
        self.not_ranked = tables.not_ranked.reset_index(drop=True)
        self.card_id = {str(k): f"card-{i}" for i, k in enumerate(self.models.get("model", []))}
        self.info = {str(r["model"]): r for _, r in self.models.iterrows()}
        self.extra = model_info
        self.interval = next((p for p in RANK_INTERVALS if set(p) <= set(self.models.columns)), None)
        self.tied = next((c for c in RANK_TIED if c in self.models.columns), None)
        cols = list(self.models.columns)
        # metric columns with no value at all (e.g. a probe no model has) are left out, not shown empty
        metric_cols = [c for c in cols if c == "ood_collapse"
                       or (base_metric(c) and pd.to_numeric(self.models[c], errors="coerce").notna().any())]
        self.metric_cols = [c for c in PRIMARY if c in metric_cols] + [c for c in metric_cols if c not in PRIMARY]
        self.meta_cols = [c for c in cols if c not in CARD_OWN and c != "ood_collapse" and not base_metric(c)]
        self.shown_metrics: set[str] = {base_metric(c) for c in self.metric_cols if base_metric(c)}  # type: ignore

    # -- shared pieces -------------------------------------------------------------------------------------
    def row_attrs(self, model: str) -> str:
        info = self.info.get(model)
        attrs = [f'data-model="{e(model)}"']
        search = [model]
        for key in FILTERS:
            value = "" if info is None or key not in info else str(info[key] or "")
            attrs.append(f'data-{key}="{e(value)}"')
            search.append(value)
        if info is not None and "name" in info:
            search.append(str(info["name"]))
        attrs.append(f'data-search="{e(" ".join(search))}"')
        return " ".join(attrs)

    def model_button(self, model: str, sub: str = "") -> str:
        info = self.info.get(model)
        name = str(info["name"]) if info is not None and "name" in info and info["name"] else model
        card = self.card_id.get(model)
        label = (f'<button type="button" class="model" data-card="{card}" title="open the model card">'
                 f"{e(name)}</button>"
                 if card else f"<strong>{e(name)}</strong>")
        key = f'<span class="key"> {e(model)}</span>' if name != model else ""
        return f'<td class="model-cell" data-v="{e(name.lower())}">{label}{key}{sub}</td>'

    def rank_html(self, row: pd.Series) -> tuple[str, str]:
        rank = row.get("rank")
        text = str(int(rank)) if _finite(rank) else "—"
        extra = ""
        if self.interval and _finite(row[self.interval[0]]) and _finite(row[self.interval[1]]):
            extra = f"<small>[{int(row[self.interval[0]])}–{int(row[self.interval[1]])}]</small>"
        if self.tied and str(row[self.tied]).lower() in ("true", "yes", "1"):
            extra += ('<span class="tied" title="its rank interval overlaps another model\'s: statistically tied">'
                      "tied</span>")
        return text, extra

    # -- overall ranking ---------------------------------------------------------------------------------------
    def ranking_table(self, track: str | None = None) -> str:
        """The ranking of one track (all rows when the table has no tracks)."""
        h = self.t.headers
        models = self.models if track is None or "track" not in self.models else \
            self.models[self.models["track"] == track]
        tasks = set(self.t.tracks.get(track, {}).get("tasks", [])) if track is not None else set()
        metric_cols = [c for c in self.metric_cols
                       if not (tasks and c.startswith("cknna_to_ref[") and c[len("cknna_to_ref["):-1] not in tasks)]
        heads = ['<th class="sortable" scope="col" tabindex="0" data-col="rank" data-type="num" data-better="lower" '
                 f'title="{e(self.rank_title())}">rank<span class="arrow"></span></th>',
                 header_cell("model", "model", "display name (model key); click a name for its card", False)]
        heads += [header_cell(c, short_header(c), tooltip(c, h.get(c, c)), c != "ood_collapse")
                  for c in metric_cols]
        heads += [header_cell(c, h.get(c, c), h.get(c, c), pd.api.types.is_numeric_dtype(self.models[c]), "meta")
                  for c in self.meta_cols]
        shading = {c: quality(models[c], direction_of(c)) for c in metric_cols if c != "ood_collapse"}
        rows = []
        for i, row in models.iterrows():
            model = str(row["model"])
            rank, extra = self.rank_html(row)
            cells = [f'<td class="rank num" data-v="{rank if rank != "—" else ""}">{rank}{extra}</td>']
            ref_on = str(row.get("reference_on") or "")
            sub = f' <span class="badge ref">reference on {e(ref_on.replace(",", ", "))}</span>' if ref_on else ""
            cells.append(self.model_button(model, sub))
            for c in metric_cols:
                if c == "ood_collapse":
                    cells.append(collapse_cell(row[c]))
                else:
                    cells.append(metric_cell(row[c], c, shading[c].get(int(i)), primary=c == "cknna_to_ref"))
            for c in self.meta_cols:
                cells.append(self.meta_cell(c, row[c]))
            rows.append(f"<tr {self.row_attrs(model)}>{''.join(cells)}</tr>")
        body = "".join(rows) or f'<tr><td class="empty" colspan="{len(heads)}">No ranked models.</td></tr>'
        return (f'<div class="scroll"><table class="leaderboard filterable"><thead><tr>{"".join(heads)}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>")

    def track_tables(self) -> str:
        """One ranking table per track, each under a heading with its tasks and the k = 10 vs 25 Kendall tau."""
        if not self.t.tracks or "track" not in self.models:
            return self.ranking_table()
        parts = []
        for track, info in self.t.tracks.items():
            tau = info.get("kendall_tau_k10_k25")
            tau_text = f"{tau:.3f}" if isinstance(tau, float) and math.isfinite(tau) else "n/a"
            parts.append(f'<h3 class="track">Track {e(track)}: {e(", ".join(info.get("tasks", [])))}</h3>'
                         f'<p class="about">{int(info.get("ranked", 0))} ranked; Kendall tau between the rankings '
                         f"at k = 10 and k = 25: {e(tau_text)}</p>" + self.ranking_table(track))
        return "".join(parts)

    def rank_title(self) -> str:
        text = "position by the ranking rule (see Definitions)"
        if self.interval:
            text += "; [low–high]: the rank interval from the bootstrap over structures"
        return text

    def meta_cell(self, column: str, value: object) -> str:
        if column == "parameters":
            ok = _finite(value)
            return (f'<td class="num meta" data-v="{float(value) if ok else ""}">'  # type: ignore[arg-type]
                    f'{f"{int(float(value)):,}" if ok else "unknown"}</td>')  # type: ignore[arg-type]
        if isinstance(value, float):
            return f'<td class="num meta" data-v="{value if _finite(value) else ""}">{e(fmt(value))}</td>'
        return f'<td class="meta wrap">{e(value)}</td>'

    # -- per task ----------------------------------------------------------------------------------------------
    def task_metric_cols(self, rows: pd.DataFrame) -> list[str]:
        cols = [c for c in rows.columns if base_metric(c) and not re.search(r"_ci_(low|high)$", c)]
        present = [c for c in cols if pd.to_numeric(rows[c], errors="coerce").notna().any()]
        return sorted(present, key=lambda c: (c != "cknna_to_ref", c != "energy_mae"))

    def task_table(self, task: str) -> str:
        rows = self.per_task[self.per_task["task"] == task]
        if len(rows):  # the task's own ranking: its reference first, then by CKNNA (better first), missing last
            score = pd.to_numeric(rows.get("cknna_to_ref", pd.Series(index=rows.index, dtype=float)), errors="coerce")
            is_ref = rows.get("is_reference", pd.Series("", index=rows.index)).astype(str) == "true"
            better = -1.0 if direction_of("cknna_to_ref") == "higher" else 1.0
            order = pd.DataFrame({"ref": ~is_ref, "score": (better * score).fillna(float("inf"))}, index=rows.index)
            rows = rows.loc[order.sort_values(["ref", "score"], kind="mergesort").index]
        rows = rows.reset_index(drop=True)
        metrics = self.task_metric_cols(rows)
        self.shown_metrics.update(metrics)
        h = self.t.task_headers
        meta = [c for c in ("n_samples", "model_version") if c in rows.columns]
        heads = [header_cell("model", "model", "display name (model key)", False),
                 header_cell("role", "role", "id / ood: whether the task is in the model's training domain", False)]
        heads += [header_cell(c, short_header(c) if c != "cknna_to_ref" else "CKNNA to reference",
                              tooltip(c, h.get(c, c)), True) for c in metrics]
        heads += [header_cell(c, h.get(c, c), h.get(c, c), True) for c in meta]
        heads += [header_cell("checkpoint_digest", "checkpoint", "digest of the weights (click copy for all of it)",
                              False),
                  header_cell("run_id", "MLflow run", "the child run this row was read from", False)]
        is_ref = rows.get("is_reference", pd.Series("", index=rows.index)).astype(str) == "true"
        shading = {c: quality(rows[c], direction_of(c), is_ref if stage_of(c) == "alignment" else None)
                   for c in metrics}
        body = []
        for i, r in rows.iterrows():
            model = str(r["model"])
            ref = ' <span class="badge ref">reference</span>' if str(r.get("is_reference")) == "true" else ""
            cells = [self.model_button(model, ref), f"<td>{e(r.get('role', ''))}</td>"]
            for c in metrics:
                ci = ""
                lo, hi = r.get(f"{c}_ci_low"), r.get(f"{c}_ci_high")
                if _finite(lo) and _finite(hi):
                    ci = f' <small class="key">[{e(fmt(lo))}, {e(fmt(hi))}]</small>'
                cells.append(metric_cell(r[c], c, shading[c].get(int(i)), ci, primary=c == "cknna_to_ref"))
            for c in meta:
                v = pd.to_numeric(pd.Series([r[c]]), errors="coerce").iloc[0]
                cells.append(f'<td class="num" data-v="{v if _finite(v) else ""}">{e(r[c])}</td>')
            digest = r.get("checkpoint_digest", "")
            cells.append(f'<td data-v="{e(digest)}">{digest_html(digest)}</td>')
            cells.append(f'<td data-v="{e(r.get("run_id", ""))}">{run_link(r.get("run_id"), self.url)}</td>')
            body.append(f"<tr {self.row_attrs(model)}>{''.join(cells)}</tr>")
        return (f'<div class="scroll"><table class="per-task filterable" data-task="{e(task)}"><thead><tr>'
                f'{"".join(heads)}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')

    def task_about(self, task: str) -> str:
        b = self.board
        ref = b.references.get(task, "")
        why = b.reference_reasons.get(task, "")
        return (f'<p class="about">Task version {e(b.task_versions.get(task, ""))}; reference model '
                f"<strong>{e(ref) or 'none'}</strong>" + (f" ({e(why)})" if why else "") +
                "; CKNNA in brackets: its 95% bootstrap interval over query points.</p>")

    def not_ranked_table(self) -> str:
        rows = self.not_ranked
        if rows.empty:
            return '<p class="empty">Every selected model ran on every task.</p>'
        cols = [c for c in rows.columns if c != "run_id"]
        heads = [header_cell(c, self.t.headers.get(c, c), self.t.headers.get(c, c), False) for c in cols]
        heads.append(header_cell("run_id", "MLflow run", "the run this row was read from", False))
        body = []
        for _, r in rows.iterrows():
            cells = [self.model_button(str(r[c])) if c == "model" else
                     f'<td class="wrap">{inline_markup(r[c])}</td>' if c == "reason" else f"<td>{e(r[c])}</td>"
                     for c in cols]
            cells.append(f'<td data-v="{e(r.get("run_id", ""))}">{run_link(r.get("run_id"), self.url)}</td>')
            body.append(f"<tr {self.row_attrs(str(r.get('model', '')))}>{''.join(cells)}</tr>")
        return (f'<div class="scroll"><table class="not-ranked filterable"><thead><tr>{"".join(heads)}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table></div>')

    # -- model cards -------------------------------------------------------------------------------------------
    def card(self, model: str) -> str:
        row = self.info[model]
        name = str(row.get("name") or model)
        rank, extra = self.rank_html(row)
        items: list[tuple[str, str]] = [("model key", f"<code>{e(model)}</code>"), ("rank", f"{rank} {extra}")]
        for c in self.metric_cols:
            if c == "ood_collapse":
                items.append((SHORT[c], e(row[c])))
            elif _finite(row[c]):
                task = c[len("cknna_to_ref") + 1:-1] if c.startswith("cknna_to_ref[") else ""
                items.append((f"CKNNA on {task}" if task else METRICS[c].display, e(fmt(row[c]))))
        extra_info = self.extra.get(model, {})
        for c in self.meta_cols:
            if c == "parameters":
                v = row[c]
                items.append(("parameters", f"{int(float(v)):,}" if _finite(v) else "unknown"))
            else:
                shown = citation_html(str(row[c] or "")) if c == "citation" else e(row[c])
                items.append((self.t.headers.get(c, c), shown or '<span class="empty">not recorded</span>'))
        for key, label in (("license", "licence"), ("citation", "citation")):
            if key in self.meta_cols:
                continue
            value = str(extra_info.get(key) or "")
            shown = (citation_html(value) if key == "citation" else e(value)) if value else ""
            items.append((label, (shown + ' <span class="key">(models.yaml)</span>') if shown
                          else '<span class="empty">not recorded</span>'))
        dl = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in items)
        runs = self.per_task[self.per_task["model"] == model]
        trs = []
        for _, r in runs.iterrows():
            lo, hi = r.get("cknna_to_ref_ci_low"), r.get("cknna_to_ref_ci_high")
            ci = f" [{fmt(lo)}, {fmt(hi)}]" if _finite(lo) and _finite(hi) else ""
            score = ('<td><span class="badge ref">reference</span></td>' if str(r.get("is_reference")) == "true"
                     else f'<td class="num">{e(fmt(r.get("cknna_to_ref")))}{e(ci)}</td>')
            trs.append(f"<tr><td>{e(r['task'])}</td><td>{e(r.get('role', ''))}</td>{score}"
                       f'<td class="num">{e(fmt(r.get("energy_mae")))}</td>'
                       f"<td>{digest_html(r.get('checkpoint_digest'))}</td>"
                       f"<td>{run_link(r.get('run_id'), self.url)}</td></tr>")
        skipped = self.not_ranked[self.not_ranked["model"] == model] if "model" in self.not_ranked else pd.DataFrame()
        trs += [f"<tr><td>{e(r['task'])}</td><td colspan=\"3\">{e(r.get('status', ''))}: {e(r.get('reason', ''))}</td>"
                f"<td></td><td>{run_link(r.get('run_id'), self.url)}</td></tr>" for _, r in skipped.iterrows()]
        runs_note = "" if self.url else (f'<p class="key">Set ${MLFLOW_URL_ENV} (an MLflow server UI) when '
                                         "building the board to link each run.</p>")
        return (f'<dialog class="card" id="{self.card_id[model]}" aria-label="model card: {e(name)}">'
                f'<button type="button" class="close">close</button><h3>{e(name)}</h3><dl>{dl}</dl>'
                '<table><thead><tr><th>task</th><th>role</th><th>CKNNA to reference [95% CI]</th><th>energy MAE</th>'
                f'<th>checkpoint</th><th>MLflow run</th></tr></thead><tbody>{"".join(trs)}</tbody></table>'
                f"{runs_note}</dialog>")

    # -- controls, definitions, downloads ----------------------------------------------------------------------
    def controls(self) -> str:
        selects = []
        for key in FILTERS:
            values = sorted({str(v) for v in self.models.get(key, []) if str(v or "")})
            if not values:
                continue
            opts = "".join(f'<option value="{e(v)}">{e(v)}</option>' for v in values)
            selects.append(f'<label>{e(key)} <select data-filter="{e(key)}"><option value="">all</option>{opts}'
                           "</select></label>")
        return ('<div class="controls"><input type="search" id="filter-text" placeholder="filter models, families, '
                'tasks…" aria-label="filter rows">' + "".join(selects) +
                '<label><input type="checkbox" id="show-meta"> show metadata columns</label>'
                '<span class="count" id="row-count"></span></div>')

    def definitions(self, notes: list[str]) -> str:
        rows = []
        for name, info in METRICS.items():
            if name not in self.shown_metrics:
                continue
            way = {"higher": "higher is better", "lower": "lower is better"}.get(info.direction,
                                                                                "descriptive: neither is better")
            unit = f"; unit {e(info.unit)}" if info.unit else ""
            rows.append(f"<dt>{e(info.display)} <code>{e(name)}</code></dt><dd>{inline_markup(info.description)} "
                        f"({way}{unit})</dd>")
        return (f'<dl class="defs">{"".join(rows)}</dl>' + "".join(f'<p class="note">{inline_markup(n)}</p>'
                                                                   for n in notes))


def downloads_html(downloads: dict[str, Path] | None) -> str:
    """CSV / JSON downloads: embedded as data: URLs when their paths are given, else links to the sibling files."""
    links = []
    for name, mime in (("leaderboard.csv", "text/csv"), ("leaderboard.json", "application/json")):
        path = (downloads or {}).get(name)
        if path is not None:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            href = f"data:{mime};base64,{data}"
        else:
            href = name
        links.append(f'<a href="{href}" download="{name}">download {name.rsplit(".", 1)[1].upper()}</a>')
    return f'<p class="downloads">{"".join(links)}</p>'


def figure_html(title: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{e(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(title)}</figcaption></figure>")


def render(
    tables: Tables, board: Board, figures: dict[str, tuple[str, Path]], source: str, notes: list[str], *,
    downloads: dict[str, Path] | None = None, mlflow_url: str | None = None,
    model_info: dict[str, dict[str, str]] | None = None,
) -> str:
    """The whole page as one string.

    downloads: {"leaderboard.csv": path, "leaderboard.json": path} to embed them (else relative links);
    mlflow_url: an MLflow server UI to link runs to (else $MATTERALIGN_MLFLOW_URL, else unlinked);
    model_info: {model key: {"license", "citation"}} for the cards (else read from models.yaml).
    """
    keys = list(dict.fromkeys(str(k) for k in tables.models.get("model", [])))
    page = Page(tables, board, resolve_mlflow_url(mlflow_url),
                registry_info(keys) if model_info is None else model_info)
    tasks = sorted(board.task_versions)
    tab_ids = [("overall", "Overall")] + [(f"task-{t}", t) for t in tasks] + [
        ("not-ranked", f"Not ranked ({len(page.not_ranked)})")]
    tabs = "".join(
        f'<button type="button" role="tab" id="tab-{e(tid)}" data-tab="{e(tid)}" aria-controls="panel-{e(tid)}" '
        f'aria-selected="{"true" if i == 0 else "false"}">{e(label)}</button>'
        for i, (tid, label) in enumerate(tab_ids))
    n_ranked = int(pd.to_numeric(tables.models.get("rank", pd.Series(dtype=float)), errors="coerce").notna().sum())
    panels = [
        '<section class="panel" role="tabpanel" id="panel-overall" aria-labelledby="tab-overall">'
        '<p class="about">Ranked per track by CKNNA alignment to each task\'s reference model, averaged over '
        "every task of the track (a model missing one is listed with its coverage, not ranked); [low–high] is "
        "the rank interval from the bootstrap over structures; hover a header for its definition, click it to "
        "sort.</p>" + page.track_tables() + "</section>",
        *(f'<section class="panel" role="tabpanel" id="panel-task-{e(t)}" aria-labelledby="tab-task-{e(t)}">'
          f"{page.task_about(t)}{page.task_table(t)}</section>" for t in tasks),
        '<section class="panel" role="tabpanel" id="panel-not-ranked" aria-labelledby="tab-not-ranked">'
        '<p class="about">Runs that were skipped, failed or excluded from this board, with the reason.</p>'
        + page.not_ranked_table() + "</section>",
    ]
    cards = "".join(page.card(m) for m in keys)
    figure_block = ('<div class="figures">' + "".join(figure_html(t, p) for t, p in figures.values()) + "</div>"
                    if figures else '<p class="empty">No figures for this board.</p>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>matteralign leaderboard (benchmark {e(board.benchmark_version)})</title>",
        f"<style>{asset('leaderboard.css')}</style></head><body>",
        "<header><h1>matteralign leaderboard</h1>",
        f'<p class="lede">{e(board_label(board))} · benchmark version {e(board.benchmark_version)} · {n_ranked} '
        f"ranked rows in {len(tables.tracks) or 1} track{'s' if len(tables.tracks) != 1 else ''} over "
        f"{len(tasks)} task{'s' if len(tasks) != 1 else ''} ({e(', '.join(tasks))}) · read from {e(source)}</p>",
        downloads_html(downloads), "</header>",
        "<main>", page.controls(), f'<nav class="tabs" role="tablist">{tabs}</nav>', *panels,
        "<h2>Figures</h2>", figure_block,
        "<h2>Definitions and notes</h2>", page.definitions(notes),
        "</main>", cards,
        f"<script>{asset('leaderboard.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)
