"""Task loaders: each turns a task YAML's `loader` + `options` into the structures every model embeds."""

from __future__ import annotations

from benchmark.errors import ConfigError
from benchmark.registry.loader import import_object
from benchmark.registry.schema import TaskSpec
from benchmark.structures import Dataset
from benchmark.tasks.common import Loaded


def build_dataset(spec: TaskSpec, n_samples: int | None = None, seed: int | None = None) -> Dataset:
    """The task's seeded sample: deterministic for (spec, n_samples, seed), with unique ids.

    A loader returns a list of Samples, or a `Loaded` whose exclusion counts (what its screen left out
    before sampling, by reason) become `metadata["excluded"]` of the dataset, for the run to log.
    """
    n = spec.n_samples if n_samples is None else n_samples
    s = spec.seed if seed is None else seed
    if n < 3:
        raise ConfigError(f"task {spec.name}: n_samples={n}; at least 3 structures are needed")
    loader = import_object(spec.loader, f"task {spec.name}: loader")
    try:
        samples = loader(n_samples=n, seed=s, **spec.options)
    except TypeError as exc:
        raise ConfigError(f"task {spec.name}: loader {spec.loader} rejected the options {spec.options}: {exc}") from None
    metadata: dict = {}
    if isinstance(samples, Loaded):
        metadata = {"excluded": dict(samples.excluded), **samples.info}
        samples = samples.samples
    if len(samples) != n:
        raise ConfigError(f"task {spec.name}: loader returned {len(samples)} structures, expected n_samples={n}")
    ids = [x.id for x in samples]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"task {spec.name}: loader returned duplicate sample ids")
    return Dataset(spec.name, spec.version, list(samples), metadata=metadata)
