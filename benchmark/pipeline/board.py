"""The frozen board in a run: which of its results are board results, the pinned reference of each task, and
freezing a board from a finished run.

A board (leaderboard/board.yaml, `benchmark.registry.schema.BoardSpec`) fixes per task the version, the exact
sample (size, seed, ids digest) and the reference (model key + checkpoint digest + embedding cache key). In a
run, a task the board defines (same name and task version) is aligned to the pinned reference only: if that
model's embeddings cannot be had from its checkpoint, the cache or the board's own MLflow run, the task gets no
alignment, never another reference. A result on the board's sample with the board's k is a board result; any
other (another --n-samples, --seed, --k) is an exploration run: logged, tagged with the reason, never ranked.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark import __version__
from benchmark.errors import ConfigError, DataError, MatteralignError
from benchmark.pipeline.align import K_PAPER
from benchmark.pipeline.types import ModelTaskResult, ReferenceChoice, RunConfig
from benchmark.registry.loader import BOARD_FILE_NAME, load_board, resolve_board_file
from benchmark.registry.schema import BoardReference, BoardSpec, BoardTask, TaskSpec
from benchmark.structures import Dataset, ids_digest
from benchmark.tracking import schema as S



def run_board(cfg: RunConfig) -> BoardSpec | None:
    """The board this run measures against (`resolve_board_file(cfg.board_file)`); None with "none" or when no
    board exists yet."""
    path = resolve_board_file(cfg.board_file)
    return load_board(path) if path is not None else None


@dataclass(frozen=True)
class TaskBoard:
    """How a board applies to one task of a run."""

    #: the board id ("<name>@<version>") when the board defines this task, else ""
    board: str = ""
    #: why results on this task are exploration runs ("" = board results, or no board)
    exploration: str = ""
    #: the task's board entry (None: the board does not define this task / task version)
    task: BoardTask | None = None


def task_board(board: BoardSpec | None, spec: TaskSpec, ds: Dataset, k: int) -> TaskBoard:
    """Board result, exploration (with the reason) or not on the board, for `spec` sampled as `ds` at `k`."""
    if board is None or spec.name not in board.tasks:
        return TaskBoard()
    bt = board.tasks[spec.name]
    if bt.version != spec.version:
        return TaskBoard(board.id,
                         f"task version {spec.version}; board {board.id} defines {spec.name} version {bt.version} "
                         "(a new task version needs a new board version)", None)
    why = []
    digest = ids_digest(ds.ids)
    if digest != bt.ids_digest:
        why.append(f"sample of {len(ds)} structures (ids digest {digest[:12]}), not the board's {bt.n_samples} "
                   f"(seed {bt.seed}, ids digest {bt.ids_digest[:12]})")
    elif bt.data_digest and ds.digest != bt.data_digest:
        why.append(f"the board's {len(ds)} sample ids with other structures (data digest {ds.digest[:12]}, not the "
                   f"board's {bt.data_digest[:12]}): the task's source data or a library that builds its coordinates "
                   "(RDKit for molecule conformers, pymatgen for crystals) is not the version the board was frozen "
                   "with; ./install.sh installs the pinned versions")
    if k != board.k:
        why.append(f"k = {k}, not the board's k = {board.k}")
    return TaskBoard(board.id, "; ".join(why), bt)


def pinned_models(board: BoardSpec | None, task_names: list[str]) -> list[str]:
    """The pinned reference models of the board's tasks among `task_names`, in task order, once each."""
    if board is None:
        return []
    return list(dict.fromkeys(board.tasks[t].reference.model for t in task_names if t in board.tasks))


def pinned_reference(tb: TaskBoard, results: list[ModelTaskResult], board: BoardSpec, task: str, root: Path,
                     tracking_uri: str | None) -> tuple[ReferenceChoice, ModelTaskResult | None]:
    """The task's ReferenceChoice under the board and the result holding the reference's embeddings.

    The pinned model's own result is used when its checkpoint digest (and, on the board's sample, its cache
    key) match the board's; when it could not run here, its embeddings come from the cache entry named by the
    board, else from the board's MLflow run. Anything else is no reference, with the reason and the fix.
    """
    assert tb.task is not None
    pin = tb.task.reference
    new_version = (f"a different reference is a new board version: `matteralign board freeze --from-run <run> "
                   f"--version {board.version + 1}`")
    own = next((r for r in results if r.model == pin.model), None)
    if own is not None and own.status == "ok" and own.features is not None:
        if own.checkpoint_digest and own.checkpoint_digest != pin.checkpoint_digest:
            return ReferenceChoice(None, f"pinned reference {pin.model} of board {board.id} now has checkpoint "
                                   f"{own.checkpoint_digest[:12]}, not the pinned {pin.checkpoint_digest[:12]}; no "
                                   f"alignment on {task} ({new_version})"), None
        if not tb.exploration and own.cache_key != pin.cache_key:
            return ReferenceChoice(None, f"pinned reference {pin.model} of board {board.id} embedded {task} under "
                                   f"cache key {own.cache_key[:12]}, not the pinned {pin.cache_key[:12]} (its "
                                   f"entry or embedding changed); no alignment on {task} ({new_version})"), None
        return ReferenceChoice(pin.model, f"pinned by board {board.id}: {pin.reason}"), own
    why = own.reason if own is not None else "not run"
    if tb.exploration:
        return ReferenceChoice(None, f"pinned reference {pin.model} of board {board.id} did not run on {task} ({why}); "
                               "the board's stored embeddings are of its own sample, not this exploration's"), None
    stored, where = _stored_reference(pin, board, task, root, tracking_uri)
    if stored is None:
        return ReferenceChoice(None, f"pinned reference {pin.model} of board {board.id} did not run on {task} ({why}) "
                               f"and its embeddings are not stored ({where}); it is never replaced by another "
                               f"model: make its checkpoint {pin.checkpoint_digest[:12]} available and rerun"), None
    ids = next((r.ids for r in results if r.ids), None)
    if ids is not None and stored.ids != ids:
        return ReferenceChoice(None, f"the stored embeddings of pinned reference {pin.model} ({where}) are of other "
                               f"sample ids than this run's {task} sample; no alignment"), None
    return ReferenceChoice(pin.model, f"pinned by board {board.id}: {pin.reason} (embeddings from {where}: "
                           f"{pin.model} itself could not run here: {why})"), stored


def _stored_reference(pin: BoardReference, board: BoardSpec, task: str, root: Path, tracking_uri: str | None
                      ) -> tuple[ModelTaskResult | None, str]:
    """The pinned reference's embeddings from its cache entry, else from the board run's artifact."""
    from benchmark.embeddings.cache import EmbeddingStore

    store = EmbeddingStore(pin.cache_key, root)
    tried = []
    if store.complete:
        try:
            emb = store.load()
            return _as_result(pin, task, emb.features, emb.ids), f"cache entry {store.path}"
        except DataError as exc:
            tried.append(f"cache entry {store.path}: {exc}")
    else:
        tried.append(f"no cache entry {store.path}")
    if board.board_run:
        try:
            features, ids = _board_artifact(board.board_run, task, tracking_uri)
            return _as_result(pin, task, features, ids), f"board run {board.board_run}"
        except Exception as exc:  # noqa: BLE001 - an unreadable artifact is one more place tried
            tried.append(f"board run {board.board_run}: {type(exc).__name__}: {str(exc)[:200]}")
    else:
        tried.append("the board names no board run")
    return None, "; ".join(tried)


def _as_result(pin: BoardReference, task: str, features: np.ndarray, ids: list[str]) -> ModelTaskResult:
    return ModelTaskResult(pin.model, task, "ok", features=features, ids=list(ids), cache_key=pin.cache_key,
                           checkpoint_digest=pin.checkpoint_digest, reused=True)


def _board_artifact(run_id: str, task: str, tracking_uri: str | None) -> tuple[np.ndarray, list[str]]:
    import mlflow

    from benchmark import tracking

    uri = tracking.tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        f = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=S.REFERENCE_ARTIFACT.format(task=task),
                                                dst_path=tmp, tracking_uri=uri)
        i = mlflow.artifacts.download_artifacts(run_id=run_id, tracking_uri=uri, dst_path=tmp,
                                                artifact_path=S.REFERENCE_IDS_ARTIFACT.format(task=task))
        return np.load(f, allow_pickle=False), json.loads(Path(i).read_text())


# --- freezing ------------------------------------------------------------------------------------------


def board_path(out: Path | str | None = None) -> Path:
    """Where a frozen board is written: `out`, else ./leaderboard/board.yaml."""
    return Path(out) if out is not None else Path(BOARD_FILE_NAME)


def freeze_board(parent_run_id: str, tracking_uri: str | None = None, experiment: str | None = None,
                 version: int | None = None, out: Path | str | None = None, tracks: dict[str, list[str]] | None = None,
                 root: Path | None = None) -> tuple[BoardSpec, Path]:
    """Freeze the board of one finished run: its tasks' samples and references, k, the tracks of its tasks.

    Writes `out` (default leaderboard/board.yaml; an existing board of the same version is never overwritten),
    logs a run of kind `board` with board.yaml and each reference's embeddings, and tags the source run's
    complete child runs as results of the new board. `version` defaults to one more than the board at `out`.
    """
    from mlflow.tracking import MlflowClient

    from benchmark import tracking
    from benchmark.embeddings import cache_root
    from benchmark.io import atomic_write_bytes
    from benchmark.leaderboard.collect import experiment_id, is_complete, runs_frame

    uri = tracking.tracking_uri(tracking_uri)
    cl = MlflowClient(tracking_uri=uri)
    try:
        parent = cl.get_run(parent_run_id)
    except Exception as exc:  # noqa: BLE001 - a wrong id is one actionable message
        raise ConfigError(f"--from-run {parent_run_id!r}: no such run in {uri} ({type(exc).__name__}); pass the "
                          "parent run id `matteralign run` printed (or see the MLflow UI)") from None
    if parent.data.tags.get(S.KIND) != S.Kind.PARENT:
        raise ConfigError(f"run {parent_run_id} is not a benchmark parent run (tag {S.KIND} = "
                          f"{parent.data.tags.get(S.KIND)!r}); freeze from the parent run of `matteralign run`")
    if parent.info.status != "FINISHED":
        raise ConfigError(f"run {parent_run_id} is {parent.info.status}, not FINISHED: a board is frozen from a "
                          "finished run only")
    exp_id = experiment_id(cl, experiment)
    children = cl.search_runs([exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              max_results=5000)
    every = runs_frame(children, {parent_run_id: parent.data.tags})
    every = every[is_complete(every)] if len(every) else every
    frame = every[every["status"] == "ok"] if len(every) else every
    path = board_path(out)
    previous = load_board(path) if path.is_file() else None
    version = version or (previous.version + 1 if previous else 1)
    if previous is not None and previous.version >= version:
        raise ConfigError(f"{path} already holds board {previous.id}; a frozen board is never changed: freeze "
                          f"--version {previous.version + 1} (a new board version) or write elsewhere with --out")
    k = int(parent.data.params.get("k", "10"))
    tasks: dict[str, BoardTask] = {}
    track_of: dict[str, str] = {}
    skipped = []
    for task in sorted(set(frame["task"])) if len(frame) else []:
        ref = parent.data.tags.get(S.per_task(S.REFERENCE, task), "none")
        rows = frame[(frame["task"] == task) & (frame["model"] == ref)]
        if ref == "none" or rows.empty:
            skipped.append(f"{task} (no reference in run {parent_run_id})")
            continue
        r = rows.iloc[0]
        track_of[task] = _logged_track(cl, r["run_id"])
        tasks[task] = BoardTask(
            version=str(r["task_version"]), n_samples=int(r["n_samples"]), seed=int(r["seed"]),
            ids_digest=str(r["ids_digest"]), data_digest=str(r["data_digest"]),
            reference=BoardReference(model=ref, checkpoint_digest=str(r["checkpoint_digest"]) or "unknown",
                                     cache_key=str(r["cache_key"]),
                                     reason=parent.data.tags.get(S.per_task(S.REFERENCE_REASON, task), "")[:500]))
    if not tasks:
        raise DataError(f"run {parent_run_id} has no task with a reference and complete results"
                        + (f": {', '.join(skipped)}" if skipped else "") + "; nothing to freeze")
    if tracks is None:
        tracks = {}
        for task in tasks:
            tracks.setdefault(track_of[task], []).append(task)
    else:
        tracks = {name: [t for t in names if t in tasks] for name, names in tracks.items()}
        tracks = {name: names for name, names in tracks.items() if names}
    cache = Path(root or cache_root())
    run = cl.create_run(exp_id, run_name=f"board-v{version}", tags={
        S.KIND: S.Kind.BOARD, S.BENCHMARK_VERSION: __version__, S.BOARD: f"matteralign@{version}",
        S.tag(f"{S.SOURCE}.run"): parent_run_id})
    try:
        spec = BoardSpec(
            version=version, benchmark_version=__version__, k=k,
            k_reported=sorted({k, K_PAPER}), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            source_run=parent_run_id, board_run=run.info.run_id, tasks=tasks, tracks=tracks)
        import yaml

        text = ("# Frozen benchmark definition (`matteralign board freeze`); never edit: a change is a new version.\n"
                + yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "board.yaml").write_text(text)
            cl.log_artifact(run.info.run_id, str(Path(tmp) / "board.yaml"))
            ref_dir = Path(tmp) / "reference"
            ref_dir.mkdir()
            for task, bt in tasks.items():
                emb = _reference_embeddings(bt.reference, cache, cl, frame, task)
                np.save(ref_dir / f"{task}.npy", emb[0])
                (ref_dir / f"{task}.ids.json").write_text(json.dumps(emb[1]))
            cl.log_artifacts(run.info.run_id, str(ref_dir), "reference")
        for _, r in every.iterrows():  # skipped and failed runs too: the board lists them with their reason
            if r["task"] in tasks and str(r["k"]) == str(k) and r["ids_digest"] == tasks[r["task"]].ids_digest:
                cl.set_tag(r["run_id"], S.BOARD, spec.id)
                cl.set_tag(r["run_id"], S.EXPLORATION, "false")
                cl.set_tag(r["run_id"], S.EXPLORATION_REASON, "")
        atomic_write_bytes(path, text.encode(), mode=0o644)  # a file to commit, readable by all
    except BaseException:
        cl.set_terminated(run.info.run_id, "FAILED")
        raise
    cl.set_terminated(run.info.run_id, "FINISHED")
    for s in skipped:
        print(f"board {spec.id}: left out {s}", file=sys.stderr)
    return spec, path


def _logged_track(cl, run_id: str) -> str:
    """The track of the task a child run ran, from its task_spec.json artifact ("main" when unreadable)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return str(json.loads(Path(cl.download_artifacts(run_id, "task_spec.json", tmp)).read_text())
                       .get("track") or "main")
        except Exception:  # noqa: BLE001 - a run from before tracks: the default track
            return "main"


def _reference_embeddings(pin: BoardReference, cache: Path, cl, frame, task: str) -> tuple[np.ndarray, list[str]]:
    """The pinned reference's embeddings: its cache entry (bit for bit), else its child run's artifact."""
    from benchmark.embeddings.cache import EmbeddingStore

    store = EmbeddingStore(pin.cache_key, cache)
    if store.complete:
        emb = store.load()
        return emb.features, emb.ids
    row = frame[(frame["task"] == task) & (frame["model"] == pin.model)].iloc[0]
    with tempfile.TemporaryDirectory() as tmp:
        f = cl.download_artifacts(row["run_id"], f"embeddings/{task}.npy", tmp)
        i = cl.download_artifacts(row["run_id"], f"embeddings/{task}.ids.json", tmp)
        return np.load(f, allow_pickle=False), json.loads(Path(i).read_text())


def describe(board: BoardSpec, path: Path | None = None) -> str:
    """A few lines saying what the board is: tasks, samples, references, k, tracks."""
    lines = [f"board {board.id} (benchmark {board.benchmark_version}, frozen {board.created or '?'} from run "
             f"{board.source_run or '?'}){f' at {path}' if path else ''}",
             f"  ranked metric {board.ranked_metric} at k = {board.k} (also reported at k = "
             f"{', '.join(str(k) for k in board.k_reported if k != board.k) or '-'}); aggregation {board.aggregation}"
             f" over every task of a track; coverage rule: {board.coverage}"]
    for track, names in board.tracks.items():
        lines.append(f"  track {track}: {', '.join(names)}")
    for name, t in board.tasks.items():
        lines.append(f"  {name} v{t.version}: {t.n_samples} structures (seed {t.seed}, ids {t.ids_digest[:12]}); "
                     f"reference {t.reference.model} (checkpoint {t.reference.checkpoint_digest[:12]})")
    return "\n".join(lines)


def board_or_error(path: Path | str | None = None) -> tuple[BoardSpec, Path]:
    """The board at `path` (default: the resolved one); MatteralignError saying how to make one when none exists."""
    found = resolve_board_file(path)
    if found is None:
        raise MatteralignError(f"no frozen board ({BOARD_FILE_NAME}); run the default `matteralign run` once (it "
                               "freezes version 1) or `matteralign board freeze --from-run <parent run id>`")
    return load_board(found), found
