"""Decision thresholds from labelled validation scores (supervised methods).

The stored threshold of a supervised method is a cut on its validation part's
scores: the best-F1 cut, or the lowest cut that reaches a target precision.
Validation labels are fair game for a supervised method; test labels never are.
"""

from __future__ import annotations

import numpy as np

__all__ = ["best_f1_cut"]


def best_f1_cut(y: np.ndarray, s: np.ndarray, mode: str = "best-f1", target_precision: float = 1.0) -> tuple[float, str]:
    """The cut on probabilities ``s`` (score > cut flags) and a note on how it was found.

    ``mode`` "best-f1": the cut of the best F1 on labels ``y``, set halfway (in log-odds) to
    the next lower score; "precision": the lowest cut reaching ``target_precision`` (else
    the best-F1 cut).
    """
    from sklearn.metrics import precision_recall_curve

    precision, recall, cuts = precision_recall_curve(y, s)
    if mode == "precision":
        ok = np.flatnonzero(precision[:-1] >= target_precision)
        if len(ok):
            i = int(ok[0])  # the lowest cut (highest recall) that reaches the precision
            return float(np.nextafter(cuts[i], -np.inf)), (
                f"lowest cut with validation precision ≥ {target_precision} (recall {recall[i]:.4f})")
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    i = int(np.argmax(f1[:-1]))
    # halfway (in log-odds) to the next lower score: a cut just under the lowest flagged
    # validation score would miss the next anomaly that scores a little lower
    lower = s[s < cuts[i]]
    if len(lower):
        lo, hi = np.clip([lower.max(), cuts[i]], 1e-12, 1 - 1e-12)
        mid = (np.log(lo / (1 - lo)) + np.log(hi / (1 - hi))) / 2
        cut = float(1.0 / (1.0 + np.exp(-mid)))
    else:
        cut = float(np.nextafter(cuts[i], -np.inf))
    return cut, f"best validation F1 {f1[i]:.4f} (P {precision[i]:.4f}, R {recall[i]:.4f})"
