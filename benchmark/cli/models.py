"""`matteralign models`: every models.yaml entry and whether it can run here, and why not."""

from __future__ import annotations

import argparse

from benchmark.cli.options import add_models_file
from benchmark.pipeline.suite import availability
from benchmark.registry.loader import load_models


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
