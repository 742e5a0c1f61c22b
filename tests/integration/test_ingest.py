"""The Ray Data ingest pipeline end to end, on a real local Ray and real fixtures."""

from __future__ import annotations

import csv
import gzip
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import zstandard

from logad.parsing import UNKNOWN_ID, TemplateStore
from logad.pipelines.ingest import run_ingest
from logad.sources.config import load_source_config
from logad.windows import read_windows

ROOT = Path(__file__).resolve().parents[2]
DATA_PIPELINES = ROOT / "data_pipelines"
FIXTURES = ROOT / "tests" / "fixtures"

pytestmark = pytest.mark.usefixtures("ray_session")


def _ingest(config, inputs, out, **kw):
    return run_ingest(config, [str(i) for i in inputs], str(out), progress=False, log=lambda _: None, **kw)


def _as_dict(df: pd.DataFrame) -> dict:
    return {r.window_id: (list(r.event_ids), list(r.lines), r.label) for r in df.itertuples()}


@pytest.fixture(scope="module")
def hdfs_config():
    return load_source_config(DATA_PIPELINES / "hdfs.yaml")


@pytest.fixture(scope="module")
def hdfs_run(tmp_path_factory, hdfs_config, hdfs_sample):
    out = tmp_path_factory.mktemp("hdfs")
    summary = _ingest(hdfs_config, [hdfs_sample[0]], out, labels=str(hdfs_sample[1]))
    return summary, out


def test_hdfs_sessions_and_labels_match_the_label_file(hdfs_run, hdfs_sample, hdfs_sample_lines):
    summary, out = hdfs_run
    windows = read_windows(out)
    labels = {r["BlockId"]: int(r["Label"] == "Anomaly") for r in csv.DictReader(open(hdfs_sample[1]))}
    assert set(windows["window_id"]) == set(labels)
    assert dict(zip(windows["window_id"], windows["label"].astype(int), strict=True)) == labels
    # every line lands in exactly its block's window, in file order
    per_block = defaultdict(list)
    for line in hdfs_sample_lines:
        per_block[re.search(r"blk_-?\d+", line).group(0)].append(line)
    for r in windows.itertuples():
        assert list(r.lines) == per_block[r.window_id]
        assert len(r.event_ids) == len(r.lines)
    assert summary.lines_read == summary.lines_parsed == len(hdfs_sample_lines)
    assert summary.windows == len(labels) and summary.windows_anomalous == sum(labels.values())
    assert summary.lines_malformed == 0 and not summary.errors
    saved = json.loads((out / "summary.json").read_text())
    assert saved["windows"] == summary.windows


def test_template_ids_are_content_hashes_of_the_stored_templates(hdfs_run):
    _, out = hdfs_run
    store = TemplateStore.load(out / "templates.json")
    windows = read_windows(out)
    used = {e for ids in windows["event_ids"] for e in ids}
    assert used <= {t.id for t in store.templates}
    assert UNKNOWN_ID not in used


def test_plain_gzip_zstd_and_byte_ranges_give_identical_windows(tmp_path, hdfs_config, hdfs_sample_lines):
    text = ("\n".join(hdfs_sample_lines[:6000]) + "\n").encode()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.log").write_bytes(text)
    (tmp_path / "in" / "a.log.gz").write_bytes(gzip.compress(text))
    (tmp_path / "in" / "a.log.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    results, counts, logs = {}, {}, {}
    for name in ("a.log", "a.log.gz", "a.log.zst"):
        logs[name] = []
        # small segments: the compressed streams are shared by a reader per CPU
        s = run_ingest(hdfs_config, [str(tmp_path / "in" / name)], str(tmp_path / name), progress=False,
                       log=logs[name].append, segment_bytes=64 << 10)
        results[name] = _as_dict(read_windows(tmp_path / name))
        counts[name] = (s.lines_read, s.lines_parsed, s.lines_malformed, s.lines_without_window, s.windows)
    # the plain file again, cut into many byte ranges
    logs["ranges"] = []
    s = run_ingest(hdfs_config, [str(tmp_path / "in" / "a.log")], str(tmp_path / "ranges"), progress=False,
                   log=logs["ranges"].append, shard_bytes=64 << 10)
    results["ranges"] = _as_dict(read_windows(tmp_path / "ranges"))
    counts["ranges"] = (s.lines_read, s.lines_parsed, s.lines_malformed, s.lines_without_window, s.windows)
    assert any("shard group(s) themselves" in m for m in logs["ranges"])
    for name in ("a.log.gz", "a.log.zst"):
        assert any("2 readers share 1 compressed" in m for m in logs[name]), logs[name]
    assert results["a.log"] == results["a.log.gz"] == results["a.log.zst"] == results["ranges"]
    assert counts["a.log"] == counts["a.log.gz"] == counts["a.log.zst"] == counts["ranges"]
    assert len(results["a.log"]) > 100 and counts["a.log"][0] == 6000


def test_shuffle_files_roll_over_without_changing_windows(tmp_path, hdfs_config, hdfs_sample_lines):
    """A parser writes a new shuffle file every ``shuffle_file_bytes`` of parsed lines (what
    it holds at once), so one huge shard group never becomes one huge file or task."""
    text = "\n".join(hdfs_sample_lines[:6000]) + "\n"
    for i in range(3):  # three files: a shard group per parse task or more
        (tmp_path / f"{i}.log").write_text(text)
    inputs = [tmp_path / f"{i}.log" for i in range(3)]
    runs = {}
    for name, kw in {"one": {}, "many": {"shuffle_file_bytes": 64 << 10, "batch_lines": 500}}.items():
        logs: list[str] = []
        s = run_ingest(hdfs_config, [str(i) for i in inputs], str(tmp_path / name), progress=False,
                       log=logs.append, **kw)
        runs[name] = (_as_dict(read_windows(tmp_path / name)), s.lines_parsed, s.windows, logs)
    files = [int(re.search(r"stage 1 wrote (\d+) shuffle file", m).group(1))
             for name in ("one", "many") for m in runs[name][3] if "stage 1 wrote" in m]
    assert files[0] <= 3 < 10 < files[1], files
    assert runs["one"][:3] == runs["many"][:3] and runs["one"][1] == 18000


def test_shuffle_partitions_change_files_not_windows(tmp_path, hdfs_config, hdfs_sample_lines):
    text = "\n".join(hdfs_sample_lines[:6000]) + "\n"
    (tmp_path / "a.log").write_text(text)
    runs = {}
    for parts in (1, 7):
        out = tmp_path / f"p{parts}"
        s = _ingest(hdfs_config, [tmp_path / "a.log"], out, num_partitions=parts, shard_bytes=96 << 10)
        runs[parts] = (_as_dict(read_windows(out)), s)
        assert len(list((out / "windows").glob("*.parquet"))) == parts
        assert not (out / "_shuffle").exists() and not (out / "_staging").exists()
    assert runs[1][0] == runs[7][0]
    assert runs[1][1].windows == runs[7][1].windows == len(runs[1][0])
    assert runs[1][1].lines_parsed == runs[7][1].lines_parsed == 6000


def test_lines_in_no_window_give_an_empty_readable_table(tmp_path, hdfs_config, hdfs_sample_lines):
    no_block = [ln.replace("blk_", "blk-") for ln in hdfs_sample_lines[:50]]  # ids the id regex misses
    (tmp_path / "a.log").write_text("\n".join(no_block) + "\n")
    s = _ingest(hdfs_config, [tmp_path / "a.log"], tmp_path / "out")
    assert (s.windows, s.lines_without_window, s.lines_read) == (0, len(no_block), len(no_block))
    assert len(read_windows(tmp_path / "out")) == 0


def test_corrupt_zstd_is_reported_and_the_rest_is_processed(tmp_path, hdfs_config, hdfs_sample_lines):
    good = ("\n".join(hdfs_sample_lines[:3000]) + "\n").encode()
    bad = bytearray(zstandard.ZstdCompressor().compress(("\n".join(hdfs_sample_lines[3000:6000]) + "\n").encode()))
    bad[len(bad) // 2 : len(bad) // 2 + 40] = b"\x00" * 40
    (tmp_path / "good.log").write_bytes(good)
    (tmp_path / "broken.log.zst").write_bytes(bytes(bad))
    summary = _ingest(hdfs_config, [tmp_path / "broken.log.zst", tmp_path / "good.log"], tmp_path / "out")
    assert len(summary.errors) == 1
    err = summary.errors[0]
    assert err["file"].endswith("broken.log.zst") and "corrupt zstd" in err["error"]
    assert 0 <= err["offset"] <= len(bad)
    windows = read_windows(tmp_path / "out")
    lines = {line for ls in windows["lines"] for line in ls}
    missing = len(set(hdfs_sample_lines[:3000]) - lines)
    assert missing == 0  # the good file is all there


def test_frozen_store_matches_and_mines_nothing(tmp_path, hdfs_config, hdfs_sample_lines):
    (tmp_path / "train.log").write_text("\n".join(hdfs_sample_lines[:20000]) + "\n")
    (tmp_path / "test.log").write_text(
        "\n".join(hdfs_sample_lines[20000:24000] + ["081111 000000 1 INFO x.Y: brand new message blk_42 here"]) + "\n"
    )
    _ingest(hdfs_config, [tmp_path / "train.log"], tmp_path / "train")
    summary = _ingest(hdfs_config, [tmp_path / "test.log"], tmp_path / "test", templates=str(tmp_path / "train" / "templates.json"))
    assert not summary.templates_mined
    train_store = TemplateStore.load(tmp_path / "train")
    assert TemplateStore.load(tmp_path / "test").templates == train_store.templates
    w = read_windows(tmp_path / "test")
    assert list(w.loc[w.window_id == "blk_42", "event_ids"].iloc[0]) == [UNKNOWN_ID]
    assert summary.lines_unknown_template >= 1


def test_bgl_sliding_windows_have_the_right_boundaries_and_labels(tmp_path):
    config = load_source_config(DATA_PIPELINES / "bgl.yaml")
    fixture = FIXTURES / "loghub_2k" / "BGL_2k.log.zst"
    summary = _ingest(config, [fixture], tmp_path / "bgl")
    w = read_windows(tmp_path / "bgl")
    g = config.grouping
    size = pd.Timedelta(seconds=g.window_size_s)
    with open(fixture, "rb") as fh:
        raw = zstandard.ZstdDecompressor().stream_reader(fh).read().decode().splitlines()
    # windows keep each line without its label field (the first): the dataset's, not the log's
    line_label = {line.split(" ", 1)[1]: int(not line.startswith("-")) for line in raw}
    for r in w.itertuples():
        ws = pd.Timestamp(r.window_id)
        assert ws.value % int(g.step_s * 1e9) == 0
        assert ws <= r.start <= r.end < ws + size
        assert r.label == max(line_label[x] for x in r.lines)
    assert summary.lines_read == len(raw)
    assert (w["label"] == 1).sum() > 0
    # windows are made wherever a line falls, so each timed line is in size/step windows
    timed = summary.lines_read - summary.lines_without_window
    assert w["lines"].map(len).sum() == timed * int(-(-g.window_size_s // g.step_s))


def test_fixed_count_windows_are_the_same_when_readers_share_the_file(tmp_path):
    """Fixed-count windows need every line's number in its file, so a plain file is not
    cut into byte ranges; readers sharing it still number the lines exactly."""
    config = load_source_config(DATA_PIPELINES / "proxifier.yaml")
    with open(FIXTURES / "loghub_2k" / "Proxifier_2k.log.zst", "rb") as fh:
        (tmp_path / "proxifier.log").write_bytes(zstandard.ZstdDecompressor().stream_reader(fh).read())
    runs = {}
    for name, segment in (("one", 64 << 20), ("shared", 16 << 10)):
        logs: list[str] = []
        s = run_ingest(config, [str(tmp_path / "proxifier.log")], str(tmp_path / name), progress=False,
                       log=logs.append, segment_bytes=segment)
        runs[name] = (_as_dict(read_windows(tmp_path / name)), s.lines_read, s.windows, logs)
    assert not any("readers share" in m for m in runs["one"][3])
    assert any("2 readers share 1" in m for m in runs["shared"][3])
    assert runs["one"][:3] == runs["shared"][:3]
    assert runs["one"][1] == 2000 and runs["one"][2] == 40


def test_a_custom_format_works_from_yaml_alone(tmp_path):
    (tmp_path / "my-service.yaml").write_text(
        """
name: my-service
format:
  log_format: '<Time> \\[<Level>\\] <Component> req=<Req> - <Content>'
timestamp: {fields: [Time], format: "%Y-%m-%dT%H:%M:%S"}
labels: {kind: field, field: Level, normal_values: [INFO, DEBUG]}
parsing:
  masking:
    - {pattern: '\\d+ms', mask_with: DURATION}
    - {pattern: '\\b\\d+\\b', mask_with: NUM}
grouping: {kind: session, id_regex: '[a-f0-9]{8}', id_field: Req}
"""
    )
    lines = []
    for i in range(60):
        req = f"{i % 6:08x}"
        lines.append(f"2026-11-20T10:{i // 60:02d}:{i % 60:02d} [INFO] api req={req} - served /items in {i * 3}ms")
        if i % 20 == 0:
            lines.append(f"2026-11-20T10:00:{i % 60:02d} [ERROR] db req={req} - query timeout after {i}ms")
    lines.insert(5, "this line has no header at all")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "svc.log").write_bytes(("\n".join(lines) + "\n").encode() + b"bad \xff byte [x]\n")
    config = load_source_config(tmp_path / "my-service.yaml")
    summary = _ingest(config, [tmp_path / "logs"], tmp_path / "out")
    w = read_windows(tmp_path / "out")
    assert sorted(w["window_id"]) == [f"{i:08x}" for i in range(6)]
    assert summary.lines_malformed == 2  # the headerless line and the bad-byte line, kept as content
    assert summary.lines_with_replaced_bytes == 1
    assert summary.lines_without_window == 2  # neither names a request id: counted, not hidden
    assert dict(zip(w["window_id"], w["label"].astype(int), strict=True)) == {
        "00000000": 1, "00000001": 0, "00000002": 1, "00000003": 0, "00000004": 1, "00000005": 0
    }
    store = TemplateStore.load(tmp_path / "out")
    assert any("<DURATION>" in t.text for t in store.templates)


def test_cli_ingest_prints_a_summary_and_fails_cleanly(tmp_path, hdfs_sample):
    env_cmd = [sys.executable, "-m", "logad.cli"]
    ok = subprocess.run(
        env_cmd + ["ingest", str(DATA_PIPELINES / "hdfs.yaml"), str(hdfs_sample[0]), "--output", str(tmp_path / "o"),
                   "--labels", str(hdfs_sample[1]), "--no-progress"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert "windows" in ok.stdout and "2,228" in ok.stdout
    bad = subprocess.run(env_cmd + ["ingest", "nope.yaml", "x.log", "-o", str(tmp_path / "p")],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "no source config at nope.yaml" in bad.stderr
