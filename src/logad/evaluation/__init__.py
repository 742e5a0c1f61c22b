"""Evaluation: split protocols, metrics, threshold strategies and reports.

Pure pandas/numpy/scikit-learn; nothing here imports Ray or torch.
"""

from logad.evaluation.metrics import METRIC_NAMES, aggregate_runs, binary_metrics, format_mean_std
from logad.evaluation.report import evaluate_scores, format_metrics_table, write_report
from logad.evaluation.splits import (
    DEFAULT_PROTOCOL,
    Split,
    available_protocols,
    get_protocol,
    register_protocol,
    split_windows,
)
from logad.evaluation.thresholds import (
    ThresholdChoice,
    available_threshold_strategies,
    best_f1_threshold,
    choose_threshold,
    get_threshold_strategy,
)

__all__ = [
    "DEFAULT_PROTOCOL",
    "METRIC_NAMES",
    "Split",
    "ThresholdChoice",
    "aggregate_runs",
    "available_protocols",
    "available_threshold_strategies",
    "best_f1_threshold",
    "binary_metrics",
    "choose_threshold",
    "evaluate_scores",
    "format_mean_std",
    "format_metrics_table",
    "get_protocol",
    "get_threshold_strategy",
    "register_protocol",
    "split_windows",
    "write_report",
]
