"""Assign lines to windows and build window rows: pure Arrow/numpy, no Ray.

Three rules (see :mod:`logad.sources.config`):

* ``session``: a line belongs to the session its id regex names (first match).
* ``sliding``: time windows ``[k*step, k*step + size)`` aligned to the epoch; a
  line lands in every window that covers its time.
* ``fixed``: ``window_lines`` consecutive lines of one file, a new window
  every ``step_lines``.

Lines are ordered inside a window by (time, file, byte offset), so a window
reads like the log it came from.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from logad.sources.config import FixedGrouping, SessionGrouping, SlidingGrouping
from logad.sources.lines import extract_first
from logad.windows.schema import WINDOWS_SCHEMA

__all__ = ["assign_windows", "build_windows", "session_ids"]

_US = 1_000_000


def session_ids(
    raw: pa.Array, fields: dict[str, pa.Array], grouping: SessionGrouping, paths: pa.Array | None = None
) -> pa.Array:
    """The session id of each line (null where the line names none).

    Args:
        paths: each line's input file path; needed when ``id_field`` is 'path'.
    """
    if grouping.id_field == "path":
        if paths is None:
            raise ValueError("grouping.id_field=path needs the input path of each line")
        where = paths
    else:
        where = raw if grouping.id_field == "line" else fields[grouping.id_field]
    return extract_first(where, grouping.id_regex)


def assign_windows(
    lines: pa.Table,
    grouping: SessionGrouping | SlidingGrouping | FixedGrouping,
    *,
    file_names: list[str] | None = None,
    sessions: pa.Array | None = None,
    first_column: str | None = None,
) -> pa.Table:
    """Add a ``window_id`` column; a line in k windows appears k times.

    Args:
        lines: parsed lines with at least ``ts``, ``file_idx`` and ``line_no``.
        grouping: the source's grouping rule.
        file_names: names of the input files by index (for fixed window ids).
        sessions: for session grouping, the id of each line (see :func:`session_ids`).
        first_column: if given, a boolean column of this name marks each line's
            first window, so per-line counts can skip the copies.

    Returns:
        The rows that belong to at least one window, with ``window_id``.
        Lines without a session id (or without a time, for sliding windows)
        are left out; the caller counts them.
    """
    if isinstance(grouping, SessionGrouping):
        assert sessions is not None
        keep = pc.is_valid(sessions)
        out = lines.append_column("window_id", sessions).filter(keep)
        return _mark_first(out, first_column, None)
    if isinstance(grouping, SlidingGrouping):
        ts = lines["ts"]
        keep = pc.is_valid(ts)
        lines = lines.filter(keep)
        t = lines["ts"].cast(pa.int64()).to_numpy()
        # rounded: 1.001 s is 1000999.99… µs as a float, and int() would make windows drift
        size, step = round(grouping.window_size_s * _US), round(grouping.step_s * _US)
        last = np.floor_divide(t, step) * step
        first = (np.floor_divide(t - size, step) + 1) * step
        reps = ((last - first) // step + 1).astype(np.int64)
        rows = np.repeat(np.arange(len(t)), reps)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(reps) - reps, reps)
        starts = first[rows] + within * step
        out = lines.take(pa.array(rows))
        t = pd.to_datetime(starts, unit="us")
        wid = np.asarray(t.strftime("%Y-%m-%dT%H:%M:%S"), dtype=object)
        frac = starts % _US != 0
        if frac.any():  # sub-second steps: the fraction keeps the windows apart
            wid = np.where(frac, np.asarray(t.strftime("%Y-%m-%dT%H:%M:%S.%f"), dtype=object), wid)
        out = out.append_column("window_id", pa.array(wid, pa.string()))
        return _mark_first(out, first_column, within == 0)
    # fixed-count windows within each file
    n = lines["line_no"].to_numpy()
    if (n < 0).any():
        raise ValueError("fixed windows need line numbers: read files whole (no byte ranges)")
    size, step = grouping.window_lines, grouping.step
    last = n // step
    first = np.maximum(0, (n - size) // step + 1)
    reps = (last - first + 1).astype(np.int64)
    rows = np.repeat(np.arange(len(n)), reps)
    within = np.arange(len(rows)) - np.repeat(np.cumsum(reps) - reps, reps)
    k = first[rows] + within
    fidx = lines["file_idx"].to_numpy()[rows]
    names = file_names or []
    wid = [f"{names[f] if f < len(names) else f}#{s}" for f, s in zip(fidx, k * step, strict=True)]
    out = lines.take(pa.array(rows))
    out = out.append_column("window_id", pa.array(wid, pa.string()))
    return _mark_first(out, first_column, within == 0)


def _mark_first(rows: pa.Table, name: str | None, first: np.ndarray | None) -> pa.Table:
    if name is None:
        return rows
    return rows.append_column(name, pa.array(np.ones(rows.num_rows, bool) if first is None else first))


def build_windows(
    rows: pa.Table,
    source: str,
    label_map: dict[str, int] | None = None,
    *,
    files: Sequence[str] | None = None,
    inputs: Sequence[str | None] | None = None,
) -> pa.Table:
    """Group rows (with ``window_id``) into one windows-table row per window.

    Args:
        rows: columns window_id, ts, file_idx, offset, event_id, raw, line_label, and
            optionally line_no (0-based line number in its file, -1 where unknown) and
            msg_off (where the message starts in ``raw``, in characters).
        source: the source name written in every row.
        label_map: window id → label from a label file; when given it decides
            the label (windows missing from it get null). Otherwise a window is
            anomalous when any of its lines is.
        files: each input file's name as users find it, by file index (``line_files``);
            None leaves ``line_files`` null.
        inputs: the ingest INPUT argument each file came from, by file index
            (``input``: the window's first line's); None leaves it null.
    """
    if rows.num_rows == 0:
        return WINDOWS_SCHEMA.empty_table()
    order = pc.sort_indices(
        rows,
        sort_keys=[(k, "ascending", "at_end") for k in ("window_id", "ts", "file_idx", "offset")],
    )
    rows = rows.take(order)
    wid = rows["window_id"].combine_chunks()
    n = rows.num_rows
    change = np.flatnonzero(pc.not_equal(wid[1:], wid[:-1]).to_numpy(zero_copy_only=False)) + 1
    starts = np.concatenate(([0], change)).astype(np.int64)
    offsets = pa.array(np.concatenate((starts, [n])).astype(np.int32))
    ids = wid.take(pa.array(starts))
    nw = len(starts)

    ts = rows["ts"].combine_chunks()
    tv = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    valid = ts.is_valid().to_numpy(zero_copy_only=False)
    big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    tmin = np.minimum.reduceat(np.where(valid, tv, big), starts)
    tmax = np.maximum.reduceat(np.where(valid, tv, small), starts)
    has_t = np.add.reduceat(valid.astype(np.int64), starts) > 0
    start = pa.array(np.where(has_t, tmin, 0), pa.int64()).cast(pa.timestamp("us"))
    end = pa.array(np.where(has_t, tmax, 0), pa.int64()).cast(pa.timestamp("us"))
    null_ts = pa.scalar(None, pa.timestamp("us"))
    start = pc.if_else(pa.array(has_t), start, null_ts)
    end = pc.if_else(pa.array(has_t), end, null_ts)

    lab = rows["line_label"].combine_chunks().cast(pa.int8())
    lv = pc.fill_null(lab, -1).to_numpy(zero_copy_only=False).astype(np.int8)
    wl = np.maximum.reduceat(lv, starts)
    if label_map is not None:
        labels = pa.array([label_map.get(k) for k in ids.to_pylist()], pa.int8())
    else:
        labels = pa.array(np.where(wl < 0, 0, wl).astype(np.int8), mask=wl < 0)
    # a window's line labels are null as a whole where none of its lines has one
    line_labels = pa.ListArray.from_arrays(offsets, lab, mask=pa.array(wl < 0))

    fidx = rows["file_idx"].combine_chunks().cast(pa.int32())
    if files is not None:
        line_files = pa.ListArray.from_arrays(offsets, pa.array(list(files), pa.string()).take(fidx))
    else:
        line_files = pa.nulls(nw, pa.list_(pa.string()))
    if "line_no" in rows.column_names:
        no = rows["line_no"].combine_chunks().cast(pa.int64())
        line_numbers = pa.ListArray.from_arrays(
            offsets, pc.if_else(pc.greater_equal(no, 0), pc.add(no, 1), pa.scalar(None, pa.int64())))
    else:
        line_numbers = pa.nulls(nw, pa.list_(pa.int64()))
    if "msg_off" in rows.column_names:
        message_offsets = pa.ListArray.from_arrays(offsets, rows["msg_off"].combine_chunks().cast(pa.int32()))
    else:
        message_offsets = pa.nulls(nw, pa.list_(pa.int32()))
    if inputs is not None:
        window_input = pa.array(list(inputs), pa.string()).take(fidx.take(pa.array(starts)))
    else:
        window_input = pa.nulls(nw, pa.string())

    return pa.table(
        {
            "source": pa.array([source] * nw, pa.string()),
            "window_id": ids,
            "start": start,
            "end": end,
            "event_ids": pa.ListArray.from_arrays(offsets, rows["event_id"].combine_chunks()),
            "lines": pa.ListArray.from_arrays(offsets, rows["raw"].combine_chunks()),
            "label": labels,
            "input": window_input,
            "line_files": line_files,
            "line_numbers": line_numbers,
            "line_labels": line_labels,
            "line_times": pa.ListArray.from_arrays(offsets, ts),
            "message_offsets": message_offsets,
        },
        schema=WINDOWS_SCHEMA,
    )
