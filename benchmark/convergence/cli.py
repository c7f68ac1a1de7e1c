"""`matteralign train-convergence`: train the small-MLIP family of the convergence experiment."""

from benchmark.convergence.train import add_arguments, run_cli as main

__all__ = ["add_arguments", "main"]
