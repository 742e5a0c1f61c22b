"""What each baseline adds to the shared conformance tests: its own rule, checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from logad.methods import get_method

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hdfs_eventid"


def _frame(seqs: list[list[int]], prefix: str = "w") -> pd.DataFrame:
    return pd.DataFrame({"window_id": [f"{prefix}{i}" for i in range(len(seqs))], "event_ids": seqs,
                         "lines": [[f"line {i} E{e}" for i, e in enumerate(s)] for s in seqs]})


@pytest.fixture(scope="module")
def normal() -> list[list[int]]:
    return [[int(x) for x in line.split()] for line in (FIXTURE / "hdfs_train").read_text().splitlines()][:500]


def test_unseen_counts_unknown_and_zero_ids(normal):
    det = get_method("unseen")()
    det.fit(_frame(normal[:400]), _frame(normal[400:450]))
    assert det.threshold == 0.0  # clean validation: any unseen line flags
    probe = _frame([normal[450], normal[451] + [123456789, 0], [0, 0, 0]])
    np.testing.assert_array_equal(det.score(probe), [0, 2, 3])
    ex = det.explain(probe)[1]
    assert [e.index for e in ex.lines] == [len(normal[451]), len(normal[451]) + 1]
    share = get_method("unseen")(share=True)
    share.fit(_frame(normal[:400]), _frame(normal[400:450]))
    assert share.score(_frame([[0, normal[0][0]]]))[0] == 0.5


def test_isolation_forest_arrays_score_like_scikit_learn(normal):
    det = get_method("isolation-forest")(n_estimators=30, max_features=0.8)
    det.fit(_frame(normal[:400]), _frame(normal[400:450]))
    probe = _frame(normal[450:500] + [s[:3] + [999] * 4 for s in normal[450:460]])
    x = det.vocab.counts(probe["event_ids"])
    np.testing.assert_allclose(det.score(probe), -det._check_against.score_samples(x), rtol=1e-12)


def test_pca_unknown_templates_live_in_the_residual(normal):
    det = get_method("pca")()
    det.fit(_frame(normal[:400]), _frame(normal[400:450]))
    assert det.fit_report.extra["components"] >= 1
    clean, odd = det.score(_frame([normal[460]])), det.score(_frame([normal[460] + [999]]))
    assert odd[0] > clean[0] and odd[0] > det.threshold


def test_deeplog_k_comes_from_validation_only(normal):
    det = get_method("deeplog")(hidden_size=16, embedding_size=8, num_layers=1, epochs=3, device="cpu",
                                val_miss_rate=0.0)
    train, val = _frame(normal[:400]), _frame(normal[400:450])
    det.fit(train, val)
    # k covers every validation next-event: no validation window is flagged
    assert (det.score(val) <= det.threshold).all()
    assert 1 <= det.threshold <= len(det.vocab)
    # unseen events rank beyond the vocabulary, beyond any k
    assert det.score(_frame([normal[460] + [999]]))[0] == len(det.vocab) + 1
    # a looser miss rate never gives a larger k
    loose = get_method("deeplog")(hidden_size=16, embedding_size=8, num_layers=1, epochs=3, device="cpu",
                                  val_miss_rate=0.2)
    loose.fit(train, val)
    assert loose.threshold <= det.threshold
    assert det.fit_report.extra["paper_k"] == 9


def test_isolation_forest_flags_a_burst_of_a_varying_template(normal):
    """What IsolationForest does catch: a count far outside the training range of a varying template."""
    det = get_method("isolation-forest")(n_estimators=50)
    det.fit(_frame(normal[:400]), _frame(normal[400:450]))
    x = det.vocab.counts(_frame(normal[:400])["event_ids"])
    col = int(np.argmax(x.var(axis=0)))
    event = int(det.vocab.ids[col])
    burst = [s + [event] * int(3 * x[:, col].max()) for s in normal[450:500]]
    clean, odd = det.score(_frame(normal[450:500])), det.score(_frame(burst))
    assert np.median(odd) > np.median(clean)
    assert (odd > det.threshold).mean() > (clean > det.threshold).mean() + 0.5


def test_compare_command_writes_one_table(tmp_path, normal, capsys):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from logad.cli import main
    from logad.windows import validate_windows

    abnormal = [[int(x) for x in line.split()] for line in (FIXTURE / "hdfs_test_abnormal").read_text().splitlines()]
    seqs = normal[:450] + abnormal[:50]
    frame = _frame(seqs)
    frame["source"] = "hdfs"
    frame["start"] = pd.Timestamp("2008-11-09") + pd.to_timedelta(np.arange(len(seqs)), unit="s")
    frame["end"] = frame["start"]
    frame["label"] = pd.array([0] * 450 + [1] * 50, dtype="Int8")
    (tmp_path / "w" / "windows").mkdir(parents=True)
    pq.write_table(validate_windows(pa.Table.from_pandas(frame, preserve_index=False)),
                   tmp_path / "w" / "windows" / "part-0.parquet")
    rc = main(["compare", "--windows", str(tmp_path / "w"), "--methods", "unseen", "pca", "deeplog",
               "--protocol", "fastlogad", "--split-param", "num_train=300", "--seeds", "0", "1",
               "--device", "cpu", "-o", str(tmp_path / "out")])
    assert rc == 0
    result = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert set(result["aggregate"]) == {"unseen", "pca", "deeplog", "deeplog (paper k=9)"}
    assert len(result["runs"]["pca"]) == 2 and result["split"]["num_test_anomalous"] == 50
    table = (tmp_path / "out" / "comparison.md").read_text()
    assert "oracle F1 (upper bound)" in table and "| pca |" in table
    # the floor: flagging all of a test part with 50 anomalous windows of 200 (p = 0.25)
    assert result["split"]["num_test"] == 200
    assert result["flag_all_f1"]["mean"] == pytest.approx(2 * 0.25 / 1.25)
    assert "Flagging every test window: F1 0.4000" in table
