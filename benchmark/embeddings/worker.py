"""Entry point run inside an isolated venv: embed one model on one dataset into the shared cache.

Started by `benchmark.embeddings.isolated.extract_isolated` as
``python -m benchmark.embeddings.worker --models M --model KEY --entry-digest D --dataset F --root R --result J``.
It re-reads models.yaml (refusing an entry that changed since the parent read it), rebuilds the dataset
from the npz file, runs the ordinary `extract()` and writes the cache key and counters to `--result`.
Exit 3 with the message as last stderr line means the model is unavailable (missing weights); other
failures exit non-zero with a traceback on stderr, which the parent quotes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.embeddings.cache import atomic_save_json
from benchmark.embeddings.extract import check_supported, extract
from benchmark.embeddings.isolated import EXIT_UNAVAILABLE, entry_digest, read_dataset
from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.registry.loader import import_object, load_models, models_by_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", required=True, type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--entry-digest", required=True)
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--result", required=True, type=Path)
    args = parser.parse_args(argv)

    entries = models_by_key(load_models(args.models))
    if args.model not in entries:
        raise ConfigError(f"{args.models}: model {args.model!r} not found by the isolated worker")
    entry = entries[args.model]
    if entry_digest(entry) != args.entry_digest:
        raise ConfigError(f"{args.models}: entry {args.model!r} changed while the run was starting; rerun")
    dataset = read_dataset(args.dataset)
    adapter = import_object(entry.adapter, f"adapter of model {entry.key!r}")(entry, device=args.device)
    try:
        check_supported(adapter, dataset)
        result = extract(adapter, dataset, args.root, progress=False)
    except ModelUnavailable as exc:
        print(str(exc).replace("\n", " "), file=sys.stderr)
        return EXIT_UNAVAILABLE
    atomic_save_json(args.result, {
        "key": result.embeddings.key,
        "reused": result.reused,
        "shards_reused": result.shards_reused,
        "shards_computed": result.shards_computed,
        "seconds": result.seconds,
        "python": sys.executable,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
