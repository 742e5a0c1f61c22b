"""Split protocols, metrics, threshold strategies, reports, and the train/evaluate commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logad.errors import ConfigError, DataError, UnknownNameError
from logad.evaluation import (
    aggregate_runs,
    available_protocols,
    available_threshold_strategies,
    binary_metrics,
    choose_threshold,
    evaluate_scores,
    split_windows,
    write_report,
)
from logad.methods import load_detector
from logad.registry import ModelRegistry, RegistryError
from logad.windows import validate_windows

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hdfs_eventid"


def _sessions(name: str) -> list[list[int]]:
    return [[int(x) for x in line.split()] for line in (FIXTURE / name).read_text().splitlines()]


def hdfs_windows(num_normal: int = 600, num_abnormal: int = 100, seed: int = 0) -> pd.DataFrame:
    """Real HDFS sessions, interleaved in time at random, each lasting 1-30 s."""
    normal, abnormal = _sessions("hdfs_train")[:num_normal], _sessions("hdfs_test_abnormal")[:num_abnormal]
    seqs = normal + abnormal
    labels = [0] * len(normal) + [1] * len(abnormal)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(seqs))
    start = pd.Timestamp("2008-11-09 20:00:00") + pd.to_timedelta(np.arange(len(seqs)) * 2, unit="s")
    duration = pd.to_timedelta(rng.integers(1, 30, len(seqs)), unit="s")
    return pd.DataFrame({
        "source": "hdfs",
        "window_id": [f"blk_{i}" for i in order],
        "start": start,
        "end": start + duration,
        "event_ids": [seqs[i] for i in order],
        "lines": [[f"E{e}" for e in seqs[i]] for i in order],
        "label": pd.array([labels[i] for i in order], dtype="Int8"),
    })


# -- splits ----------------------------------------------------------------------------------


def test_protocol_registry():
    assert set(available_protocols()) >= {"chronological", "fastlogad", "random-session", "leave-one-source-out"}
    with pytest.raises(UnknownNameError, match="known: chronological, fastlogad, leave-one-source-out, random-lines, random-session"):
        split_windows(hdfs_windows(), "no-such-protocol")


def test_chronological_never_straddles_the_cut():
    w = hdfs_windows()
    s = split_windows(w, "chronological", train_fraction=0.6, val_fraction=0.1)
    cut = pd.Timestamp(s.description["cut_time"])
    assert (s.train["end"] < cut).all() and (s.val["end"] < cut).all()
    assert (s.test["start"] >= cut).all()
    assert s.description["num_dropped_straddling"] > 0  # sessions last up to 30 s, 2 s apart
    assert (s.train["label"] == 0).all() and (s.val["label"] == 0).all()
    assert s.val["start"].min() >= s.train["start"].max()  # validation is the end of the train part
    d = s.description
    used = d["num_train"] + d["num_val"] + d["num_test"]
    assert used + d["num_dropped_straddling"] + d["num_dropped_train_anomalies"] == len(w)
    ids = [set(p["window_id"]) for p in (s.train, s.val, s.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    sup = split_windows(w, "chronological", supervised=True)
    assert (sup.train["label"] == 1).any()


def test_chronological_without_times_keeps_table_order():
    w = hdfs_windows().assign(start=pd.NaT, end=pd.NaT)
    s = split_windows(w, "chronological", train_fraction=0.5)
    assert s.description["num_dropped_straddling"] == 0
    assert set(s.test["window_id"]) <= set(w["window_id"].iloc[350:])


def test_fixed_windows_without_times_read_back_in_log_order(tmp_path):
    """Ids FILE#LINE sort by file, then line number (not as text: #100 after #90)."""
    from logad.windows import read_windows

    ids = ["b.log#0", "a.log#100", "a.log#90", "a.log#0", "a.log#1000", "a.log#10"]
    frame = hdfs_windows().iloc[: len(ids)].assign(window_id=ids, start=pd.NaT, end=pd.NaT)
    got = read_windows(_write_windows_dir(tmp_path / "w", frame))["window_id"].tolist()
    assert got == ["a.log#0", "a.log#10", "a.log#90", "a.log#100", "a.log#1000", "b.log#0"]


def test_fastlogad_protocol():
    w = hdfs_windows()
    s = split_windows(w, "fastlogad", num_train=400, seed=1)
    normals = w.sort_values("start")
    first = set(normals[normals["label"] == 0]["window_id"].iloc[:400])
    assert set(s.train["window_id"]) | set(s.val["window_id"]) == first
    assert len(s.val) == 40 and len(s.train) == 360
    assert s.description["num_test_anomalous"] == 100  # every anomaly is tested
    assert len(s.test) == 700 - 400
    # validation is the last 10% of the training normals in time (default) ...
    assert s.val["start"].min() > s.train["start"].max()
    # ... or a seeded random 10%
    r1 = split_windows(w, "fastlogad", num_train=400, seed=1, val_order="random")
    r2 = split_windows(w, "fastlogad", num_train=400, seed=1, val_order="random")
    assert list(r1.val["window_id"]) == list(r2.val["window_id"]) != list(s.val["window_id"])
    assert set(r1.train["window_id"]) | set(r1.val["window_id"]) == first
    frac = split_windows(w, "fastlogad", num_train=0.5)
    assert len(frac.train) + len(frac.val) == 300
    with pytest.raises(DataError, match="num_train"):
        split_windows(w, "fastlogad", num_train=600)
    with pytest.raises(ConfigError):
        split_windows(w, "fastlogad", no_such_param=3)


def test_random_session_is_seeded_and_disjoint():
    w = hdfs_windows()
    a = split_windows(w, "random-session", seed=3)
    b = split_windows(w, "random-session", seed=3)
    c = split_windows(w, "random-session", seed=4)
    assert list(a.test["window_id"]) == list(b.test["window_id"]) != list(c.test["window_id"])
    assert not set(a.train["window_id"]) & set(a.test["window_id"])
    assert (a.train["label"] == 0).all()


# -- metrics and thresholds ------------------------------------------------------------------------


def test_binary_metrics_known_values():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.7, 0.8, 0.3])
    m = binary_metrics(y, s, threshold=0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 1, 1, 2)
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    assert m["auroc"] == pytest.approx(5 / 6)
    assert 0 < m["aupr"] <= 1
    with pytest.raises(DataError):
        binary_metrics([0, 2], [0.1, 0.2], 0.5)


def test_aggregate_runs():
    agg = aggregate_runs([{"f1": 0.9}, {"f1": 0.8}, {"f1": 1.0}])
    assert agg["f1"]["mean"] == pytest.approx(0.9) and agg["f1"]["std"] == pytest.approx(0.1)
    assert agg["f1"]["n"] == 3


def test_label_free_threshold_never_sees_test_labels():
    rng = np.random.default_rng(0)
    val_scores = rng.normal(0, 1, 500)
    test_scores = np.r_[rng.normal(0, 1, 300), rng.normal(4, 1, 30)]
    test_labels = np.r_[np.zeros(300), np.ones(30)]
    choice = choose_threshold("label-free", val_scores=val_scores, quantile=0.99)
    assert choice.value == pytest.approx(np.quantile(val_scores, 0.99)) and not choice.uses_test_labels
    # The strategy cannot even be handed test data ...
    with pytest.raises(TypeError):
        choose_threshold("label-free", val_scores=val_scores, test_labels=test_labels)
    # ... and the evaluation's headline threshold is the same whatever the test labels say.
    honest = evaluate_scores(test_scores, test_labels, choice.value)
    poisoned = evaluate_scores(test_scores, 1 - test_labels, choice.value)
    assert honest["metrics"]["threshold"] == poisoned["metrics"]["threshold"] == choice.value
    assert honest["oracle_upper_bound"]["threshold"] != poisoned["oracle_upper_bound"]["threshold"]
    # Known anomalies in validation are left out of the reference set.
    with_anomaly = choose_threshold("label-free", val_scores=np.r_[val_scores, 100.0],
                                    val_labels=np.r_[np.zeros(500), 1])
    assert with_anomaly.value == choice.value


def test_validation_tuned_and_oracle():
    assert set(available_threshold_strategies()) == {"label-free", "oracle", "validation-tuned"}
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.9])
    v = choose_threshold("validation-tuned", val_scores=s, val_labels=y)
    assert binary_metrics(y, s, v.value)["f1"] == pytest.approx(0.8)
    with pytest.raises(DataError, match="both normal and anomalous"):
        choose_threshold("validation-tuned", val_scores=s, val_labels=np.zeros(6))
    o = choose_threshold("oracle", test_scores=s, test_labels=y)
    assert o.uses_test_labels and "UPPER BOUND" in o.note
    with pytest.raises(UnknownNameError):
        choose_threshold("best-guess", val_scores=s)


def test_write_report(tmp_path):
    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(0, 1, 200), rng.normal(3, 1, 20), rng.normal(0, 1, 5)]
    labels = pd.array([0] * 200 + [1] * 20 + [None] * 5, dtype="Int8")
    ids = [f"w{i}" for i in range(len(scores))]
    report = write_report(tmp_path, scores=scores, labels=labels, window_ids=ids, threshold=2.0,
                          method="fastlogad", counts={"protocol": "fastlogad"}, timings={"score_s": 0.5})
    on_disk = json.loads((tmp_path / "report.json").read_text())
    for key in ("precision", "recall", "f1", "auroc", "aupr", "threshold", "oracle_upper_bound", "counts", "timings"):
        assert key in on_disk
    assert on_disk["threshold"] == 2.0 and on_disk["counts"]["num_labelled"] == 220
    assert "UPPER BOUND" in on_disk["oracle_upper_bound"]["note"]
    assert on_disk["f1"] == pytest.approx(report["f1"])
    frame = pd.read_parquet(tmp_path / "scores.parquet")
    assert list(frame.columns) == ["window_id", "score", "label", "verdict"] and len(frame) == 225
    assert (frame["verdict"] == (frame["score"] > 2.0)).all()
    for png in ("score_distribution.png", "precision_recall.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert "UPPER BOUND" in (tmp_path / "report.md").read_text()


# -- the train / evaluate commands ---------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    from logad.commands import evaluate, train

    parser = argparse.ArgumentParser(prog="logad")
    sub = parser.add_subparsers(dest="command")
    train.register(sub)
    evaluate.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def _write_windows_dir(path: Path, frame: pd.DataFrame) -> Path:
    (path / "windows").mkdir(parents=True)
    table = validate_windows(pa.Table.from_pandas(frame, preserve_index=False))
    pq.write_table(table, path / "windows" / "part-0.parquet")
    (path / "templates.json").write_text(json.dumps({"templates": []}))
    return path


def test_train_and_evaluate_commands(tmp_path, capsys):
    windows = _write_windows_dir(tmp_path / "ingest", hdfs_windows())
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({
        "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
        "generator_hidden_size": 16, "generator_num_heads": 2, "generator_intermediate_size": 32,
        "warmup_epochs": 1, "learning_rate": 1e-3, "hst_learning_rate": 1e-2, "min_hst_steps": 0,
    }))
    model = tmp_path / "model"
    rc = _cli(["train", "--method", "fastlogad", "--windows", str(windows), "--output", str(model),
               "--protocol", "fastlogad", "--split-param", "num_train=400", "--epochs", "12",
               "--seed", "1", "--device", "cpu", "--config", str(config), "--no-progress",
               "--registry", str(tmp_path / "reg"), "--source", "hdfs"])
    out = capsys.readouterr().out
    assert rc == 0 and "split 'fastlogad'" in out and "label-free" in out and "UPPER BOUND" in out
    assert "registered hdfs/fastlogad/v1" in out and "(production, serving)" in out
    registered = ModelRegistry(tmp_path / "reg").get("hdfs")
    assert registered.threshold == pytest.approx(load_detector(model).threshold)
    assert 0 <= registered.metrics["f1"] <= 1
    assert {"config.json", "model.safetensors", "templates.json", "training.json"} <= {p.name for p in model.iterdir()}
    training = json.loads((model / "training.json").read_text())
    assert training["split_params"] == {"num_train": 400} and training["seed"] == 1

    report = tmp_path / "report"
    assert _cli(["evaluate", str(model), "--windows", str(windows), "--protocol", "fastlogad",
                 "--report", str(report)]) == 0
    result = json.loads((report / "report.json").read_text())
    assert result["counts"]["num_windows"] == 300 and result["counts"]["split_seed"] == 1
    assert 0 <= result["f1"] <= 1 and result["auroc"] > 0.8

    assert _cli(["evaluate", str(model), "--windows", str(windows)]) == 0
    assert "every window is test data" in capsys.readouterr().out


def test_train_command_errors(tmp_path, capsys):
    windows = _write_windows_dir(tmp_path / "ingest", hdfs_windows(50, 10))
    with pytest.raises(ConfigError, match="need --registry"):
        _cli(["train", "--method", "fastlogad", "--windows", str(windows), "--output",
              str(tmp_path / "m"), "--source", "hdfs"])
    with pytest.raises(RegistryError, match="invalid source name"):  # refused before training
        _cli(["train", "--method", "fastlogad", "--windows", str(windows), "--output",
              str(tmp_path / "m"), "--registry", str(tmp_path / "reg"), "--source", "../../etc"])
    assert not (tmp_path / "m").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("hidden_szie: 64\n")
    with pytest.raises(ConfigError, match=r"hidden_szie.*bad.yaml"):
        _cli(["train", "--method", "fastlogad", "--windows", str(windows), "--output",
              str(tmp_path / "m"), "--config", str(bad)])
    with pytest.raises(UnknownNameError, match="known: .*fastlogad"):
        _cli(["train", "--method", "nope", "--windows", str(windows), "--output", str(tmp_path / "m")])


def test_random_lines_split_is_stratified_and_keeps_every_window_for_context():
    from logad.evaluation.splits import split_windows

    rng = np.random.default_rng(0)
    n = 50
    labels = [[int(v) for v in rng.random(10) < 0.2] for _ in range(n)]
    frame = pd.DataFrame({
        "window_id": [f"w{i}" for i in range(n)], "event_ids": [[1] * 10] * n,
        "line_files": [["a.log"] * 10] * n, "line_numbers": [list(range(10 * i + 1, 10 * i + 11)) for i in range(n)],
        "line_labels": labels, "label": pd.array([max(x) for x in labels], dtype="Int8"),
    })
    split = split_windows(frame, "random-lines", supervised=True, seed=100)
    parts = [split.train, split.val, split.test]
    owned = [{(n_, v) for r in p.itertuples() for n_, v in zip(r.line_numbers, r.line_labels, strict=True)
              if v is not None} for p in parts]
    # each labelled line in exactly one part, the parts 60/20/20 of each class
    assert sum(len(o) for o in owned) == n * 10 and len(set().union(*owned)) == n * 10
    total = np.array([v for r in labels for v in r])
    for value in (0, 1):
        shares = [sum(1 for _, v in o if v == value) / (total == value).sum() for o in owned]
        np.testing.assert_allclose(shares, [0.6, 0.2, 0.2], atol=0.02)
    assert len(split.train) == n and len(split.val) == n  # every window, for the lines' context
    assert "leaky" in split.description


def test_the_cross_source_cut_weighs_every_source_the_same():
    from logad.methods._thresholds import best_f1_cut, macro_f1_cut, source_f1

    # source a: 90 of 100 lines anomalous, its normal lines score like anomalies (0.9); source b:
    # 5 of 100 anomalous, cleanly separated at 0.5 (normals 0.3, anomalies 0.7)
    y = np.r_[np.ones(90), np.zeros(10), np.ones(5), np.zeros(95)].astype(int)
    s = np.r_[np.full(90, 0.95), np.full(10, 0.9), np.full(5, 0.7), np.full(95, 0.3)]
    g = np.array(["a"] * 100 + ["b"] * 100, dtype=object)
    pooled, _ = best_f1_cut(y, s)
    cut, note = macro_f1_cut(y, s, g)
    per = source_f1(y, s, g, cut)
    # pooled, source a's 90 anomalies decide and b's clean cut is lost; the mean over sources keeps it
    assert source_f1(y, s, g, pooled)["b"] < 1.0
    assert 0.3 <= cut < 0.7 and per["b"] == 1.0 and per["a"] == pytest.approx(2 * 90 / (100 + 90))
    assert "best mean F1 over 2 sources" in note
    # a source with one class only is left out of the mean
    one = np.array(["a"] * 100 + ["c"] * 100, dtype=object)
    y_one = np.r_[y[:100], np.zeros(100, int)]
    cut_one, note_one = macro_f1_cut(y_one, s, one)
    assert "over 1 sources" in note_one and cut_one < 0.95
