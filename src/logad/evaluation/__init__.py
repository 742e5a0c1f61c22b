"""Evaluation: split protocols, metrics, threshold strategies and reports.

Pure pandas/numpy/scikit-learn; nothing here imports Ray or torch. The names
below load their module on first use (PEP 562), so importing one light
submodule (the command line reads ``DEFAULT_PROTOCOL`` to build its help) does
not pull in scikit-learn, a second of start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "METRIC_NAMES": "metrics", "aggregate_runs": "metrics", "binary_metrics": "metrics",
    "format_mean_std": "metrics",
    "evaluate_scores": "report", "format_metrics_table": "report", "write_report": "report",
    "DEFAULT_PROTOCOL": "splits", "Split": "splits", "available_protocols": "splits", "get_protocol": "splits",
    "register_protocol": "splits", "split_windows": "splits",
    "ThresholdChoice": "thresholds", "available_threshold_strategies": "thresholds",
    "best_f1_threshold": "thresholds", "choose_threshold": "thresholds", "get_threshold_strategy": "thresholds",
}

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
assert sorted(__all__) == sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:
    from logad.evaluation.metrics import (
        METRIC_NAMES,
        aggregate_runs,
        binary_metrics,
        format_mean_std,
    )
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
