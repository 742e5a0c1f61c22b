"""Line-level pieces without Ray: the line frame, keyword labels, the optional columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from logad.errors import ConfigError, DataError
from logad.evaluation.lines import LINE_SCORE_COLUMNS, evaluate_lines, line_frame
from logad.sources.config import SourceConfig
from logad.sources.keywords import KeywordLabeller, bundled_wordlists, read_wordlists
from logad.windows import read_windows, validate_windows


def _sliding(n_lines: int = 8, size: int = 5) -> pd.DataFrame:
    """Windows of ``size`` lines every line over one file: line k sits in up to ``size`` windows."""
    rows = []
    for start in range(-size + 1, n_lines):
        nums = [k for k in range(start, start + size) if 1 <= k <= n_lines]
        if nums:
            rows.append({"window_id": f"w{start}", "event_ids": [k for k in nums], "lines": [f"l{k}" for k in nums],
                         "line_files": ["a.log"] * len(nums), "line_numbers": nums,
                         "line_labels": [int(k == 3) for k in nums]})
    return pd.DataFrame(rows)


def test_a_line_in_five_windows_is_one_row_with_its_highest_score():
    w = _sliding()
    counts = [len(x) for x in w["event_ids"]]
    # each copy of a line scores (window index) / 100, plus 1 for line 3 in window w1 only
    scores = np.concatenate([np.full(n, i / 100) + np.array([1.0 if (k == 3 and wid == "w1") else 0 for k in nums])
                             for i, (n, nums, wid) in enumerate(zip(counts, w["line_numbers"], w["window_id"],
                                                                    strict=True))])
    assert max(sum(k == 3 for k in nums) for nums in [sum(w["line_numbers"], [])]) == 5
    frame = line_frame(w, scores, threshold=0.5)
    assert list(frame.columns) == list(LINE_SCORE_COLUMNS)
    assert list(frame["line"]) == list(range(1, 9)) and set(frame["file"]) == {"a.log"}
    row3 = frame.set_index("line").loc[3]
    assert row3["window_id"] == "w1" and row3["verdict"] == 1 and row3["label"] == 1
    assert (frame["verdict"] == (frame["score"] > 0.5)).all() and (frame["threshold"] == 0.5).all()
    m = evaluate_lines(frame, 0.5)
    assert m["num_lines"] == 8 and m["num_anomalous"] == 1 and m["metrics"]["f1"] == 1.0


def test_lines_without_references_are_kept_per_window():
    w = _sliding().drop(columns=["line_files", "line_numbers", "line_labels"])
    n = sum(len(x) for x in w["event_ids"])
    frame = line_frame(w, np.zeros(n), 0.5)
    assert len(frame) == n and frame["file"].isna().all() and frame["label"].isna().all()
    with pytest.raises(DataError, match="line scores"):
        line_frame(w, np.zeros(n - 1), 0.5)


def _keyword_config(**labels) -> SourceConfig:
    return SourceConfig.model_validate({
        "name": "t", "format": {"regex": r"^(?P<Content>.*)$"}, "grouping": {"kind": "fixed"},
        "labels": {"kind": "keywords", **labels}})


def test_keyword_rule_by_file_type(tmp_path):
    (tmp_path / "auth.txt").write_text("Failed Password\n\n  invalid user \n")  # blank lines never match
    cfg = _keyword_config(wordlists=str(tmp_path), terms={"kern": ["oops"]})
    lab = KeywordLabeller(cfg, ["/x/auth.log.1", "/x/kern.log", "/x/weird-name", "/x/123"])
    assert lab.file_types == ["auth", "kern", "weird", None]
    content = pa.array(["sshd: FAILED password for root", "ok", "Invalid User bob", "kernel OOPS", "fine",
                        "failed password", "failed password"])
    files = pa.array([0, 0, 0, 1, 1, 2, 3], pa.int32())
    assert lab(content, files).to_pylist() == [1, 0, 1, 1, 0, None, None]  # no list for weird / no type


def test_bundled_lists_are_the_syslog_family():
    lists = read_wordlists(bundled_wordlists())
    assert set(lists) == {"auth", "daemon", "debug", "dmesg", "kern", "messages", "syslog"}
    assert all(t and t == t.strip().lower() for terms in lists.values() for t in terms)


def test_keyword_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no folder"):
        KeywordLabeller(_keyword_config(wordlists=str(tmp_path / "missing")), ["auth.log"])
    with pytest.raises(ValueError, match="kind=keywords"):
        SourceConfig.model_validate({"name": "t", "format": {"regex": r"^(?P<Content>.*)$"},
                                     "grouping": {"kind": "fixed"}, "labels": {"kind": "none", "terms": {"a": ["b"]}}})


def test_tables_without_the_line_columns_read_back_with_nulls(tmp_path):
    table = pa.table({"source": ["s"], "window_id": ["w"], "start": pa.array([None], pa.timestamp("us")),
                      "end": pa.array([None], pa.timestamp("us")), "event_ids": [[1, 2]], "lines": [["a", "b"]],
                      "label": pa.array([0], pa.int8())})
    full = validate_windows(table)
    assert full.column("line_numbers").to_pylist() == [None] and full.column("input").to_pylist() == [None]
    (tmp_path / "windows").mkdir()
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "windows" / "part-0.parquet")
    df = read_windows(tmp_path)
    assert df.loc[0, "line_labels"] is None and df.loc[0, "lines"] == ["a", "b"]
