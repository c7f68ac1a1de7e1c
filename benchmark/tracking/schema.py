"""The MLflow run schema: the only place that spells a `matteralign.*` tag, a param name or a run kind.

The writers (pipeline, compare, leaderboard, report, convergence training) and the readers (leaderboard,
gate, report) name tags through `tag()` / the constants here, and docs/run-schema.md is generated from this
module by `render_markdown()` (tests/test_tracking_schema.py checks that the file matches). Metric names
come from `benchmark.metrics.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

PREFIX = "matteralign."


def tag(name: str) -> str:
    """The full MLflow tag name of a schema tag, e.g. tag("model") -> "matteralign.model"."""
    return PREFIX + name


class Kind:
    """Values of the `matteralign.kind` tag: what a run is."""

    PARENT = "parent"
    MODEL_TASK = "model-task"
    COMPARE = "compare"
    LEADERBOARD = "leaderboard"
    REPORT = "report"
    CONVERGENCE_TRAIN = "convergence-train"
    BOARD = "board"


RUN_KINDS: dict[str, str] = {
    Kind.PARENT: "one per `matteralign run` invocation",
    Kind.MODEL_TASK: "one per (model, task), nested under the parent, run name `<model>/<task>`; it starts when "
                     "its embedding starts and ends after its stage 2 (its own work is `embed_seconds` and "
                     "`align_seconds`; between the two the invocation embeds the other models)",
    Kind.COMPARE: "one per `matteralign compare --task T`: the pairwise matrices of one task",
    Kind.LEADERBOARD: "one per written leaderboard: its files and figures",
    Kind.REPORT: "one per `matteralign reproduce`: the report, its claims and verdicts",
    Kind.CONVERGENCE_TRAIN: "one per trained small MLIP of the convergence experiment",
    Kind.BOARD: "one per frozen board version: the board definition and its pinned references' embeddings and kNN graphs",
}

# --- tag names (without the prefix); per-task / per-metric ones take a suffix via tag(f"{X}.{suffix}") ---
KIND = tag("kind")
BENCHMARK_VERSION = tag("benchmark_version")
GIT_SHA = tag("git_sha")
MODEL = tag("model")
TASK = tag("task")
ROLE = tag("role")
STATUS = tag("status")
REASON = tag("reason")
FAMILY = tag("family")
MODALITY = tag("modality")
DOMAIN = tag("domain")
CACHE_REUSED = tag("cache_reused")
REFERENCE = tag("reference")
IS_REFERENCE = tag("is_reference")
REFERENCE_REASON = tag("reference_reason")
TASK_VERSION = tag("task_version")
MODEL_KEY = tag("model_key")
EXCLUDED = tag("excluded")
#: the frozen board a child run was measured on ("<name>@<version>"; "" when its task is on no board)
BOARD = tag("board")
#: "true" when a child run on a board task is not a board result (other ids, size, seed or k), with the reason
EXPLORATION = tag("exploration")
EXPLORATION_REASON = tag("exploration_reason")
#: the board track of the task (tasks/*.yaml `track`): a provisional board ranks per track too
TRACK = tag("track")
TASK_SKIPPED = tag("task_skipped")
CHECKPOINT_SHA256 = tag("checkpoint_sha256")
COMPLETE = tag("complete")
HOST = tag("host")
#: on a child run: its LoggedModel's id, or why there is none; on the LoggedModel: the checkpoint digest
LOGGED_MODEL = tag("logged_model")
LOGGED_MODEL_ERROR = tag("logged_model_error")
CHECKPOINT_DIGEST = tag("checkpoint_digest")
FIGURE_ERROR = tag("figure_error")
PID = tag("pid")
#: on a parent run: `true` when MLflow samples its system metrics (`system/*`), else why not (psutil missing)
SYSTEM_METRICS = tag("system_metrics")

#: values of the `complete` tag: a child run is `false` from stage 1 until the very end of its stage 2
COMPLETE_YES = "true"
#: the MLflow status a child run ends with, by its `status` tag: the UI shows skipped and failed (model, task)
#: pairs as not successful; readers tell them from a crash by the `complete` tag (`true` here, `false` for a crash)
END_STATUS = {"ok": "FINISHED", "skipped": "KILLED", "failed": "FAILED"}
COMPLETE_NO = "false"

#: MLflow 3's experiment-type tag and the value that opens the UI on training runs (not the GenAI view)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

#: tag families that take a suffix: "<base>.<suffix>"
METRIC_ERROR = "metric_error"
WARNING = "warning"
NOTE = "note"
SOURCE = "source"
VERDICT = "verdict"


def per_task(base: str, task: str) -> str:
    """A per-task tag of the parent run, e.g. per_task(REFERENCE, "qm9") -> "matteralign.reference.qm9"."""
    return f"{base}.{task}"


def metric_tag(name: str) -> str:
    """The tag recording why a metric is missing ("metric_error.<name>"), or a "warning."/"note." name as is."""
    if name.startswith((f"{WARNING}.", f"{NOTE}.")):
        return tag(name)
    return tag(f"{METRIC_ERROR}.{name}")


def kind_filter(kind: str) -> str:
    """An MLflow search filter selecting the runs of one kind."""
    return f"tags.`{KIND}` = '{kind}'"


@dataclass(frozen=True)
class Field:
    name: str
    description: str


def _f(spec: str) -> list[Field]:
    return [Field(*line.split(": ", 1)) for line in spec.strip().splitlines()]


TAGS: dict[str, list[Field]] = {
    Kind.PARENT: _f("""
kind: `parent`
benchmark_version: the benchmark's version
git_sha: the commit the run was made from
host: the host the run's process ran on
pid: the run's process id on that host (a RUNNING parent whose process is gone is marked KILLED by the next run)
system_metrics: `true` when MLflow samples the run's system metrics (`system/*`: CPU, memory, disk, network, GPU when present, every 10 s or `$MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`), else why not (e.g. `false: psutil is not installed`)
board: the frozen board the run measured against (`<name>@<version>`), `` when none existed
reference.<task>: model key used as reference on that task, or `none`
reference_reason.<task>: why: `configured reference`, or the auto fallback and why the configured one did not run
param.<name>: the value used, when `mlflow run` had already logged param <name> with another value (e.g. `models`)
task_skipped.<task>: why that task did not run (its data could not be loaded), naming the fix
"""),
    Kind.MODEL_TASK: _f("""
kind: `model-task`
model: the models.yaml key
task: the task name
role: `id` or `ood`, from the task's roles and the model's domain
status: `ok`, `skipped` or `failed` (the run's MLflow status is then FINISHED, KILLED or FAILED)
reason: why skipped or failed
complete: `false` from stage 1 until the end of its stage 2, then `true`; readers skip `false` runs (a crashed run never reaches the board or the gate); absent on runs written before this tag existed, which count as complete
family: the model family
modality: the model's input modality
domain: the model's training domain
benchmark_version: the benchmark's version
git_sha: the commit the run was made from
cache_reused: `true` when the embeddings came from the cache (then `embed_seconds` is the cache read, not an embedding), `false` when they were computed
excluded: JSON {reason: count} of the candidate structures the task's sampler left out before sampling
reference: the model key the alignment metrics were computed against, or `none`
is_reference: `true` when this model is the task's reference
reference_reason: why that reference
board: the frozen board (`<name>@<version>`) whose task this run measured, `` when the task is on no board
track: the task's board track (tasks/*.yaml `track`, e.g. materials, molecules, proteins)
exploration: `true` when the run is not a board result (other sample ids, size, seed or k than the board's): visible in MLflow, never ranked or gated; `false` for a board result
exploration_reason: why the run is an exploration run
metric_error.<metric>: why a metric has no number (a metric is never logged as NaN)
warning.<metric>: a numerical warning raised while computing a metric
note.<metric>: how a metric was computed when it deviates from the default (e.g. a declared subsample)
logged_model: the id of the MLflow LoggedModel of this (model, checkpoint digest), named by the model key and tagged `matteralign.model` and `matteralign.checkpoint_digest`, whose metrics (`cknna_to_ref`, `cknna_to_ref_k25`, `mutual_knn_to_ref`, `cka_to_ref`, `energy_mae`) are linked to the task's dataset, so `mlflow.search_logged_models` ranks models per task; board results and runs without a board only, never exploration runs, and no `_to_ref` metric for the task's reference itself
logged_model_error: why the LoggedModel could not be created or its metrics linked (the run's own metrics are logged regardless)
figure_error: why a figure of this run could not be drawn (`<artifact>: <error>`, `; `-joined when several; the run is unaffected)
"""),
    Kind.COMPARE: _f("""
kind: `compare`
task: the task compared
benchmark_version: the board's benchmark version
task_version: the board's version of the task
"""),
    Kind.LEADERBOARD: _f("""
kind: `leaderboard`
benchmark_version: the board's benchmark version
board: the frozen board shown (`<name>@<version>`), `` for a provisional board
"""),
    Kind.REPORT: _f("""
kind: `report`
benchmark_version: the benchmark's version
git_sha: the commit the run was made from
source.<name>: the parent run id of the runs the report used (`benchmark`, `convergence`)
verdict.<claim>: the verdict on each claim of the paper
"""),
    Kind.BOARD: _f("""
kind: `board`
board: the board id, `<name>@<version>`
benchmark_version: the benchmark version the board was frozen with
source.run: the parent run the board was frozen from
"""),
    Kind.CONVERGENCE_TRAIN: _f("""
kind: `convergence-train`
model_key: the trained model's key
checkpoint_sha256: sha256 of the saved checkpoint
"""),
}

PARAMS: dict[str, list[Field]] = {
    Kind.PARENT: _f("""
models: comma list of model keys (the reference included)
tasks: comma list of task names
k: neighbours for CKNNA / mutual kNN
seed: the sampling seed, or `task default`
reference_configured: models.yaml reference.model (or --reference)
reference_fallback: models.yaml reference.fallback
n_samples.<task>: the sample size used on that task
"""),
    Kind.MODEL_TASK: _f("""
model_key: the models.yaml key
model_name: the model's display name
model_version: the models.yaml version
layer: the layer embedded
pooling: the pooling over atoms / tokens
dtype: the inference dtype
batch_size: the inference batch size
task: the task name
task_version: the task's version
data_digest: digest of the task sample
ids_digest: digest of the sample ids in order
n_samples: number of structures
excluded_structures: how many candidates the task's sampler left out (the sum of the `excluded` tag)
seed: the sampling seed
k: neighbours for CKNNA / mutual kNN
benchmark_version: the benchmark's version
parameters: parameter count, or `unknown`
training_data: what the model was trained on
energy_head: whether the model predicts energies
checkpoint_digest: digest of the weights (runs with embeddings)
embedding_dim: embedding width (runs with embeddings)
feature_source: where the features were read from (runs with embeddings)
cache_key: the embedding cache key, also naming its cached kNN graphs (runs with embeddings)
"""),
    Kind.COMPARE: _f("""
k: neighbours for CKNNA / mutual kNN
task: the task compared
models: comma list of the models compared
source_runs: comma list of the child runs whose embeddings were read
"""),
}

#: param names of a child run, as written and read back
P = {f.name: f.name for f in PARAMS[Kind.MODEL_TASK]}

ARTIFACTS: dict[str, list[Field]] = {
    Kind.PARENT: _f("""
summary.csv: one row per (model, task)
"""),
    Kind.MODEL_TASK: _f("""
embeddings/<task>.npy: float32 features, rows in sample order
embeddings/<task>.ids.json: the sample ids in row order
embeddings/<task>.energies.npy: predicted energies (models with an energy head)
alignment/cknna_replicates.npy: the bootstrap replicates of cknna_to_ref (float64, NaN where undefined); every model of a task shares the resampled structure ids, so the board ranks replicate by replicate
model_entry.json: the models.yaml entry
task_spec.json: the task YAML
embeddings/<task>.png: a 2-D PCA projection of the features (at most 2,000 points, coloured by the energy label when the task has labels), a preview of the .npy
figures/cknna_bootstrap_<task>.png: the bootstrap distribution of cknna_to_ref with its point value and 95% interval (runs with replicates only)
figures/cknna_row_<task>.png: bar chart of CKNNA (k as logged) from this model to every other model of the task with embeddings in the same invocation, the reference highlighted (its bar is `cknna_to_ref`); tasks with 2 or more such models only
figures/intrinsic_dimension_<task>.png: the TwoNN fit, -log(1 - F(mu)) against log(mu) of the kept points with the fitted line through the origin, whose slope is `intrinsic_dimension` (runs with that metric only)
"""),
    Kind.BOARD: _f("""
board.yaml: the frozen board definition (also committed as leaderboard/board.yaml)
reference/<task>.npy: the pinned reference's embeddings of the board's sample of that task (the cache entry's array, bit for bit)
reference/<task>.ids.json: the board's sample ids of that task, in row order
"""),
    Kind.COMPARE: _f("""
matrices/<metric>.csv: the cknna, mutual_knn and cka matrices
figures/cknna_<task>.png: heatmap; figures/dendrogram_<task>.png with 3 or more models
"""),
}

#: where a child run keeps its bootstrap replicates of cknna_to_ref (see ARTIFACTS)
REPLICATES_ARTIFACT = "alignment/cknna_replicates.npy"
#: a child run's 2-D PCA preview of its embeddings, next to the .npy (see ARTIFACTS)
EMBEDDING_PREVIEW_ARTIFACT = "embeddings/{task}.png"
#: a child run's figure of the bootstrap distribution of cknna_to_ref (see ARTIFACTS)
BOOTSTRAP_FIGURE_ARTIFACT = "figures/cknna_bootstrap_{task}.png"
#: a child run's bar chart of its CKNNA to every other model of the task (see ARTIFACTS)
CKNNA_ROW_FIGURE_ARTIFACT = "figures/cknna_row_{task}.png"
#: a child run's TwoNN fit figure (see ARTIFACTS)
ID_CURVE_FIGURE_ARTIFACT = "figures/intrinsic_dimension_{task}.png"
#: a child run's cost metrics (seconds): declared here, not in benchmark/metrics/registry.py, because they
#: measure the run rather than the model, so nothing ranks, gates or compares them
EMBED_SECONDS = "embed_seconds"
ALIGN_SECONDS = "align_seconds"
COST_METRICS: dict[str, list[Field]] = {
    Kind.MODEL_TASK: _f(f"""
{EMBED_SECONDS}: wall seconds of this run's stage 1: building the adapter, extracting the embeddings or reading them from the cache (tag `cache_reused` says which), checking them and the energy metrics (`extract_seconds` is the extraction alone)
{ALIGN_SECONDS}: wall seconds of the task's stage-2 computation (every model's geometry, then alignment to the reference, in one fan-out through the executor), the same value on each model of the task; runs without embeddings have none
"""),
}

#: where a board run keeps the pinned reference's embeddings and ids of a task
REFERENCE_ARTIFACT = "reference/{task}.npy"
REFERENCE_IDS_ARTIFACT = "reference/{task}.ids.json"

#: a result's identity; readers take the newest finished child run per identity
IDENTITY = ("model", "checkpoint_digest", "task", "task_version", "benchmark_version", "board", "ids_digest")


def render_markdown(metrics: Sequence[Any]) -> str:
    """docs/run-schema.md, generated from this module and the child-run metrics (`MetricInfo`s, in order).

    The metrics are passed in (tracking does not import metrics; both are one layer):
    `render_markdown(benchmark.metrics.registry.child_run_metrics())`.
    """
    lines = [
        "# MLflow run schema",
        "",
        "<!-- Generated from benchmark/tracking/schema.py and benchmark/metrics/registry.py by "
        "`python -m benchmark.cli.docs`; do not edit by hand. -->",
        "",
        "Everything the leaderboard, `compare`, `check` and the report read back is named here. Tracking URI:",
        "`$MLFLOW_TRACKING_URI`, default `sqlite:///mlflow.db`; experiment `$MATTERALIGN_EXPERIMENT`, default",
        f"`matteralign`. Tag names start with `{PREFIX}`; `{KIND}` says what a run is.",
        "",
        "## Run kinds",
        "",
        *[f"- `{k}`: {d}" for k, d in RUN_KINDS.items()],
    ]
    for kind in RUN_KINDS:
        lines += ["", f"## `{kind}` runs", ""]
        lines += ["tags:", *[f"- `{tag(f.name)}`: {f.description}" for f in TAGS.get(kind, [])]]
        if kind in PARAMS:
            lines += ["", "params:", *[f"- `{f.name}`: {f.description}" for f in PARAMS[kind]]]
        if kind == Kind.MODEL_TASK:
            lines += ["", "input: the task's dataset via `mlflow.log_input` (context `id` or `ood`).", "",
                      "metrics (only where defined; never NaN; declared in benchmark/metrics/registry.py):"]
            lines += [f"- `{m.name}` ({m.direction}{', ' + m.unit if m.unit else ''}): {m.description}"
                      for m in metrics]
            lines += ["", "cost metrics (s; declared here, never ranked, gated or compared):",
                      *[f"- `{f.name}`: {f.description}" for f in COST_METRICS[kind]]]
        if kind in ARTIFACTS:
            lines += ["", "artifacts:", *[f"- `{f.name}`: {f.description}" for f in ARTIFACTS[kind]]]
    lines += [
        "",
        "## Result identity",
        "",
        f"A result is identified by ({', '.join(IDENTITY)}). Readers take the newest finished child run for each",
        "identity (skipping incomplete ones: tag `complete` = `false`) and never mix task or benchmark versions.",
        "",
    ]
    return "\n".join(lines)
