"""The lines of a batch of windows, flattened and keyed by input line.

Line-level methods (the classical pipeline, CoLog) judge each input line with its
context: the lines around it in its file. A line that sits in several windows
(sliding or overlapping fixed windows) is one input line: lines are keyed by
``(line_files[i], line_numbers[i])`` and sorted in file order, so every copy of
a line is judged once, with the same context. Lines without references (a
hand-made table, an HTTP request) are keyed by window and position, and their
context is their window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["WORD_PATTERN", "LineBatch", "context_index", "file_types", "flatten_lines", "has_line_labels",
           "window_max"]

# a message's words for bag-of-words inputs: runs of two or more letters (numbers, ids and
# punctuation drop out, so pids, ports and addresses do not split one message shape in many)
WORD_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"

_NO_REF = "\x00window"  # file key of lines without references: their window is their context


@dataclass
class LineBatch:
    """The lines of a batch of windows, flattened in window order.

    ``unique`` maps every line to its input line (a row of the ``u_*`` arrays), and
    the input lines are sorted by (file, line number): the order their context is
    read in.
    """

    window: np.ndarray        # window index of every line (int64)
    counts: np.ndarray        # lines per window
    unique: np.ndarray        # input-line index of every line
    u_group: np.ndarray       # context group (file) code of every input line, sorted
    u_event: np.ndarray       # template id per input line
    u_message: pa.Array       # message text per input line
    u_line: pa.Array          # raw line per input line
    u_time: np.ndarray        # float64 seconds since the epoch, NaN where missing
    u_label: np.ndarray       # float64 label per input line (NaN unknown)
    u_first_window: np.ndarray  # the first window (in batch order) holding the input line
    u_file: np.ndarray        # file name per input line (object; None where unknown)

    @property
    def num_lines(self) -> int:
        return len(self.window)

    @property
    def num_unique(self) -> int:
        return len(self.u_event)


def _flat(frame: pd.DataFrame, column: str, counts: np.ndarray, fill: Any) -> list[Any]:
    if column not in frame:
        return [fill] * int(counts.sum())
    out: list[Any] = []
    for values, n in zip(frame[column], counts, strict=True):
        if values is None or (isinstance(values, float) and math.isnan(values)) or len(values) != n:
            out.extend([fill] * int(n))
        else:
            out.extend(values)
    return out


def flatten_lines(frame: pd.DataFrame) -> LineBatch:
    """Flatten a windows frame into its lines and key them by input line."""
    counts = np.fromiter((len(x) for x in frame["event_ids"]), np.int64, len(frame))
    total = int(counts.sum())
    window = np.repeat(np.arange(len(frame), dtype=np.int64), counts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])) if len(counts) else np.zeros(0, np.int64)
    position = np.arange(total, dtype=np.int64) - np.repeat(starts, counts)
    event = np.fromiter(chain.from_iterable(frame["event_ids"]), np.int64, total)
    lines = _flat(frame, "lines", counts, "")
    files = _flat(frame, "line_files", counts, None)
    numbers = _flat(frame, "line_numbers", counts, None)
    offsets = _flat(frame, "message_offsets", counts, 0)
    times = _flat(frame, "line_times", counts, None)
    labels = _flat(frame, "line_labels", counts, None)

    f = pd.Series(files, dtype=object)
    no = pd.to_numeric(pd.Series(numbers, dtype=object), errors="coerce")
    ref = f.notna().to_numpy() & no.notna().to_numpy()
    key_file = np.where(ref, f.fillna("").to_numpy(dtype=object),
                        np.char.add(_NO_REF, window.astype(str)).astype(object))
    key_line = np.where(ref, no.fillna(0).to_numpy(dtype=np.int64), position)
    keys = pd.DataFrame({"f": key_file, "l": key_line})
    group_codes, _ = pd.factorize(keys["f"], sort=True)
    order = np.lexsort((key_line, group_codes))                  # lines in (file, line) order
    k_sorted = np.stack([group_codes[order], key_line[order]])
    new = np.ones(total, dtype=bool)
    if total > 1:
        new[1:] = (k_sorted[:, 1:] != k_sorted[:, :-1]).any(axis=0)
    u_of_sorted = np.cumsum(new) - 1
    unique = np.empty(total, dtype=np.int64)
    unique[order] = u_of_sorted
    first = order[new]                                            # a representative line per input line
    # the first window (batch order) holding each input line: the smallest window index
    u_first_window = np.full(int(new.sum()), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(u_first_window, unique, window)

    first_lines = [lines[i] for i in first.tolist()]
    first_offsets = [offsets[i] for i in first.tolist()]
    raw = pa.array(first_lines, pa.string())
    message = pa.array([ln[o:] if o else ln for ln, o in zip(first_lines, first_offsets, strict=True)], pa.string())
    t = pd.to_numeric(pd.Series(times, dtype=object), errors="coerce").to_numpy(dtype=np.float64)[first]
    y = pd.to_numeric(pd.Series(labels, dtype=object), errors="coerce").to_numpy(dtype=np.float64)[first]
    return LineBatch(window=window, counts=counts, unique=unique, u_group=group_codes[first],
                     u_event=event[first], u_message=message, u_line=raw,
                     u_time=t / 1e6, u_label=y, u_first_window=u_first_window,
                     u_file=np.asarray(files, dtype=object)[first] if total else np.zeros(0, dtype=object))


def window_max(batch: LineBatch, line_scores: np.ndarray) -> np.ndarray:
    """Each window's highest line score (0 for an empty window), from the scores of every
    line of the batch in window order."""
    out = np.zeros(len(batch.counts), dtype=np.float64)
    nonempty = batch.counts > 0
    if nonempty.any():
        starts = np.concatenate(([0], np.cumsum(batch.counts)[:-1])).astype(np.int64)
        out[nonempty] = np.maximum.reduceat(np.asarray(line_scores, dtype=np.float64), starts[nonempty])
    return out


def context_index(groups: np.ndarray, width: int) -> np.ndarray:
    """For input lines sorted by (group, line), the index of each line's neighbours at
    offsets ``-width … +width`` in its own group (itself in the middle), ``-1`` past the
    group's edges: shape ``(n, 2 * width + 1)``."""
    n = len(groups)
    idx = np.arange(n, dtype=np.int64)[:, None] + np.arange(-width, width + 1, dtype=np.int64)[None, :]
    inside = (idx >= 0) & (idx < n)
    clipped = np.clip(idx, 0, max(n - 1, 0))
    if n:
        inside &= groups[clipped] == groups[:, None]
    return np.where(inside, clipped, -1)


def file_types(files: np.ndarray) -> np.ndarray:
    """The type of each file: the leading letters of its base name, lower-cased ("" if none)."""
    names = pa.array([f if isinstance(f, str) else "" for f in files], pa.string())
    base = pc.replace_substring_regex(names, r"^.*[/\\]", "")
    lead = pc.extract_regex(base, r"^(?P<t>[A-Za-z]*)").field("t")
    return np.asarray(pc.utf8_lower(lead).to_pylist(), dtype=object)


def has_line_labels(windows: pd.DataFrame) -> bool:
    """Whether any window of ``windows`` labels its lines (a ``line_labels`` entry that is not null)."""
    if "line_labels" not in windows:
        return False
    return any(v is not None and not (isinstance(v, float) and np.isnan(v)) for v in windows["line_labels"])
