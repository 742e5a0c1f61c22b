"""Decision thresholds from labelled validation scores (supervised methods).

The stored threshold of a supervised method is a cut on its validation part's
scores: the best-F1 cut, or the lowest cut that reaches a target precision.
Validation labels are fair game for a supervised method; test labels never are.
"""

from __future__ import annotations

import numpy as np

__all__ = ["best_f1_cut", "macro_f1_cut", "source_f1"]


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


def macro_f1_cut(y: np.ndarray, s: np.ndarray, groups: np.ndarray, candidates: int = 512) -> tuple[float, str]:
    """The cut with the best mean F1 over sources, each source weighing the same.

    Pooled, the sources where most lines are anomalous would decide the cut (flagging
    everything scores well there); a new source is one source, so the mean over sources
    is the figure to expect of it. Sources with one class only are left out of the mean.
    """
    y = np.asarray(y, dtype=np.int64)
    keys = [g for g in dict.fromkeys(groups.tolist()) if 0 < y[groups == g].sum() < (groups == g).sum()]
    if not keys:
        return best_f1_cut(y, s, "best-f1", 1.0)
    # candidate cuts just below score quantiles (a cut flags score > cut)
    qs = np.unique(np.quantile(s, np.linspace(0.0, 1.0, candidates)))
    cuts = np.unique(np.concatenate(([np.nextafter(s.min(), -np.inf)], np.nextafter(qs, -np.inf))))
    f1 = np.zeros((len(keys), len(cuts)))
    for k, g in enumerate(keys):
        sg, yg = s[groups == g], y[groups == g]
        flagged = sg[None, :] > cuts[:, None]
        tp = (flagged & (yg[None, :] == 1)).sum(axis=1)
        fp = (flagged & (yg[None, :] == 0)).sum(axis=1)
        fn = int(yg.sum()) - tp
        f1[k] = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    mean = f1.mean(axis=0)
    best = int(np.argmax(mean))
    per = ", ".join(f"{str(g)[-24:]} {f1[k, best]:.4f}" for k, g in enumerate(keys))
    return float(cuts[best]), f"best mean F1 over {len(keys)} sources {mean[best]:.4f} ({per})"


def source_f1(y: np.ndarray, s: np.ndarray, groups: np.ndarray, cut: float) -> dict[str, float]:
    """Per source, the F1 of its out-of-source scores ``s`` at ``cut`` (a score above it flags):
    how the model does on a source it never saw, at the threshold it keeps."""
    y = np.asarray(y, dtype=np.int64)
    out = {}
    for g in dict.fromkeys(groups.tolist()):
        yg, flagged = y[groups == g], s[groups == g] > cut
        tp = int((flagged & (yg == 1)).sum())
        out[str(g)] = 2 * tp / max(int(flagged.sum()) + int(yg.sum()), 1)
    return out
