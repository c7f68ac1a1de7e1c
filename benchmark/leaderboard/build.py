"""Write the leaderboard: leaderboard.md / .csv / .json, index.html and figures/*.png, read from MLflow.

The figures (and the written files) are also logged to an MLflow run of kind `leaderboard` (benchmark.tracking.schema)
so every published board is traceable to the runs it was built from; one such run per board version is kept (the
newest; earlier ones are soft-deleted, restorable with `MlflowClient().restore_run`). Each figure is rendered once and the
saved PNG logged with `log_artifact` (what `mlflow.log_figure` does, without drawing the figure twice).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import tracking
from benchmark.embeddings import cache_root
from benchmark.errors import ConfigError, DataError
from benchmark.leaderboard import table as tbl
from benchmark.leaderboard.artifacts import load_replicates, task_cache_keys, task_embeddings
from benchmark.leaderboard.collect import Board, client, experiment_id, load_child_runs, select_board
from benchmark.metrics.pairwise import ordered, pairwise_matrices
from benchmark.tracking import schema as S

NOTES = [
    "Ranking: " + " ".join(tbl.RANKING.split()),
    "Rank interval: " + " ".join(tbl.RANK_INTERVAL.split()),
    f"ID / OOD scores: mean CKNNA to the reference over the model's tasks whose role (tag {S.ROLE}) is "
    "id / ood; tasks on which the model is itself the reference are left out.",
    "OOD collapse: " + " ".join(tbl.OOD_COLLAPSE.split()),
    "Versions: a frozen board (leaderboard/board.yaml) fixes per task the version, the exact sample ids and the "
    "pinned reference; only its results count (runs at another sample size, seed or k are exploration runs, "
    "never shown). The newest finished run per result identity (" + ", ".join(S.IDENTITY) + ") and per model "
    "its newest checkpoint. Runs left out for that reason are listed under 'Not ranked'.",
]


#: first characters that make a spreadsheet read a text cell as a formula (OWASP CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _csv_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells (and headers) cannot run as spreadsheet formulas: OWASP's rule, a leading `'`
    on text starting with = + - @ TAB CR. Numbers (negative ones too) and text that is a plain number stay."""
    out = frame.rename(columns=_csv_cell)
    for col in [c for c in out.columns if not pd.api.types.is_numeric_dtype(out[c])]:
        out[col] = out[col].map(_csv_cell)
    return out


def check_out_dir(out_dir: Path) -> None:
    """Raise ConfigError naming the path when out_dir/figures cannot be a folder (a file is in the way)."""
    for path in (Path(out_dir) / "figures", *(Path(out_dir) / "figures").parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"leaderboard folder {out_dir}: {path} exists and is not a folder; "
                                  "pass another --leaderboard-dir / --out, or move that file away")
            return


def _md_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
            .replace("\r", " ").replace("\n", " "))


def markdown_table(frame: pd.DataFrame, headers: dict[str, str]) -> str:
    shown = tbl.display(frame, headers)
    lines = ["| " + " | ".join(_md_cell(c) for c in shown.columns) + " |",
             "|" + "|".join("---" for _ in shown.columns) + "|"]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines)


def markdown(
    tables: tbl.Tables, board: Board, figure_files: dict[str, tuple[str, Path]], source: str, notes: list[str]
) -> str:
    refs = ["| task | task version | reference | why |", "|---|---|---|---|"]
    refs += [f"| {_md_cell(t)} | {_md_cell(board.task_versions[t])} | {_md_cell(board.references.get(t, ''))} | "
             f"{_md_cell(board.reference_reasons.get(t, ''))} |" for t in sorted(board.task_versions)]
    parts = [
        "# matteralign leaderboard", "",
        f"{_md_cell(board_line(board))}; benchmark version {_md_cell(board.benchmark_version)}; read from "
        f"{_md_cell(source)}.", "",
        "## Ranking", "", *ranking_sections(tables), "",
        "## References per task", "", *refs, "",
        "## Per task", "", markdown_table(tables.per_task, tables.task_headers), "",
        "## Not ranked", "",
        markdown_table(tables.not_ranked, tables.headers) if len(tables.not_ranked)
        else "Every selected model ran on every task.", "",
        "## Figures", "",
        *[f"![{_md_cell(title)}](figures/{path.name})" for title, path in figure_files.values()], "",
        "## Definitions and notes", "", *[f"- {_md_cell(n)}" for n in notes], "",
    ]
    return "\n".join(parts)


def board_line(board: Board) -> str:
    """Which board the results belong to, in one line."""
    d = board.definition
    if d is None:
        return "Provisional board (no frozen leaderboard/board.yaml: references chosen per run)"
    return (f"Board {d.id} (frozen {d.created or '?'} from run {d.source_run or '?'}; ranked by {d.ranked_metric} "
            f"at k = {d.k}, coverage rule: every task of a track)")


def ranking_sections(tables: tbl.Tables) -> list[str]:
    """One markdown ranking table per track, each with its coverage rule and the k = 10 vs 25 Kendall tau."""
    out = []
    for track, info in tables.tracks.items():
        rows = tables.models[tables.models["track"] == track]
        cols = [c for c in rows.columns if c != "track" and not (c.startswith("cknna_to_ref[")
                                                                  and c[13:-1] not in info["tasks"])]
        tau = info["kendall_tau_k10_k25"]
        out += [f"### Track {track}: {', '.join(info['tasks'])}", "",
                f"{info['ranked']} ranked (a result on every one of these tasks); Kendall tau between the rankings "
                f"at k = 10 and k = 25: {'n/a' if not math.isfinite(tau) else f'{tau:.3f}'}"
                + ("" if info["rank_intervals"] else "; no rank intervals (runs without bootstrap replicates)"),
                "", markdown_table(rows[cols], tables.headers), ""]
    return out or ["No results."]


def _json_value(v: object) -> object:
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


#: columns holding whole numbers that a frame stores as floats (NaN where a model has no rank)
_INTEGER_COLUMNS = ("rank", "rank_low", "rank_high")


def _records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in frame.to_dict(orient="records"):
        rec = {k: _json_value(v) for k, v in row.items()}
        for k in _INTEGER_COLUMNS:
            if isinstance(rec.get(k), float):
                rec[k] = int(rec[k])
        out.append(rec)
    return out


def as_json(tables: tbl.Tables, board: Board, source: str, notes: list[str]) -> dict:
    return {
        "board": None if board.definition is None else {"id": board.definition.id, **board.definition.model_dump(
            mode="json", include={"version", "k", "k_reported", "ranked_metric", "aggregation", "coverage",
                                  "created", "source_run", "board_run", "tracks"})},
        "tracks": {t: {k: _json_value(v) for k, v in info.items()} for t, info in tables.tracks.items()},
        "benchmark_version": board.benchmark_version,
        "source": source,
        "tasks": {t: {"version": board.task_versions[t], "reference": board.references.get(t, ""),
                      "reference_reason": board.reference_reasons.get(t, "")} for t in sorted(board.task_versions)},
        "columns": {c: {"header": tables.headers.get(c, c), "better": tables.directions.get(c)}
                    for c in tables.models.columns},
        "models": _records(tables.models),
        "per_task": _records(tables.per_task),
        "not_ranked": _records(tables.not_ranked),
        "notes": notes,
    }


def _figures(tables: tbl.Tables, board: Board, tracking_uri: str | None, k: int, notes: list[str]):
    """Yield (name, title, Figure) for every figure the board supports; what cannot be drawn goes to notes."""
    from benchmark.leaderboard import figures

    families = dict(zip(board.results["model"], board.results["family"]))
    for task in sorted(board.task_versions):
        if (board.results["task"] == task).sum() < 2:
            continue
        try:
            matrices = pairwise_matrices(task_embeddings(board, task, tracking_uri), k, knn_dir=cache_root() / "knn",
                                         cache_keys=task_cache_keys(board, task))
            cknna = ordered(matrices["cknna"])
        except DataError as exc:
            notes.append(f"No CKNNA matrix for {task}: {exc}")
            continue
        yield f"cknna_{task}", f"CKNNA between models on {task}", figures.matrix_figure(cknna, f"CKNNA on {task}")
        blocks = figures.family_blocks(cknna, families)
        yield (f"cknna_family_{task}", f"CKNNA on {task}, averaged within and between model families",
               figures.matrix_figure(blocks, f"CKNNA by family on {task}"))
        if len(cknna) >= 3 and np.isfinite(cknna.to_numpy(dtype=float)).all():
            yield (f"dendrogram_{task}", f"Models clustered by 1 - CKNNA on {task}",
                   figures.dendrogram_figure(cknna, f"Models on {task}: 1 - CKNNA"))
    if len(tables.per_task):
        yield ("alignment_vs_energy", "Alignment to the reference vs energy MAE, Spearman's rho per task",
               figures.alignment_vs_energy(tables.per_task))
        yield ("intrinsic_dimension", "Intrinsic dimension per model and task",
               figures.intrinsic_dimension_figure(tables.per_task))
        yield ("info_imbalance", "Information-imbalance plane", figures.info_imbalance_plane(tables.per_task))
    if len(tables.models):
        yield "id_vs_ood", "ID vs OOD alignment per model", figures.id_vs_ood(tables.models)


def frozen_board(board_file: Path | str | None = None):
    """The frozen board definition in force (`resolve_board_file`), or None."""
    from benchmark.registry.loader import load_board, resolve_board_file

    path = resolve_board_file(board_file)
    return load_board(path) if path is not None else None


def _board_k(board: Board) -> int:
    ks = pd.to_numeric(board.results.get("k", pd.Series(dtype=object)), errors="coerce").dropna()
    return int(ks.mode().iloc[0]) if len(ks) else 10


def write_leaderboard(
    out_dir: Path, tracking_uri: str | None = None, experiment: str | None = None, log_to_mlflow: bool = True,
    board_file: Path | str | None = None,
) -> dict[str, Path]:
    """Read the runs, write every leaderboard file under out_dir and return {name: path}.

    Concurrent writers of one folder take turns (a lock file beside it), so none deletes another's figures.
    """
    from benchmark.io import file_lock

    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    try:
        lock = file_lock(out_dir.parent / f".{out_dir.name}.lock", timeout=600, what="writing the leaderboard")
        with lock:
            return _write_leaderboard_unlocked(out_dir, tracking_uri, experiment, log_to_mlflow, board_file)
    except OSError as exc:
        raise ConfigError(f"cannot write the leaderboard folder {out_dir}: {exc.strerror or exc}") from exc


def _write_leaderboard_unlocked(
    out_dir: Path, tracking_uri: str | None = None, experiment: str | None = None, log_to_mlflow: bool = True,
    board_file: Path | str | None = None,
) -> dict[str, Path]:
    """write_leaderboard without the lock."""
    from benchmark.leaderboard import figures as figs
    from benchmark.leaderboard import html as page

    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    check_out_dir(out_dir)
    try:
        fig_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the leaderboard folder {fig_dir}: {exc.strerror or exc}") from exc
    uri = tracking.tracking_uri(tracking_uri)
    board = select_board(load_child_runs(uri, experiment), definition=frozen_board(board_file))
    missing = load_replicates(board, uri)
    tables = tbl.build_tables(board)
    source = f"{uri} (experiment {tracking.experiment_name(experiment)})"
    cl = client(uri) if log_to_mlflow else None
    run_id = None
    if cl is not None:
        run_id = cl.create_run(experiment_id(cl, experiment), run_name="leaderboard", tags={
            S.KIND: S.Kind.LEADERBOARD, S.BENCHMARK_VERSION: board.benchmark_version,
            S.BOARD: board.definition.id if board.definition else ""}).info.run_id
    try:
        written: dict[str, Path] = {}
        figure_files: dict[str, tuple[str, Path]] = {}
        for old in fig_dir.glob("*.png"):
            old.unlink()
        notes = list(NOTES) + board.notes
        if missing:
            notes.append(f"no bootstrap replicates for {len(missing)} run(s), so no rank intervals on their "
                         f"tracks: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        for name, title, fig in _figures(tables, board, uri, _board_k(board), notes):
            figure_files[name] = (title, figs.save(fig, fig_dir / f"{name}.png"))
            if cl is not None:
                cl.log_artifact(run_id, str(figure_files[name][1]), "figures")
            written[f"figures/{name}.png"] = figure_files[name][1]
        csv = csv_safe(tables.models.rename(columns=lambda c: tables.headers.get(c, c)))
        written["leaderboard.csv"] = out_dir / "leaderboard.csv"
        csv.to_csv(written["leaderboard.csv"], index=False)
        written["leaderboard.json"] = out_dir / "leaderboard.json"
        written["leaderboard.json"].write_text(json.dumps(as_json(tables, board, source, notes), indent=2) + "\n")
        written["leaderboard.md"] = out_dir / "leaderboard.md"
        written["leaderboard.md"].write_text(markdown(tables, board, figure_files, source, notes), encoding="utf-8")
        written["index.html"] = out_dir / "index.html"
        written["index.html"].write_text(page.render(tables, board, figure_files, source, notes), encoding="utf-8")
        if cl is not None:
            for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "index.html"):
                cl.log_artifact(run_id, str(written[name]))
    except BaseException:
        if cl is not None:
            cl.set_terminated(run_id, "FAILED")
        raise
    if cl is not None:
        cl.set_terminated(run_id, "FINISHED")
        _retire_older_leaderboard_runs(cl, experiment_id(cl, experiment), run_id, board)
    return written


def _retire_older_leaderboard_runs(cl, exp_id: str, keep: str, board: Board) -> list[str]:
    """Delete (MLflow's soft delete, restorable) the earlier finished leaderboard runs of the same board
    version, so the experiment holds one leaderboard run per board: the newest. Returns the ids deleted."""
    board_id = board.definition.id if board.definition else ""
    runs = cl.search_runs([exp_id], filter_string=f"{S.kind_filter(S.Kind.LEADERBOARD)} and "
                          "attributes.status = 'FINISHED'", max_results=1000)
    old = [r.info.run_id for r in runs if r.info.run_id != keep and r.data.tags.get(S.BOARD, "") == board_id
           and r.data.tags.get(S.BENCHMARK_VERSION) == board.benchmark_version]
    for run_id in old:
        cl.delete_run(run_id)
    return old
