"""Line-level results: one row per input line, and metrics over lines.

A line-level detector (``Detector.line_level``) scores every line of every window
it is given. Lines of sliding or overlapping fixed windows sit in several windows,
so the same input line comes back several times, seen each time with another
context. :func:`line_frame` keeps one row per input line, keyed by its file and
line number (the windows table's ``line_files`` / ``line_numbers``): its highest
score over the windows it sits in, and the window that gave it (the first such
window in table order on a tie). That is the verdict an operator acts on: the line
is flagged when any of its windows flags it.

Lines of a table without line references (a hand-made table, or one written by an
older logad) cannot be matched across windows: they are kept one row per window
line, with ``file`` and ``line`` null.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from logad.errors import DataError

__all__ = ["LINE_SCORE_COLUMNS", "evaluate_lines", "line_frame"]

LINE_SCORE_COLUMNS = ("file", "line", "window_id", "score", "threshold", "verdict", "label")
"""The columns of ``line_scores.parquet``, in order."""


def _flat(windows: pd.DataFrame, column: str, counts: np.ndarray, fill: Any) -> list[Any]:
    """A per-line column flattened over windows; ``fill`` for every line of a window whose
    list is null (or where the table has no such column)."""
    if column not in windows:
        return [fill] * int(counts.sum())
    out: list[Any] = []
    for values, n in zip(windows[column], counts, strict=True):
        if values is None or (isinstance(values, float) and np.isnan(values)):
            out.extend([fill] * int(n))
        else:
            if len(values) != n:
                raise DataError(f"windows column {column!r} has {len(values)} entries for a window of {n} lines")
            out.extend(values)
    return out


def line_frame(windows: pd.DataFrame, scores: np.ndarray, threshold: float) -> pd.DataFrame:
    """One row per input line: ``file``, ``line``, ``window_id``, ``score``, ``threshold``,
    ``verdict`` (1 when ``score > threshold``) and ``label`` (the line's own label; null
    where the source labels no lines), sorted by file and line.

    Args:
        windows: the scored windows (with ``event_ids``; ``window_id`` and the per-line
            columns where present).
        scores: per-line scores as :meth:`Detector.score_lines` returns them.
        threshold: the line threshold stored with the model.
    """
    counts = np.fromiter((len(x) for x in windows["event_ids"]), np.int64, len(windows))
    s = np.asarray(scores, dtype=np.float64)
    if len(s) != counts.sum():
        raise DataError(f"{len(s)} line scores for {int(counts.sum())} lines")
    wids = windows["window_id"].astype(str).to_numpy() if "window_id" in windows else np.arange(len(windows)).astype(str)
    frame = pd.DataFrame({
        "file": pd.array(_flat(windows, "line_files", counts, None), dtype="string"),
        "line": pd.array(_flat(windows, "line_numbers", counts, None), dtype="Int64"),
        "window_id": pd.array(np.repeat(wids, counts), dtype="string"),
        "score": s,
        "label": pd.array(_flat(windows, "line_labels", counts, None), dtype="Int8"),
    })
    keyed = frame["file"].notna().to_numpy() & frame["line"].notna().to_numpy()
    if keyed.any():
        # highest score first (stable: the first window on a tie), then one row per line
        ranked = frame[keyed].iloc[np.argsort(-frame["score"].to_numpy()[keyed], kind="stable")]
        unique = ranked.drop_duplicates(["file", "line"], keep="first")
        frame = pd.concat([unique, frame[~keyed]]) if not keyed.all() else unique
        frame = frame.sort_values(["file", "line"], kind="stable", na_position="last")
    frame = frame.reset_index(drop=True)
    frame["threshold"] = float(threshold)
    frame["verdict"] = (frame["score"].to_numpy() > threshold).astype(np.int8)
    return frame[list(LINE_SCORE_COLUMNS)]


def evaluate_lines(lines: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Metrics over the labelled lines of a :func:`line_frame` (at ``threshold``), with the
    oracle upper bound, as :func:`logad.evaluation.report.evaluate_scores` does for
    windows; counts are of lines (``num_lines``, ``num_labelled``, ...)."""
    from logad.evaluation.report import evaluate_scores

    out = evaluate_scores(lines["score"].to_numpy(), lines["label"], threshold)
    out["num_lines"] = out.pop("num_windows")
    return out
