"""Line-level scoring in the service's batch handler, and the detect client's line origins (no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from logad.commands.detect import Origins, _batches, iter_lines
from logad.methods.base import LineEvidence, WindowExplanation
from logad.methods.unseen import Unseen
from logad.serving.app import _score_group


@pytest.fixture
def unseen() -> Unseen:
    train = pd.DataFrame({"event_ids": [[1, 2, 3], [2, 3, 4]]})
    det = Unseen()
    det.fit(train, train)
    return det


def _request(event_ids, explain="none", threshold=None):
    return {"model_id": "m", "event_ids": event_ids, "explain": explain, "threshold": threshold}


def test_a_line_level_group_gives_each_window_its_flagged_lines(unseen):
    first = _request([[1, 9, 2], [3, 4]], explain="anomalous")  # 9: never seen
    second = _request([[8, 8], [1]], explain="none")
    a, b = _score_group(unseen, [first, second])
    assert a["line_level"] and b["line_level"] and a["line_threshold"] == b["line_threshold"] == 0.5
    assert a["scores"] == [1.0, 0.0] and b["scores"] == [2.0, 0.0]
    # (position in the window, score) of each line over the line threshold
    assert a["line_hits"] == [[(1, 1.0)], []] and b["line_hits"] == [[(0, 1.0), (1, 1.0)], []]
    # evidence only where asked: the first request's anomalous window
    assert a["evidence"] == [[(1, 9, 1.0, [])], None] and b["evidence"] == [None, None]  # (index, id, p, context)


def test_a_window_level_group_has_no_line_fields():
    class Stub:
        threshold = 0.5

        def score(self, frame):
            return np.array([float(len(x)) for x in frame["event_ids"]])

        def explain(self, frame):
            return [WindowExplanation("", float(len(x)), [LineEvidence(0, "", int(x[0]), 0.9)])
                    for x in frame["event_ids"]]

    (quiet,) = _score_group(Stub(), [_request([[1], [2, 3]])])
    assert quiet["scores"] == [1.0, 2.0] and quiet["evidence"] == [None, None]
    assert quiet["line_level"] is False and quiet["line_threshold"] is None and quiet["line_hits"] is None
    (loud,) = _score_group(Stub(), [_request([[1], [2, 3]], explain="anomalous", threshold=1.5)])
    assert loud["evidence"] == [None, [(0, 2, 0.9, [])]]


def test_batches_keep_to_one_file_and_know_the_line_of_every_line(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("a1\na2\n\na4\n")
    b.write_text("b1\nb2\nb3")  # no break after the last line
    got, sent = [], []
    for lines, origins, name in _batches([str(a), str(b), str(a)], 3):
        got += [(line, origins(i)) for i, line in enumerate(lines)]
        sent.append((name, len(lines)))
        assert origins(len(lines) - 1) is not None and origins(None) is None and origins(-1) is None
        assert {origins(i)[0] for i in range(len(lines))} == {str(tmp_path / name)}  # one file per request
    assert sent == [("a.log", 3), ("a.log", 1), ("b.log", 3), ("a.log", 3), ("a.log", 1)]
    assert got == [
        ("a1", (str(a), 1)), ("a2", (str(a), 2)), ("", (str(a), 3)), ("a4", (str(a), 4)),
        ("b1", (str(b), 1)), ("b2", (str(b), 2)), ("b3", (str(b), 3)),
        ("a1", (str(a), 1)), ("a2", (str(a), 2)), ("", (str(a), 3)), ("a4", (str(a), 4)),
    ]
    assert Origins()(0) is None


def test_lines_end_at_newline_only_as_ingest_reads_them(tmp_path):
    f = tmp_path / "x.log"
    f.write_bytes(b"one\r\ntwo\rstill two\nthree")
    # a lone "\r" does not end a line (line numbers stay those of ingest); the service drops
    # the trailing "\r" of a CRLF line itself
    assert list(iter_lines(f)) == ["one\r", "two\rstill two", "three"]
