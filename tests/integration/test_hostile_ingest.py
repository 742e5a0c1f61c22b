"""`logad ingest`, run as a user runs it, over a corpus of hostile files mixed with real lines.

The corpus is made at test time (tests/hostile_corpus.py): undecodable and NUL bytes,
a crash's run of NULs, binary files, a 40 MB line, CRLF and missing final line breaks,
corrupt and truncated .zst/.gz files, misnamed compressed files, empty and blank files,
dangling and looping links, a second name of a file, unreadable files and a named pipe.
Every good line must come out with its file and line number, and every bad thing must be
in summary.json with its file (and, for compressed files, the compressed byte offset).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hostile_corpus  # noqa: E402

from logad.windows import read_windows  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA_PIPELINES = ROOT / "data_pipelines"


def _logad(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the CLI in its own process group, killed whole (Ray's processes too) on a timeout."""
    proc = subprocess.Popen([sys.executable, "-m", "logad.cli", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"logad {' '.join(args)} ran past {timeout}s (a hang?):\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _ingest(tmp: Path, family: str, config: str, *extra: str, **build) -> dict:
    folder = tmp / "in"
    planted = hostile_corpus.build(folder, family, **build)
    out = tmp / "out"
    run = _logad("ingest", str(DATA_PIPELINES / config), str(folder), "--output", str(out), "--no-progress",
                 "--num-cpus", "2", *extra)
    return {"folder": str(folder), "planted": planted, "run": run, "out": out,
            "summary": json.loads((out / "summary.json").read_text()) if run.returncode == 0 else None}


def _lines_out(r: dict) -> dict[tuple[str, int], list[str]]:
    """(file relative to the corpus, line number) → the texts the windows table holds there."""
    got: dict[tuple[str, int], list[str]] = {}
    prefix = r["folder"] + "/"
    for files, nums, lines in zip(*(read_windows(r["out"])[c] for c in ("line_files", "line_numbers", "lines")),
                                  strict=True):
        for f, n, text in zip(files, nums, lines, strict=True):
            assert f.startswith(prefix), f
            got.setdefault((f[len(prefix):], n), []).append(text)
    return got


def _rel(r: dict, path: str) -> str:
    assert path.startswith(r["folder"] + "/"), path
    return path[len(r["folder"]) + 1:]


@pytest.fixture(scope="module")
def syslog_run(tmp_path_factory):
    return _ingest(tmp_path_factory.mktemp("hostile-syslog"), "syslog", "syslog.yaml")


def test_ingest_exits_cleanly_without_a_traceback(syslog_run):
    run = syslog_run["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert "lines too long, skipped" in run.stdout and "ERROR" in run.stdout


def test_every_good_line_is_in_the_windows_table_at_its_file_and_line(syslog_run):
    r = syslog_run
    p = r["planted"]
    got = _lines_out(r)
    missing = {k: v for k, v in p.good.items() if got.get(k) != [v]}  # fixed windows: each line once
    assert not missing, f"{len(missing)} of {len(p.good)} good lines lost or changed, e.g. {list(missing.items())[:3]}"
    extra = {k for k in got if k not in p.good and k[0] not in p.may_add_lines}
    assert not extra, f"lines nobody planted: {sorted(extra)[:5]}"
    for rel, want in p.after_gap.items():  # the frames after a corrupt one, read on at the next good one
        tail = [got[k][0] for k in sorted(k for k in got if k[0] == rel)][-len(want):]
        assert tail == want, f"{rel}: the lines after its bad frame are lost or changed"
    s = r["summary"]
    assert s["lines_without_window"] == 0
    # lines read = every line of every file read (good, repaired, blank, too long, garbled)
    assert s["lines_read"] == s["lines_parsed"] + s["empty_lines"] + s["lines_too_long"]


def test_every_file_level_problem_is_reported_with_its_file_and_offset(syslog_run):
    r = syslog_run
    p, s = r["planted"], r["summary"]
    errors = {_rel(r, e["file"]): e for e in s["errors"]}
    assert set(errors) == set(p.errors), (sorted(errors), sorted(p.errors))
    for rel, (kind, lo, hi) in p.errors.items():
        e = errors[rel]
        assert e["kind"] == kind, e
        assert lo <= e["offset"] <= hi, (rel, e, lo, hi)
        assert e["error"]
    warnings = {_rel(r, w["file"]): w["kind"] for w in s["warnings"]}
    assert warnings == p.warnings
    skipped = [k for k, (kind, _, _) in p.errors.items() if kind not in ("corrupt", "truncated")]
    assert s["files_skipped"] == len(skipped)


def test_every_line_level_problem_is_counted_with_its_file_and_lines(syslog_run):
    r = syslog_run
    p, s = r["planted"], r["summary"]
    found = {(_rel(r, x["file"]), x["kind"]): x for x in s["line_problems"]}
    for key, lines in p.line_problems.items():
        x = found.pop(key, None)
        assert x is not None, f"{key} not reported"
        assert x["count"] == len(lines), (key, x["count"], len(lines))
        assert x["lines"] == sorted(lines)[:10], (key, x["lines"])
    assert all(f in p.may_add_lines for f, _ in found), f"problems nobody planted: {found}"
    by_kind = {k: sum(len(v) for (_, kind), v in p.line_problems.items() if kind == k)
               for k in ("too_long", "nul_bytes", "replaced_bytes")}
    assert s["lines_too_long"] == by_kind["too_long"] == 1
    garbled = sum(x["count"] for (f, kind), x in found.items() if kind == "nul_bytes")
    assert s["lines_with_nul_bytes"] == by_kind["nul_bytes"] + garbled


def test_sessions_over_byte_ranges_keep_file_line_numbers(tmp_path):
    """HDFS sessions over the same kinds of dirt, plain files cut into 1 MiB byte ranges
    (a 3 MiB line and a 3 MiB run of NULs across range ends): every good line that names a
    block is in its session, at its line number in its file."""
    r = _ingest(tmp_path, "hdfs", "hdfs.yaml", "--shard-mb", "1", long_line_bytes=3 << 20, special=False)
    assert r["run"].returncode == 0 and "Traceback" not in r["run"].stderr, r["run"].stderr[-3000:]
    p, s = r["planted"], r["summary"]
    got = _lines_out(r)
    block = re.compile(r"blk_-?\d+")
    want = {k: v for k, v in p.good.items() if block.search(v)}
    missing = {k: v for k, v in want.items() if got.get(k) != [v]}
    assert not missing, f"{len(missing)} of {len(want)} lost or changed, e.g. {list(missing.items())[:3]}"
    assert s["lines_without_window"] == len(p.good) - len(want)  # damage that hit a block id: counted
    long_line = [x for x in s["line_problems"] if x["kind"] == "too_long"]
    assert [(_rel(r, x["file"]), x["lines"]) for x in long_line] == [
        (f, sorted(v)) for (f, kind), v in p.line_problems.items() if kind == "too_long"]
    assert {_rel(r, e["file"]) for e in s["errors"]} == set(p.errors)


def test_a_bad_config_is_one_line_on_stderr(tmp_path):
    cfg = (DATA_PIPELINES / "syslog.yaml").read_text() + "max_line_bytes: 10\nencoding: utf-9\n"
    (tmp_path / "bad.yaml").write_text(cfg)
    (tmp_path / "a.log").write_text("Dec 28 13:11:46 host sshd[1]: hello\n")
    run = _logad("ingest", str(tmp_path / "bad.yaml"), str(tmp_path / "a.log"), "-o", str(tmp_path / "o"),
                 timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr
    assert "max_line_bytes" in run.stderr and "utf-9" in run.stderr
