"""Window assignment and window building, checked against plain-Python definitions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from logad.sources.config import FixedGrouping, SessionGrouping, SlidingGrouping
from logad.windows.grouping import assign_windows, build_windows, session_ids

T0 = dt.datetime(2005, 6, 3, 15, 42, 50)


def _lines(times_s, labels=None, file_idx=None):
    n = len(times_s)
    return pa.table(
        {
            "ts": pa.array([None if t is None else T0 + dt.timedelta(seconds=t) for t in times_s], pa.timestamp("us")),
            "file_idx": pa.array(file_idx or [0] * n, pa.int32()),
            "offset": pa.array(np.arange(n) * 100, pa.int64()),
            "line_no": pa.array(np.arange(n), pa.int64()),
            "event_id": pa.array(np.arange(n) + 1, pa.int64()),
            "raw": pa.array([f"line {i}" for i in range(n)]),
            "line_label": pa.array(labels or [0] * n, pa.int8()),
        }
    )


def test_sliding_windows_cover_each_line_in_every_window_that_contains_it():
    rng = np.random.default_rng(0)
    times = sorted(rng.uniform(0, 3600, 300).tolist())
    labels = [int(i % 37 == 0) for i in range(300)]
    g = SlidingGrouping(window_size_s=300, step_s=60)
    rows = assign_windows(_lines(times, labels), g)
    w = build_windows(rows, "bgl").to_pylist()
    epoch = dt.datetime(1970, 1, 1)
    for win in w:
        ws = dt.datetime.fromisoformat(win["window_id"])
        assert (ws - epoch).total_seconds() % 60 == 0
        idx = [int(s.split()[1]) for s in win["lines"]]
        expected = [i for i, t in enumerate(times) if ws <= T0 + dt.timedelta(seconds=t) < ws + dt.timedelta(seconds=300)]
        assert idx == expected
        assert win["label"] == max(labels[i] for i in idx)
        assert ws <= win["start"] <= win["end"] < ws + dt.timedelta(seconds=300)
    # each line is in size/step = 5 windows (the first and last few are cut by the data's ends)
    assert len(rows) == sum(len(x["lines"]) for x in w)
    assert max(np.bincount([int(s.split()[1]) for x in w for s in x["lines"]])) == 5


def test_lines_without_time_are_left_out_of_sliding_windows():
    rows = assign_windows(_lines([0, None, 10]), SlidingGrouping(window_size_s=60, step_s=60))
    assert sorted(set(rows["raw"].to_pylist())) == ["line 0", "line 2"]


def test_fixed_windows_per_file_with_and_without_overlap():
    lines = _lines([0] * 10, file_idx=[0] * 6 + [1] * 4)
    lines = lines.set_column(3, "line_no", pa.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 3], pa.int64()))
    w = build_windows(assign_windows(lines, FixedGrouping(window_lines=4), file_names=["a.log", "b.log"]), "x")
    assert {r["window_id"]: len(r["lines"]) for r in w.to_pylist()} == {"a.log#0": 4, "a.log#4": 2, "b.log#0": 4}
    w2 = build_windows(
        assign_windows(lines, FixedGrouping(window_lines=4, step_lines=2), file_names=["a.log", "b.log"]), "x"
    )
    ids = {r["window_id"]: r["lines"] for r in w2.to_pylist()}
    assert ids["a.log#2"] == ["line 2", "line 3", "line 4", "line 5"]
    assert set(ids) == {"a.log#0", "a.log#2", "a.log#4", "b.log#0", "b.log#2"}


@pytest.mark.parametrize("grouping", [SlidingGrouping(window_size_s=300, step_s=60),
                                      FixedGrouping(window_lines=4, step_lines=2), FixedGrouping(window_lines=5)])
def test_first_column_marks_each_line_once_however_many_windows_hold_it(grouping):
    """Per-line counts after window assignment (lines matching no template) read the
    first copy only, so a line in five sliding windows still counts once."""
    rng = np.random.default_rng(1)
    times = [None] + sorted(rng.uniform(0, 1200, 99).tolist())
    rows = assign_windows(_lines(times), grouping, first_column="first")
    held = set(rows["offset"].to_pylist())
    overlapping = not isinstance(grouping, FixedGrouping) or grouping.step < grouping.window_lines
    assert (rows.num_rows > len(held)) == overlapping  # copies where windows overlap
    first = rows.filter(rows["first"])
    assert sorted(first["offset"].to_pylist()) == sorted(held)  # each line once
    assert "first" not in assign_windows(_lines(times), grouping).column_names


def test_sessions_group_by_id_in_time_order_and_take_file_labels():
    raw = pa.array(["x blk_1 a", "y blk_2 b", "no id here", "z blk_1 c", "w blk_-3 d"])
    g = SessionGrouping(id_regex=r"blk_-?\d+")
    sid = session_ids(raw, {}, g)
    assert sid.to_pylist() == ["blk_1", "blk_2", None, "blk_1", "blk_-3"]
    lines = _lines([5, 1, 2, 3, 4]).set_column(5, "raw", raw)
    w = build_windows(assign_windows(lines, g, sessions=sid), "hdfs", {"blk_1": 1, "blk_2": 0})
    got = {r["window_id"]: (r["lines"], r["label"]) for r in w.to_pylist()}
    assert got["blk_1"] == (["z blk_1 c", "x blk_1 a"], 1)  # ordered by time, not input order
    assert got["blk_2"][1] == 0
    assert got["blk_-3"][1] is None  # not in the label file: unknown, not normal


def test_window_label_is_null_only_when_no_line_is_labelled():
    lines = _lines([0, 1, 2]).set_column(6, "line_label", pa.array([None, None, None], pa.int8()))
    w = build_windows(assign_windows(lines, FixedGrouping(window_lines=3), file_names=["f"]), "s")
    assert w["label"].to_pylist() == [None]


@pytest.mark.parametrize("bad", [{"window_size_s": 60, "step_s": 0}, {"window_size_s": 60, "step_s": 120}])
def test_sliding_config_rejects_bad_steps(bad):
    with pytest.raises(ValueError, match="step_s"):
        SlidingGrouping(**bad)
