"""Leave-one-source-out splits and folds, chronological splits of partly timed tables, and
`logad compare` over folds with a line table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logad.errors import ConfigError, DataError
from logad.evaluation.splits import protocol_sources, split_windows
from logad.windows import read_windows, validate_windows

INPUTS = ("/data/casper-rw", "/data/dfrws", "/srv/extra")
LOSO = "leave-one-source-out"


def syslog_windows(inputs=INPUTS, per_input: int = 40, lines: int = 5, seed: int = 0,
                   untimed_every: int = 0) -> pd.DataFrame:
    """Fixed windows of several ingest inputs: normal lines log templates 1-8, an anomalous
    line template 99 (and is labelled so); every ``untimed_every``-th window has no time."""
    rng = np.random.default_rng(seed)
    rows = []
    t0 = pd.Timestamp("2009-03-01")
    for k, inp in enumerate(inputs):
        file = f"{inp}/syslog"
        for w in range(per_input):
            ids = [int(x) for x in rng.integers(1, 9, lines)]
            labels = [0] * lines
            if w % 8 == 5:
                pos = int(rng.integers(0, lines))
                ids[pos], labels[pos] = 99, 1
            first = 1 + w * lines
            timed = not (untimed_every and w % untimed_every == 0)
            start = t0 + pd.Timedelta(minutes=w + k) if timed else pd.NaT
            rows.append({
                "source": "syslog", "window_id": f"{file}#{first}", "start": start,
                "end": start + pd.Timedelta(seconds=30) if timed else pd.NaT,
                "event_ids": ids, "lines": [f"msg E{e}" for e in ids], "label": int(max(labels)),
                "input": inp, "line_files": [file] * lines, "line_numbers": list(range(first, first + lines)),
                "line_labels": labels,
            })
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].astype("Int8")
    return frame


def _write(path: Path, frame: pd.DataFrame) -> Path:
    (path / "windows").mkdir(parents=True)
    pq.write_table(validate_windows(pa.Table.from_pandas(frame, preserve_index=False)),
                   path / "windows" / "part-0.parquet")
    (path / "templates.json").write_text(json.dumps({"templates": []}))
    return path


# -- folds and names ------------------------------------------------------------------------------


def test_folds_are_the_inputs_by_short_name():
    w = syslog_windows()
    assert protocol_sources(w) == ["casper-rw", "dfrws", "extra"]
    assert protocol_sources(w, by="input") == ["casper-rw", "dfrws", "extra"]
    # the same last component twice: enough trailing components to tell them apart
    twins = syslog_windows(inputs=("/a/logs", "/b/logs"), per_input=10)
    assert protocol_sources(twins) == ["a/logs", "b/logs"]
    # several sources: the source column names them, whatever the inputs
    mixed = w.assign(source=np.where(w["input"] == "/srv/extra", "hdfs", "syslog"))
    assert protocol_sources(mixed) == ["hdfs", "syslog"]
    assert protocol_sources(mixed, by="input") == ["casper-rw", "dfrws", "extra"]


def test_one_source_and_bad_parameters_are_refused():
    one = syslog_windows(inputs=("/data/casper-rw",))
    with pytest.raises(DataError, match="two or more sources.*logad ingest CONFIG DIR1 DIR2"):
        protocol_sources(one)
    with pytest.raises(DataError, match="two or more distinct source"):
        split_windows(syslog_windows(), LOSO, holdout="dfrws", by="source")
    w = syslog_windows()
    with pytest.raises(ConfigError, match="unknown holdout 'nope'; sources: casper-rw, dfrws, extra"):
        split_windows(w, LOSO, holdout="nope")
    with pytest.raises(ConfigError, match="needs the source to hold out.*casper-rw, dfrws, extra"):
        split_windows(w, LOSO)
    with pytest.raises(ConfigError, match="by must be one of"):
        split_windows(w, LOSO, holdout="dfrws", by="file")
    with pytest.raises(ConfigError, match="val_fraction"):
        split_windows(w, LOSO, holdout="dfrws", val_fraction=1.5)


@pytest.mark.parametrize("untimed_every", [0, 3])
def test_held_out_source_never_trains_or_validates(untimed_every):
    w = syslog_windows(untimed_every=untimed_every)
    for holdout in protocol_sources(w):
        s = split_windows(w, LOSO, holdout=holdout, seed=0)
        full = next(i for i in INPUTS if i.endswith(holdout))
        held = set(w.loc[w["input"] == full, "window_id"])
        assert set(s.test["window_id"]) == held  # every window labelled: the whole source is tested
        assert not held & (set(s.train["window_id"]) | set(s.val["window_id"]))
        assert not set(s.train["window_id"]) & set(s.val["window_id"])
        assert (s.train["label"] == 0).all() and (s.val["label"] == 0).all()
        d = s.description
        assert d["holdout"] == holdout and d["holdout_value"] == full and d["by"] == "input"
        assert d["train_sources"] == [n for n in protocol_sources(w) if n != holdout]
        assert d["num_test"] == len(held) and d["num_test_anomalous"] == 5
        # validation: the last windows of each training source (in time order where timed)
        for name in d["train_sources"]:
            inp = next(i for i in INPUTS if i.endswith(name))
            tr, va = s.train[s.train["input"] == inp], s.val[s.val["input"] == inp]
            assert len(va) >= 1
            assert va["start"].dropna().min() > tr["start"].dropna().max()
    by_full = split_windows(w, LOSO, holdout="/data/dfrws/")
    assert by_full.description["holdout"] == "dfrws"
    sup = split_windows(w, LOSO, holdout="dfrws", supervised=True)
    assert (sup.train["label"] == 1).any()


def test_unknown_input_is_dropped_and_counted():
    w = syslog_windows()
    w.loc[:4, "input"] = None
    s = split_windows(w, LOSO, holdout="extra")
    assert s.description["num_dropped_unknown_source"] == 5
    assert not set(w["window_id"].iloc[:5]) & (set(s.train["window_id"]) | set(s.val["window_id"]))


# -- chronological with partly missing times ----------------------------------------------------


def test_chronological_splits_timed_and_untimed_windows_apart(tmp_path):
    w = read_windows(_write(tmp_path / "w", syslog_windows(untimed_every=4)))
    timed, untimed = w[w["start"].notna()], w[w["start"].isna()]
    assert len(untimed) == 30 and len(timed) == 90
    s = split_windows(w, "chronological", train_fraction=0.6, val_fraction=0.1)
    d = s.description
    assert d["num_windows_without_time"] == 30
    assert d["num_train_without_time"] == 18 and d["num_test_without_time"] == 12
    cut = pd.Timestamp(d["cut_time"])
    train_val = pd.concat([s.train, s.val])
    assert (train_val["end"].dropna() < cut).all() and (s.test["start"].dropna() >= cut).all()
    # untimed windows: the first 60% in table order (by file, then line) train, the rest test
    order = list(untimed["window_id"])
    assert set(s.test["window_id"]) & set(order) == set(order[18:])
    assert not set(train_val["window_id"]) & set(order[18:])
    assert s.val["start"].isna().any() and s.val["start"].notna().any()  # both groups validate
    used = d["num_train"] + d["num_val"] + d["num_test"]
    assert used + d["num_dropped_straddling"] + d["num_dropped_train_anomalies"] == len(w)
    with pytest.raises(DataError, match="chronological protocol splits tables with partly missing times"):
        split_windows(w, "fastlogad", num_train=20)


# -- compare, train and evaluate --------------------------------------------------------------


def test_compare_runs_every_fold_with_a_line_table(tmp_path, capsys):
    from logad.cli import main

    windows = _write(tmp_path / "w", syslog_windows())
    rc = main(["compare", "--windows", str(windows), "--methods", "unseen", "pca", "--protocol", LOSO,
               "--seeds", "0", "1", "-o", str(tmp_path / "out")])
    assert rc == 0
    result = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert [f["holdout"] for f in result["folds"]] == ["casper-rw", "dfrws", "extra"]
    for fold in result["folds"]:
        assert fold["split"]["holdout"] == fold["holdout"] and fold["split"]["num_test"] == 40
        assert set(fold["aggregate"]) == {"unseen", "pca"} and len(fold["runs"]["pca"]) == 2
        assert set(fold["lines"]["aggregate"]) == {"unseen"}  # only the line-level method
        assert fold["lines"]["aggregate"]["unseen"]["f1"]["mean"] == 1.0  # template 99 is never trained on
    assert result["aggregate"]["unseen"]["f1"]["n"] == 3
    assert result["lines"]["aggregate"]["unseen"]["recall"]["mean"] == 1.0
    md = (tmp_path / "out" / "comparison.md").read_text()
    for name in ("casper-rw", "dfrws", "extra"):
        assert f"### Held out: `{name}`" in md and "Lines (line-level methods" in md
        assert f", held out `{name}`:" in md
    assert "### Mean over 3 folds" in md and "| pca |" in md
    assert result["flag_all_f1"]["n"] == 3 and "Flagging every test window" in md
    assert "every source held out in turn (casper-rw, dfrws, extra)" in md
    out = capsys.readouterr().out
    assert "[dfrws] seed 1: unseen" in out and "line F1" in out

    # one fold when holdout is given; other protocols keep one table (and gain the line table)
    assert main(["compare", "--windows", str(windows), "--methods", "unseen", "--protocol", LOSO,
                 "--split-param", "holdout=extra", "-o", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "comparison.json").read_text())
    assert "folds" not in one and one["split"]["holdout"] == "extra" and "unseen" in one["lines"]["aggregate"]
    assert "held out `extra`" in (tmp_path / "one" / "comparison.md").read_text()
    assert main(["compare", "--windows", str(windows), "--methods", "pca", "-o", str(tmp_path / "chrono")]) == 0
    chrono = json.loads((tmp_path / "chrono" / "comparison.json").read_text())
    assert "lines" not in chrono and "Lines" not in (tmp_path / "chrono" / "comparison.md").read_text()


def test_folds_keep_each_line_level_methods_line_scores_when_asked():
    from logad.commands.compare import compare_folds
    from logad.evaluation.lines import line_frame

    w = syslog_windows()
    result = compare_folds(w, ["unseen", "pca"], {}, [0], {}, device="cpu", keep_scores=True, log=lambda _: None)
    for fold in result["folds"]:
        kept = fold["scores"][0]
        test = kept["test"]
        assert test["input"].nunique() == 1 and test["input"].iloc[0].endswith(fold["holdout"])
        assert set(kept["lines"]) == {"unseen"}  # pca scores windows only
        scores, cut = kept["lines"]["unseen"]
        assert len(scores) == sum(len(x) for x in test["event_ids"])
        frame = line_frame(test, scores, cut)
        assert ((frame["score"] > cut) == (frame["label"] == 1)).all()  # template 99: flagged, the rest not
        window_scores, window_cut = kept["pca"]
        assert len(window_scores) == len(test) and np.isfinite(window_cut)
    assert "scores" not in compare_folds(w, ["unseen"], {}, [0], {}, log=lambda _: None)["folds"][0]


def _cli(argv: list[str]) -> int:
    from logad.commands import evaluate, train

    parser = argparse.ArgumentParser(prog="logad")
    sub = parser.add_subparsers(dest="command")
    train.register(sub)
    evaluate.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_train_and_evaluate_hold_out_a_source(tmp_path, capsys):
    windows = _write(tmp_path / "w", syslog_windows())
    model = tmp_path / "model"
    assert _cli(["train", "--method", "unseen", "--windows", str(windows), "--output", str(model),
                 "--protocol", LOSO, "--split-param", "holdout=dfrws"]) == 0
    out = capsys.readouterr().out
    assert "held out 'dfrws' (by input; test part), trained on casper-rw, extra" in out
    training = json.loads((model / "training.json").read_text())
    assert training["split_params"] == {"holdout": "dfrws"} and training["split"]["holdout"] == "dfrws"
    report = tmp_path / "report"
    assert _cli(["evaluate", str(model), "--windows", str(windows), "--protocol", LOSO,
                 "--report", str(report)]) == 0
    assert "held out 'dfrws'" in capsys.readouterr().out
    counts = json.loads((report / "report.json").read_text())["counts"]
    assert counts["holdout"] == "dfrws" and counts["train_sources"] == ["casper-rw", "extra"]
    assert counts["num_windows"] == 40
    # another split parameter keeps the training holdout
    assert _cli(["evaluate", str(model), "--windows", str(windows), "--protocol", LOSO,
                 "--split-param", "val_fraction=0.2", "--report", str(tmp_path / "r2")]) == 0
    assert json.loads((tmp_path / "r2" / "report.json").read_text())["counts"]["holdout"] == "dfrws"
