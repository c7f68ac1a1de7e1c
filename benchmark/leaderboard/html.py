"""A self-contained static leaderboard page: inline CSS, figures as base64 PNG, no script, no CDN.

Every string that comes from models.yaml or MLflow goes through `html.escape`, so a model named
`<script>` shows as text and cannot run.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from benchmark.leaderboard.collect import Board
from benchmark.leaderboard.table import Tables, display

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#1b1b1b;background:#fff;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eef2f7}tr:nth-child(even) td{background:#f8f9fb}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85rem;color:#444}.note{font-size:.9rem;color:#333}
"""


def e(value: object) -> str:
    """Escape any value for HTML text or attribute context."""
    return html.escape("" if value is None else str(value), quote=True)


def table_html(frame: pd.DataFrame, headers: dict[str, str], css_class: str) -> str:
    shown = display(frame, headers)
    head = "".join(f"<th>{e(c)}</th>" for c in shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in shown.itertuples(index=False)
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def figure_html(title: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{e(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(title)}</figcaption></figure>")


def render(tables: Tables, board: Board, figures: dict[str, tuple[str, Path]], source: str, notes: list[str]) -> str:
    """The whole page as one string."""
    refs = "".join(
        f"<tr><td>{e(t)}</td><td>{e(board.task_versions[t])}</td><td>{e(board.references.get(t, ''))}</td>"
        f"<td>{e(board.reference_reasons.get(t, ''))}</td></tr>"
        for t in sorted(board.task_versions)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>matteralign leaderboard (benchmark {e(board.benchmark_version)})</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>matteralign leaderboard</h1>",
        f'<p class="note">Benchmark version {e(board.benchmark_version)}; read from {e(source)}. '
        "Models are ranked by CKNNA alignment to the reference model, averaged over tasks.</p>",
        "<h2>Ranking</h2>",
        table_html(tables.models, tables.headers, "leaderboard"),
        "<h2>References per task</h2>",
        '<table class="references"><thead><tr><th>task</th><th>task version</th><th>reference</th>'
        f"<th>why</th></tr></thead><tbody>{refs}</tbody></table>",
        "<h2>Per task</h2>",
        table_html(tables.per_task, tables.task_headers, "per-task"),
        "<h2>Not ranked</h2>",
        table_html(tables.not_ranked, tables.headers, "not-ranked") if len(tables.not_ranked)
        else "<p>Every selected model ran on every task.</p>",
        "<h2>Figures</h2>",
        *(figure_html(title, path) for title, path in figures.values()),
        "<h2>Definitions and notes</h2>",
        "".join(f'<p class="note">{e(n)}</p>' for n in notes),
        "</body></html>",
    ]
    return "\n".join(parts)
