"""Line-level labels, references and scores end to end: ingest → table → train → evaluate.

Real fixtures (the forensic syslog slices with keyword labels, BGL 2k with its own
labels), a real local Ray, the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import zstandard

from logad.cli import main
from logad.pipelines.ingest import run_ingest
from logad.sources.config import load_source_config
from logad.windows import read_windows

ROOT = Path(__file__).resolve().parents[2]
DATA_PIPELINES = ROOT / "data_pipelines"
FORENSIC = ROOT / "tests" / "fixtures" / "forensic"
BGL = ROOT / "tests" / "fixtures" / "loghub_2k" / "BGL_2k.log.zst"

pytestmark = pytest.mark.usefixtures("ray_session")


def _ingest(config, inputs, out, **kw):
    return run_ingest(config, [str(i) for i in inputs], str(out), progress=False, log=lambda _: None, **kw)


def _line_rows(windows: pd.DataFrame) -> list[tuple]:
    return [(f, n, text, lab) for r in windows.itertuples()
            for f, n, text, lab in zip(r.line_files, r.line_numbers, r.lines, r.line_labels, strict=True)]


def _file_lines(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8", errors="replace").split("\n")


@pytest.fixture(scope="module")
def forensic_train(tmp_path_factory):
    out = tmp_path_factory.mktemp("forensic") / "train"
    config = load_source_config(DATA_PIPELINES / "syslog.yaml")
    summary = _ingest(config, [FORENSIC / "casper", FORENSIC / "dfrws"], out)
    return summary, out


def test_every_forensic_line_points_back_to_its_file_and_line(forensic_train):
    summary, out = forensic_train
    windows = read_windows(out)
    rows = _line_rows(windows)
    total = sum(1 for p in FORENSIC.glob("*/*") for line in _file_lines(str(p))[:-1] if line.strip())
    assert summary.empty_lines > 0  # dmesg slices hold blank lines: skipped, and still counted as lines
    assert len(rows) == summary.lines_parsed == total  # fixed windows without overlap: each line once
    assert len({(f, n) for f, n, _, _ in rows}) == len(rows)
    cache: dict[str, list[str]] = {}
    for f, n, text, _ in rows:
        lines = cache.setdefault(f, _file_lines(f))
        assert lines[n - 1] == text, (f, n)
    # the input folder each window came from, as given
    assert set(windows["input"]) == {str(FORENSIC / "casper"), str(FORENSIC / "dfrws")}
    assert all(str(f).startswith(i + "/") for r in windows.itertuples() for f in r.line_files for i in [r.input])


def test_keyword_labels_match_a_hand_checked_sample(forensic_train):
    summary, out = forensic_train
    label = {(Path(f).parent.name, Path(f).name, n): lab for f, n, _, lab in _line_rows(read_windows(out))}
    checked = {  # read by hand against the bundled lists (src/logad/data/wordlists)
        ("casper", "auth.log", 1): 0,    # session opened for user ubuntu
        ("casper", "auth.log", 2): 1,    # "... ignoring PAM_TTY :0" (auth: "ignoring pam_tty")
        ("casper", "auth.log", 12): 1,   # authentication failure
        ("casper", "auth.log", 14): 1,   # FAILED su for root (auth: "failed su", lower-cased)
        ("casper", "auth.log", 15): 0,   # - pts/0 ubuntu:root
        ("casper", "auth.log", 20): 0,   # sudo: ... COMMAND=/bin/bash
        ("casper", "daemon.log", 1): 0,  # Found user 'avahi' ...
        ("casper", "daemon.log", 6): 1,  # open() failed
        ("casper", "daemon.log", 7): 1,  # Failed to open /etc/resolv.conf: Invalid argument
        ("casper", "dmesg.0", 1): 0,     # Initializing cgroup subsys cpuset
        ("casper", "dmesg.0", 60): 1,    # ... lapic_id[0x01] disabled) (dmesg: "disable")
        ("casper", "kern.log", 2): 0,    # Cannot find map file.
        ("casper", "kern.log", 63): 1,   # ... disabled) (kern: "disable")
    }
    assert {k: label[k] for k in checked} == checked
    assert summary.lines_labelled == summary.lines_parsed
    assert 0 < summary.lines_labelled_anomalous < summary.lines_labelled
    windows = read_windows(out)
    # a window is anomalous when any of its lines is
    assert list(windows["label"].astype(int)) == [int(max(x)) for x in windows["line_labels"]]


def test_unseen_line_report_on_a_held_out_source(tmp_path, forensic_train):
    """The plumbing of the forensic bar: train on two sources, test a third parsed with the
    training templates, and get one row per test line keyed by file and line number."""
    _, train = forensic_train
    test_dir = tmp_path / "test-src"  # a third "source": a folder the model never saw
    test_dir.mkdir()
    lines = _file_lines(str(FORENSIC / "casper" / "auth.log"))[:-1]
    (test_dir / "auth.log").write_text("\n".join(lines[:100]) + "\n")
    (test_dir / "daemon.log").write_text(
        "\n".join(_file_lines(str(FORENSIC / "dfrws" / "daemon.log"))[:80]) + "\n")
    (test_dir / "debug").write_text("Jan  2 10:00:00 host kernel: not supported here\n"
                                    "Jan  2 10:00:01 host kernel: all fine\n")
    config = str(DATA_PIPELINES / "syslog.yaml")
    assert main(["ingest", config, str(test_dir), "--output", str(tmp_path / "test"),
                 "--templates", str(train / "templates.json")]) == 0
    assert main(["train", "--method", "unseen", "--windows", str(train), "--output", str(tmp_path / "m"),
                 "--seed", "0"]) == 0
    assert main(["evaluate", str(tmp_path / "m"), "--windows", str(tmp_path / "test"),
                 "--report", str(tmp_path / "r")]) == 0
    ls = pd.read_parquet(tmp_path / "r" / "line_scores.parquet")
    assert list(ls.columns) == ["file", "line", "window_id", "score", "threshold", "verdict", "label"]
    expected = {(str(test_dir / "auth.log"), n) for n in range(1, 101)} | \
        {(str(test_dir / "daemon.log"), n) for n in range(1, 81)} | {(str(test_dir / "debug"), n) for n in (1, 2)}
    assert set(zip(ls["file"], ls["line"], strict=True)) == expected and len(ls) == len(expected)
    row = ls[(ls["file"] == str(test_dir / "debug"))].set_index("line")
    assert row.loc[1, "label"] == 1 and row.loc[2, "label"] == 0  # debug: "not supported"
    assert set(ls["verdict"]) <= {0, 1} and (ls["threshold"] == 0.5).all()
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["lines"]["counts"]["num_lines"] == len(expected)
    assert "heuristic" in report["labels_note"]
    assert {"line_scores.parquet", "line_score_distribution.png"} <= set(report["files"])


@pytest.fixture(scope="module")
def bgl_split(tmp_path_factory):
    """BGL 2k's 1,500 fixture lines: the first 1,000 to train, the last 500 to test."""
    root = tmp_path_factory.mktemp("bgl")
    text = zstandard.ZstdDecompressor().decompress(BGL.read_bytes()).decode()
    lines = text.splitlines()
    (root / "train").mkdir()
    (root / "test").mkdir()
    (root / "train" / "BGL_train.log").write_text("\n".join(lines[:1000]) + "\n")
    (root / "test" / "BGL_test.log").write_text("\n".join(lines[1000:]) + "\n")
    return root, lines


def test_bgl_line_labels_survive_and_each_line_is_scored_once(tmp_path, bgl_split):
    root, lines = bgl_split
    config = str(DATA_PIPELINES / "bgl.yaml")
    assert main(["ingest", config, str(root / "train"), "--output", str(tmp_path / "train")]) == 0
    assert main(["ingest", config, str(root / "test"), "--output", str(tmp_path / "test"),
                 "--templates", str(tmp_path / "train" / "templates.json")]) == 0
    windows = read_windows(tmp_path / "test")
    test_file = str(root / "test" / "BGL_test.log")
    truth = {n: int(not line.startswith("- ")) for n, line in enumerate(lines[1000:], start=1)}
    copies: dict[int, int] = {}
    for f, n, text, lab in _line_rows(windows):
        # the label field is cut from the kept line (it is the dataset's, not the log's)
        assert f == test_file and lines[999 + n].split(" ", 1)[1] == text and lab == truth[n]
        copies[n] = copies.get(n, 0) + 1
    assert max(copies.values()) == 5  # 5-minute windows every minute: a line sits in up to 5
    assert main(["train", "--method", "unseen", "--windows", str(tmp_path / "train"),
                 "--output", str(tmp_path / "m")]) == 0
    assert main(["evaluate", str(tmp_path / "m"), "--windows", str(tmp_path / "test"),
                 "--report", str(tmp_path / "r")]) == 0
    ls = pd.read_parquet(tmp_path / "r" / "line_scores.parquet")
    timed = set(copies)  # every line with a readable time is in a window
    assert len(ls) == len(timed) and list(ls["line"]) == sorted(timed) and set(ls["file"]) == {test_file}
    assert dict(zip(ls["line"], ls["label"].astype(int), strict=True)) == {n: truth[n] for n in timed}


def test_plain_file_read_in_byte_ranges_keeps_file_line_numbers(tmp_path, bgl_split):
    """A big plain file is read as byte ranges by several tasks; line numbers are still
    the file's (the driver adds the lines of the ranges before each)."""
    _, lines = bgl_split
    blank = lines[:300] + [""] + lines[300:]  # an empty line still counts as a line
    path = tmp_path / "bgl.log"
    path.write_text("\n".join(blank) + "\n")
    config = load_source_config(DATA_PIPELINES / "bgl.yaml")
    summary = _ingest(config, [path], tmp_path / "out", shard_bytes=20_000)
    assert summary.files == 1 and summary.empty_lines == 1
    seen = {}
    for f, n, text, _ in _line_rows(read_windows(tmp_path / "out")):
        assert blank[n - 1].split(" ", 1)[1] == text  # without the label field
        seen[n] = f
    assert set(seen.values()) == {str(path)} and len(seen) == len(lines)


def test_two_training_hosts_keep_the_feature_groups_that_carry_to_the_other(tmp_path, forensic_train):
    """With labelled lines from two hosts, the classical pipeline holds each out in turn and
    keeps the feature groups that score the held-out host better at a cut the other host
    chose; the figures are those of a model fitted on one host scoring the other, and the
    chosen groups are the saved model's."""
    import numpy as np

    from logad.methods import load_detector
    from logad.methods.classical import Classical
    from logad.methods.classical.features import flatten_lines

    _, out = forensic_train
    windows = read_windows(out)
    k = np.arange(len(windows))
    train, val = windows[k % 5 != 0], windows[k % 5 == 0]
    tiny = dict(n_estimators=40, max_depth=4, cv_folds=2, n_jobs=1, device="cpu", seed=0)
    det = Classical(tiny)
    report = det.fit(train, val)
    by = report.extra["feature_groups_by_source"]
    hosts = [str(FORENSIC / "casper"), str(FORENSIC / "dfrws")]
    assert by["sources"] == hosts
    tried = by["tried"]
    assert tried["feature_groups"]["groups"] == Classical(tiny).config.feature_groups
    assert tried["transfer_groups"]["groups"] == ["tfidf", "file"]
    for t in tried.values():
        assert sorted(t["held_out_f1"]) == hosts
        assert t["mean_f1"] == pytest.approx(np.mean(list(t["held_out_f1"].values())))
    best = "transfer_groups" if tried["transfer_groups"]["mean_f1"] > tried["feature_groups"]["mean_f1"] \
        else "feature_groups"
    assert by["chosen"] == best and by["groups"] == tried[best]["groups"]
    assert det.config.feature_groups == det.featurizer.config.groups == report.extra["feature_groups"] == by["groups"]
    assert report.notes == [n for n in report.notes if n.startswith(f"feature groups {'+'.join(by['groups'])}: ")] != []

    # one fold by hand: fitted on casper alone (its cut from cross-validation), scoring dfrws
    one = Classical(tiny | {"feature_groups": ["tfidf", "file"], "transfer_groups": None})
    one.fit(train[train["input"] == hosts[0]], val.iloc[:0])
    assert "feature_groups_by_source" not in one.fit_report.extra  # one host: nothing to try
    held = train[train["input"] == hosts[1]]
    x, y = one._samples(held, flatten_lines(held))
    flagged = one.model.proba(x) >= one.threshold
    f1 = 2 * (flagged & (y == 1)).sum() / (flagged.sum() + (y == 1).sum())
    assert tried["transfer_groups"]["held_out_f1"][hosts[1]] == pytest.approx(f1)

    det.save(tmp_path / "m")
    loaded = load_detector(tmp_path / "m")
    assert loaded.config.feature_groups == by["groups"]
    np.testing.assert_array_equal(loaded.score_lines(val), det.score_lines(val))
