"""Evaluation reports: report.md, report.json, scores.parquet and PNG plots.

The headline metrics use the model's stored, label-free threshold. The oracle
block (threshold tuned on the test labels) is written beside it as an upper
bound and says so in its name and note.

For a line-level method the report also holds ``line_scores.parquet`` (one row
per input line: see :func:`logad.evaluation.lines.line_frame`), line metrics
beside the window metrics, and the same plots for lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from logad.errors import DataError
from logad.evaluation.metrics import METRIC_NAMES, binary_metrics
from logad.evaluation.thresholds import choose_threshold

__all__ = ["evaluate_scores", "format_metrics_table", "write_report"]


def evaluate_scores(
    scores: np.ndarray, labels: Sequence[Any] | np.ndarray, threshold: float
) -> dict[str, Any]:
    """Metrics at ``threshold`` on labelled windows, plus the oracle upper bound.

    Windows with an unknown label are left out and counted.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = pd.array(labels, dtype="Int8")
    known = ~np.asarray(y.isna())
    ys = np.asarray(y[known], dtype=np.int8)
    out: dict[str, Any] = {"num_windows": int(len(s)), "num_labelled": int(known.sum()),
                           "num_anomalous": int((ys == 1).sum()), "num_normal": int((ys == 0).sum()),
                           "num_flagged": int((s > threshold).sum())}
    if known.sum() == 0:
        return out | {"metrics": None, "oracle_upper_bound": None}
    out["metrics"] = binary_metrics(ys, s[known], threshold)
    if 0 < ys.sum() < len(ys):
        choice = choose_threshold("oracle", test_scores=s[known], test_labels=ys)
        out["oracle_upper_bound"] = binary_metrics(ys, s[known], choice.value) | {"note": choice.note}
    else:
        out["oracle_upper_bound"] = None
    return out


def write_report(
    directory: str | Path,
    *,
    scores: np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    window_ids: Sequence[str],
    threshold: float,
    threshold_note: str = "label-free (stored with the model)",
    method: str = "",
    counts: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
    plots: bool = True,
    lines: pd.DataFrame | None = None,
    line_threshold: float | None = None,
    label_note: str | None = None,
) -> dict[str, Any]:
    """Write report.md, report.json, scores.parquet and (optionally) PNG plots.

    ``report.json`` has ``precision``, ``recall``, ``f1``, ``auroc``, ``aupr`` at the
    given (label-free) threshold at top level, ``threshold``, an ``oracle_upper_bound``
    block, ``counts`` and ``timings``. With ``lines`` (a line frame of a line-level
    method, scored at ``line_threshold``) it also writes ``line_scores.parquet`` and
    a ``lines`` block of the same figures over lines. ``label_note`` says where the
    labels come from when they are not ground truth (heuristic keyword labels).

    Returns:
        The report dict written to report.json.
    """
    s = np.asarray(scores, dtype=np.float64)
    if not (len(s) == len(labels) == len(window_ids)):
        raise DataError("scores, labels and window_ids must have the same length")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_scores(s, labels, threshold)
    metrics = result.pop("metrics")
    oracle = result.pop("oracle_upper_bound")
    report: dict[str, Any] = {
        "method": method,
        "threshold": float(threshold),
        "threshold_strategy": threshold_note,
        **{k: (metrics[k] if metrics else None) for k in METRIC_NAMES},
        "confusion": {k: metrics[k] for k in ("tp", "fp", "fn", "tn")} if metrics else None,
        "oracle_upper_bound": oracle,
        "counts": {**result, **(counts or {})},
        "timings": dict(timings or {}),
        **(dict(extra) if extra else {}),
    }
    verdict = (s > threshold).astype(np.int8)
    pd.DataFrame({
        "window_id": pd.array([str(w) for w in window_ids], dtype="string"),
        "score": s,
        "label": pd.array(labels, dtype="Int8"),
        "verdict": verdict,
    }).to_parquet(out / "scores.parquet", index=False)
    files = ["report.md", "report.json", "scores.parquet"]
    if plots:
        files += _plots(out, s, np.asarray(pd.array(labels, dtype="Int8").fillna(-1)), threshold)
    if label_note:
        report["labels_note"] = label_note
    if lines is not None:
        from logad.evaluation.lines import evaluate_lines

        lt = float(threshold if line_threshold is None else line_threshold)
        lr = evaluate_lines(lines, lt)
        lm, lo = lr.pop("metrics"), lr.pop("oracle_upper_bound")
        report["lines"] = {"threshold": lt, **{k: (lm[k] if lm else None) for k in METRIC_NAMES},
                           "confusion": {k: lm[k] for k in ("tp", "fp", "fn", "tn")} if lm else None,
                           "oracle_upper_bound": lo, "counts": lr}
        lines.to_parquet(out / "line_scores.parquet", index=False)
        files.append("line_scores.parquet")
        if plots:
            files += _plots(out, lines["score"].to_numpy(np.float64),
                            np.asarray(lines["label"].astype("Int8").fillna(-1)), lt, unit="lines", prefix="line_")
    report["files"] = files
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    (out / "report.md").write_text(_markdown(report))
    return report


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _fmt(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4f}"


def _markdown(r: dict[str, Any]) -> str:
    lines = [f"# Evaluation report{': ' + r['method'] if r['method'] else ''}", ""]
    lines += [f"Threshold {r['threshold']:.6g} — {r['threshold_strategy']}.", ""]
    lines += ["| threshold | precision | recall | F1 | AUROC | AUPR |", "|---|---|---|---|---|---|"]
    lines.append("| label-free (headline) | " + " | ".join(_fmt(r[k]) for k in METRIC_NAMES) + " |")
    o = r["oracle_upper_bound"]
    if o:
        lines.append("| oracle — UPPER BOUND, tuned on test labels | "
                     + " | ".join(_fmt(o[k]) for k in METRIC_NAMES) + " |")
    if r.get("labels_note"):
        lines += [f"Labels: {r['labels_note']}", ""]
    lr = r.get("lines")
    if lr:
        lines += ["", "## Lines", "", f"One row per input line in line_scores.parquet; line threshold "
                  f"{lr['threshold']:.6g} (stored with the model).", ""]
        lines += ["| threshold | precision | recall | F1 | AUROC | AUPR |", "|---|---|---|---|---|---|"]
        lines.append("| label-free (headline) | " + " | ".join(_fmt(lr[k]) for k in METRIC_NAMES) + " |")
        if lr["oracle_upper_bound"]:
            lines.append("| oracle — UPPER BOUND, tuned on test labels | "
                         + " | ".join(_fmt(lr["oracle_upper_bound"][k]) for k in METRIC_NAMES) + " |")
        lines += [""] + [f"- {k}: {v}" for k, v in lr["counts"].items()]
    lines += ["", "## Counts", ""] + [f"- {k}: {v}" for k, v in r["counts"].items()]
    if r["timings"]:
        lines += ["", "## Timings", ""] + [f"- {k}: {v:.3f}" for k, v in r["timings"].items()]
    lines += ["", "Files: " + ", ".join(r["files"]), ""]
    return "\n".join(lines)


def _plots(out: Path, scores: np.ndarray, labels: np.ndarray, threshold: float, *, unit: str = "windows",
           prefix: str = "") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # headless; no display needed
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    finite = scores[np.isfinite(scores)]
    bins = np.linspace(finite.min(), finite.max(), 60) if len(finite) and finite.min() < finite.max() else 30
    for value, name, color in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red"), (-1, "unlabelled", "tab:gray")):
        part = scores[(labels == value) & np.isfinite(scores)]
        if len(part):
            ax.hist(part, bins=bins, alpha=0.6, label=f"{name} ({len(part)})", color=color, log=True)
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("anomaly score (higher = more anomalous)")
    ax.set_ylabel(f"{unit} (log)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{prefix}score_distribution.png", dpi=100)
    plt.close(fig)
    written.append(f"{prefix}score_distribution.png")
    known = labels >= 0
    if known.any() and 0 < labels[known].sum() < known.sum():
        precision, recall, _ = precision_recall_curve(labels[known], np.nan_to_num(scores[known]))
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(recall, precision)
        pred = scores[known] > threshold
        y = labels[known] == 1
        p_at = (pred & y).sum() / max(pred.sum(), 1)
        r_at = (pred & y).sum() / max(y.sum(), 1)
        ax.scatter([r_at], [p_at], color="black", zorder=3, label="stored threshold")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.01)
        ax.set_ylim(0, 1.01)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{prefix}precision_recall.png", dpi=100)
        plt.close(fig)
        written.append(f"{prefix}precision_recall.png")
    return written


def format_metrics_table(result: Mapping[str, Any], stored: str = "label-free (stored)") -> str:
    """A markdown table of an :func:`evaluate_scores` result (headline + oracle bound);
    ``stored`` names the stored threshold's kind in the headline row."""
    rows = ["| threshold | precision | recall | F1 | AUROC | AUPR |", "|---|---|---|---|---|---|"]
    m = result.get("metrics")
    if m:
        rows.append(f"| {stored} | " + " | ".join(_fmt(m[k]) for k in METRIC_NAMES) + " |")
    o = result.get("oracle_upper_bound")
    if o:
        rows.append("| oracle: UPPER BOUND (test-tuned) | " + " | ".join(_fmt(o[k]) for k in METRIC_NAMES) + " |")
    return "\n".join(rows)
