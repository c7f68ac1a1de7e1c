"""`matteralign models`: every models.yaml entry and whether it can run here, and why not."""

from __future__ import annotations

import argparse

from benchmark.cli.options import add_models_file
from benchmark.errors import ConfigError, ModelUnavailable
from benchmark.models import build_adapter
from benchmark.registry.loader import load_models


def availability(entry) -> tuple[bool, str]:
    """(runnable, reason) without loading any weights; an isolated entry gets the run's own message."""
    try:
        adapter = build_adapter(entry)
    except ConfigError as exc:
        return False, str(exc)
    if entry.environment == "isolated":
        from benchmark.embeddings import cache_root
        from benchmark.embeddings.isolated import env_dir, env_ready
        from benchmark.pipeline.embed import isolated_missing_message

        if not env_ready(entry.requirements, root=cache_root()):
            return False, isolated_missing_message(entry, adapter, env_dir(entry.requirements, root=cache_root()))
        try:
            adapter.weights_path()
        except ModelUnavailable as exc:
            return False, f"isolated environment built, but: {exc}"
        except ImportError:
            return False, ("isolated environment built; its weights are resolved inside it, so they cannot be "
                           f"confirmed from here: `matteralign run --models {entry.key} --n-samples 10` checks them")
        return True, "ready (isolated environment built)"
    reason = adapter.unavailable_reason()
    return reason is None, reason or "ready"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_models_file(p)
    p.add_argument("--runnable", action="store_true", help="only the models that can run here")


def main(args: argparse.Namespace) -> int:
    import pandas as pd

    models = load_models(args.models_file)
    rows = []
    for e in models.models:
        ok, why = availability(e)
        if args.runnable and not ok:
            continue
        rows.append(
            {
                "key": e.key + (" (reference)" if e.key == models.reference.model else ""),
                "family": e.family,
                "modality": e.modality,
                "domain": e.domain,
                "energy_head": "yes" if e.energy_head else "no",
                "default": "yes" if e.default else "no",
                "runnable": "yes" if ok else "no",
                "why": why,
            }
        )
    if not rows:
        print("no models")
        return 0
    frame = pd.DataFrame(rows)
    print(frame.drop(columns="why").to_string(index=False))
    print()
    for row in rows:
        if row["runnable"] == "no":
            print(f"{row['key']}: {row['why']}")
    print(f"\nreference: {models.reference.model} (fallback: {models.reference.fallback})")
    return 0
