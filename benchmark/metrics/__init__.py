"""Alignment and intrinsic-dimension metrics: pure functions over arrays and kNN graphs.

Definitions follow docs/metric-definitions.md (the contract for "exact").
"""

from benchmark.metrics.checks import check_paired
from benchmark.metrics.cka import linear_cka
from benchmark.metrics.idcor import IdcorResult, idcor, idcor_test
from benchmark.metrics.imbalance import information_imbalance, information_imbalance_ranks, information_imbalances
from benchmark.metrics.imbalance import imbalances_to_reference, information_imbalances_many
from benchmark.metrics.intrinsic_dim import mle_id, twonn
from benchmark.metrics.knn_alignment import alignment_ci, alignment_replicates, cknna, mutual_knn, replicate_interval
from benchmark.metrics.registry import METRICS, MetricInfo, direction

__all__ = [
    "METRICS",
    "IdcorResult",
    "MetricInfo",
    "alignment_ci",
    "alignment_replicates",
    "check_paired",
    "cknna",
    "direction",
    "idcor",
    "idcor_test",
    "imbalances_to_reference",
    "information_imbalance",
    "information_imbalance_ranks",
    "information_imbalances",
    "information_imbalances_many",
    "linear_cka",
    "mle_id",
    "mutual_knn",
    "replicate_interval",
    "twonn",
]
