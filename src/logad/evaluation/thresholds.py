"""Threshold strategies: how the ``score > threshold`` cut is chosen, and from what data.

* ``label-free`` (the headline): a quantile of the scores of *normal
  validation* windows. It never sees a test score or a test label; validation
  labels, when present, only remove known anomalies from the reference set.
* ``validation-tuned``: the F1-best cut on a labelled validation split that
  holds both classes (a supervised choice, still without test labels).
* ``oracle``: the F1-best cut on the *test* labels. An upper bound for
  reporting only, labelled as such; never a headline, never stored with a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from logad.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "ThresholdChoice",
    "available_threshold_strategies",
    "best_f1_threshold",
    "choose_threshold",
    "get_threshold_strategy",
]


@dataclass(frozen=True)
class ThresholdChoice:
    """A chosen threshold and how it was chosen."""

    value: float
    strategy: str
    uses_test_labels: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "strategy": self.strategy,
                "uses_test_labels": self.uses_test_labels, "note": self.note}


Strategy = Callable[..., ThresholdChoice]
_STRATEGIES: dict[str, Strategy] = {}


def _register(name: str) -> Callable[[Strategy], Strategy]:
    def deco(fn: Strategy) -> Strategy:
        _STRATEGIES[name] = fn
        return fn

    return deco


def available_threshold_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def get_threshold_strategy(name: str) -> Strategy:
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise UnknownNameError("threshold strategy", name, list(_STRATEGIES)) from None


def choose_threshold(name: str, **inputs: Any) -> ThresholdChoice:
    """Run a named strategy; each takes only the inputs it is allowed to see.

    ``label-free(val_scores, val_labels=None, quantile=0.99)``,
    ``validation-tuned(val_scores, val_labels)``,
    ``oracle(test_scores, test_labels)``.
    """
    return get_threshold_strategy(name)(**inputs)


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The cut (for ``score > cut``) with the best F1, and that F1.

    Raises:
        DataError: labels do not hold both classes.
    """
    y = np.asarray(labels, dtype=np.int8)
    s = np.asarray(scores, dtype=np.float64)
    if not (0 < y.sum() < len(y)):
        raise DataError("a best-F1 threshold needs both normal and anomalous windows")
    from sklearn.metrics import precision_recall_curve  # (a second to import: only when used)

    precision, recall, cuts = precision_recall_curve(y, s)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1]))
    # precision_recall_curve flags score >= cut; step just below it for our `>` rule.
    return float(np.nextafter(cuts[best], -np.inf)), float(f1[best])


@_register("label-free")
def label_free(
    *, val_scores: np.ndarray, val_labels: np.ndarray | None = None, quantile: float = 0.99
) -> ThresholdChoice:
    """Quantile of normal validation scores (unlabelled windows count as normal)."""
    if not 0.0 < quantile <= 1.0:
        raise ConfigError(f"quantile must be in (0, 1]; got {quantile}")
    s = np.asarray(val_scores, dtype=np.float64)
    if val_labels is not None:
        y = np.asarray(val_labels, dtype=np.float64)
        s = s[~(y == 1)]
    if len(s) == 0:
        raise DataError("the label-free threshold needs normal validation scores; got none")
    return ThresholdChoice(float(np.quantile(s, quantile)), "label-free", False,
                           f"{quantile} quantile of {len(s)} normal validation scores")


@_register("validation-tuned")
def validation_tuned(*, val_scores: np.ndarray, val_labels: np.ndarray) -> ThresholdChoice:
    """Best F1 on a labelled validation split (needs anomalies in validation)."""
    y = np.asarray(val_labels, dtype=np.float64)
    keep = ~np.isnan(y)
    y, s = y[keep].astype(np.int8), np.asarray(val_scores, dtype=np.float64)[keep]
    if not (0 < y.sum() < len(y)):
        raise DataError(
            "validation-tuned thresholds need a validation split with both normal and anomalous "
            "windows (use a supervised split, or the label-free strategy)")
    cut, f1 = best_f1_threshold(y, s)
    return ThresholdChoice(cut, "validation-tuned", False, f"best validation F1 {f1:.4f} on {len(y)} windows")


@_register("oracle")
def oracle(*, test_scores: np.ndarray, test_labels: np.ndarray) -> ThresholdChoice:
    """Best F1 on the test labels: an UPPER BOUND for reports, never a headline."""
    cut, f1 = best_f1_threshold(np.asarray(test_labels), np.asarray(test_scores))
    return ThresholdChoice(cut, "oracle", True,
                           f"UPPER BOUND: tuned on test labels (best test F1 {f1:.4f}); not achievable without them")
