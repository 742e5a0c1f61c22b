"""Detection metrics at a threshold, and their mean ± std over seeds.

Convention everywhere in logad: a window is flagged anomalous when
``score > threshold``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from logad.errors import DataError

__all__ = ["METRIC_NAMES", "aggregate_runs", "binary_metrics", "flag_all_f1", "format_mean_std"]

METRIC_NAMES = ("precision", "recall", "f1", "auroc", "aupr")


def _arrays(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise DataError(f"labels and scores must be 1-D and the same length; got {y.shape} and {s.shape}")
    if np.isnan(y).any():
        raise DataError("labels contain missing values; drop unlabelled windows before scoring metrics")
    if not np.isin(y, (0, 1)).all():
        raise DataError("labels must be 0 (normal) or 1 (anomalous)")
    return y.astype(np.int8), s


def binary_metrics(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float
) -> dict[str, float]:
    """Precision, recall, F1 at ``threshold``, plus threshold-free AUROC and AUPR.

    AUROC/AUPR are NaN when only one class is present; precision is 0 when
    nothing is flagged.
    """
    # scikit-learn takes a second to import: only when scoring, not for every command
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _arrays(labels, scores)
    pred = s > threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = 0 < y.sum() < len(y)
    finite = np.nan_to_num(s, nan=0.0, posinf=np.finfo(np.float64).max, neginf=np.finfo(np.float64).min)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auroc": float(roc_auc_score(y, finite)) if both else float("nan"),
        "aupr": float(average_precision_score(y, finite)) if both else float("nan"),
        "threshold": float(threshold),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }


def flag_all_f1(n: int, anomalous: int) -> float:
    """F1 of flagging all ``n`` items of which ``anomalous`` are anomalous: 2p / (1 + p) for
    the anomalous share p. The floor a detector has to beat where anomalies are common."""
    p = anomalous / n if n else 0.0
    return 2 * p / (1 + p)


def aggregate_runs(runs: Iterable[Mapping[str, float]], keys: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation of each metric over runs (e.g. seeds).

    Returns ``{metric: {"mean": m, "std": s, "n": k}}``; std is 0 for one run.
    """
    runs = list(runs)
    if not runs:
        raise DataError("no runs to aggregate")
    keys = list(keys or [k for k, v in runs[0].items() if isinstance(v, int | float)])
    out = {}
    for k in keys:
        values = np.asarray([float(r[k]) for r in runs])
        out[k] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values),
        }
    return out


def format_mean_std(stat: Mapping[str, float], digits: int = 4) -> str:
    """``0.9512 ± 0.0031`` for an :func:`aggregate_runs` entry."""
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
