"""Property-based tests: the line reader, the header split and window assignment against
plain-Python definitions, on inputs hypothesis makes up (few examples each: seconds).

* Lines: whatever bytes, however they are cut into chunks, compressed, cut into byte
  ranges or shared by readers, the lines that come out are those of ``bytes.split(b"\\n")``
  (repaired and filtered by the documented rules), with consecutive line numbers and
  exact offsets, and every skipped or repaired line is counted.
* Headers: any string is either parsed or counted malformed, never an exception; the
  regex-free split of whitespace-separated headers gives exactly the regex's fields.
* Windows: every line lands in the windows its rule says (fixed: every window of
  ``window_lines`` starting at a multiple of ``step_lines`` that holds its number;
  sliding: every epoch-aligned window that holds its time), once marked first.
"""

from __future__ import annotations

import datetime as dt
import gzip
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
import zstandard
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from logad.sources import files as F
from logad.sources.config import FixedGrouping, SessionGrouping, SlidingGrouping, load_source_config
from logad.sources.lines import LineSplitter
from logad.windows.grouping import assign_windows, build_windows

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "data_pipelines").glob("*.yaml"))

FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# bytes with many line breaks, CRs, NULs, spaces, undecodable and multibyte pieces
_PIECES = [b"\n", b"\r\n", b"\x00", b" ", b"\t", b"a", b"xyz", b"0123456789", b"\xff", b"\xe2\x82\xac", b"\xe2",
           b"\xef\xbb\xbf", b"blk_42 ", b"\x1b[0m", b"\x0b"]
log_bytes = st.lists(st.sampled_from(_PIECES), max_size=120).map(b"".join)


def reference(data: bytes, max_line_bytes: int, head_bytes: int = 0) -> dict:
    """What reading ``data`` must give, from the documented rules alone (a file whose
    first ``head_bytes`` are judged binary gives no lines, and one error)."""
    if head_bytes and F._not_text(data[:head_bytes], "utf-8"):
        return {"lines": [], "too_long": [], "nul": [], "bad": [], "empty": 0, "read": 0, "binary": True}
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()  # the final line break ends the last line; it starts none
    out, too_long, nul, bad, empty = [], [], [], [], 0
    off = 0
    for no, raw in enumerate(parts):
        if len(raw) - raw.count(b"\x00") > max_line_bytes:
            too_long.append(no)
        else:
            if b"\x00" in raw:
                nul.append(no)
            body = raw.replace(b"\x00", b"")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = body.decode("utf-8", errors="replace")
                bad.append(no)
            if off == 0:
                text = text.lstrip("\ufeff")
            if text.endswith("\r"):
                text = text[:-1]
            if text.strip():
                out.append((off, no, text))
            else:
                empty += 1
        off += len(raw) + 1
    return {"lines": out, "too_long": too_long, "nul": nul, "bad": bad, "empty": empty, "read": len(parts),
            "binary": False}


def _collect(batches) -> dict:
    rows, counts, problems, errors = [], {}, {}, []
    for table, stats in batches:
        d = stats.to_dict()
        errors += d["errors"]
        for p in d["line_problems"]:
            problems.setdefault(p["kind"], []).extend(zip(p["offsets"], p["line_nos"], strict=True))
        for k, v in d.items():
            if isinstance(v, int):
                counts[k] = counts.get(k, 0) + v
        rows += zip(table["offset"].to_pylist(), table["line_no"].to_pylist(), table["raw"].to_pylist(), strict=True)
    return {"rows": rows, "counts": counts, "problems": problems, "errors": errors}


def _check(got: dict, ref: dict, bases: dict | None = None) -> None:
    rows = sorted(got["rows"])
    if bases is not None:  # byte ranges number from their own start: add the lines before them
        starts, before = bases
        rows = [(o, n + before[max(0, int(np.searchsorted(starts, o, side="right")) - 1)], t) for o, n, t in rows]
    assert rows == ref["lines"]
    c = got["counts"]
    assert c.get("lines_read", 0) == ref["read"]
    assert c.get("lines_too_long", 0) == len(ref["too_long"])
    assert c.get("lines_with_nul_bytes", 0) == len(ref["nul"])
    assert c.get("lines_with_replaced_bytes", 0) == len(ref["bad"])
    assert c.get("empty_lines", 0) == ref["empty"]
    assert [e["kind"] for e in got["errors"]] == (["binary"] if ref["binary"] else [])


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    at = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(at, at[1:], strict=False) if b > a]


@FEW
@given(data=log_bytes, cuts=st.lists(st.integers(0, 4000), max_size=12), max_line=st.integers(1, 40))
def test_any_chunking_cuts_the_same_lines(data, cuts, max_line):
    """The line cutter alone: chunk boundaries anywhere (inside a CRLF, a multibyte
    character, a NUL run, a long line) change nothing."""
    cutter = F._LineCutter(0, 0, max_line)
    stats = F.ReadStats()
    f = F.InputFile(0, "x.log", len(data), "none")
    got = _collect(F._batches(iter(_cut(data, cuts)), cutter, f, "utf-8", 7, stats))
    ref = reference(data, max_line)
    _check(got, ref)
    assert [n for _, n in sorted(got["problems"].get("too_long", []))] == ref["too_long"][:10]
    assert [n for _, n in sorted(got["problems"].get("nul_bytes", []))] == ref["nul"][:10]
    # line numbers are consecutive over every line read, kept or not
    kept = {n for _, n, _ in got["rows"]} | set(ref["too_long"]) | set(ref["nul"]) | set(ref["bad"])
    assert kept <= set(range(ref["read"]))


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


HEAD = 64  # the binary test's sample, small enough for short inputs to meet it


def _small_chunks():
    """Tiny read and decompress sizes, so short inputs cross every boundary."""
    return mock.patch.multiple(F, _CHUNK_BYTES=13, _COMPRESSED_CHUNK=11, _FEED_BYTES=5, _HEAD_BYTES=HEAD)


@FEW
@example(data=b"\xff" * 70 + b"\nok\n", codec="gzip", parts=2, segment=5, max_line=10)  # binary: skipped whole
@given(data=log_bytes, codec=st.sampled_from(["none", "gzip", "zstd", "zstd-frames"]),
       parts=st.integers(1, 4), segment=st.integers(1, 60), max_line=st.integers(1, 40))
def test_plain_compressed_and_shared_streams_give_the_reference_lines(scratch, data, codec, parts, segment, max_line):
    path = scratch / {"none": "s.log", "gzip": "s.log.gz", "zstd": "s.log.zst", "zstd-frames": "f.log.zst"}[codec]
    if codec == "gzip":
        path.write_bytes(gzip.compress(data))
    elif codec == "zstd":
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    elif codec == "zstd-frames":  # a frame per 17 bytes, as a streaming writer that flushes makes
        path.write_bytes(b"".join(zstandard.ZstdCompressor().compress(data[i:i + 17])
                                  for i in range(0, max(len(data), 1), 17)))
    else:
        path.write_bytes(data)
    f = F.list_inputs([str(path)])[0]
    with _small_chunks():
        got = {"rows": [], "counts": {}, "problems": {}, "errors": []}
        for part in range(parts):
            one = _collect(F.read_shard(F.Shard(f, part=part, parts=parts), batch_lines=5, segment_bytes=segment,
                                        max_line_bytes=max_line))
            got["rows"] += one["rows"]
            got["errors"] += one["errors"]
            for k, v in one["counts"].items():
                got["counts"][k] = got["counts"].get(k, 0) + v
    _check(got, reference(data, max_line, HEAD))
    assert len(got["rows"]) == len(set(got["rows"]))  # every line once, whichever reader


@FEW
@given(data=log_bytes, shard=st.integers(1, 50), max_line=st.integers(1, 40))
def test_byte_ranges_give_the_reference_lines_and_numbers(scratch, data, shard, max_line):
    from logad.pipelines.ingest import line_bases

    path = scratch / "r.log"
    path.write_bytes(data)
    f = F.list_inputs([str(path)])[0]
    shards = F.plan_shards([f], shard_bytes=shard)
    got = {"rows": [], "counts": {}, "problems": {}, "errors": []}
    ranges = []
    with _small_chunks():
        for s in shards:
            one = _collect(F.read_shard(s, batch_lines=3, max_line_bytes=max_line))
            got["rows"] += one["rows"]
            got["errors"] += one["errors"]
            for k, v in one["counts"].items():
                got["counts"][k] = got["counts"].get(k, 0) + v
            if not s.whole:
                ranges.append((0, s.start, one["counts"].get("lines_read", 0)))
    bases = line_bases(ranges).get(0, ([0], [0]))
    _check(got, reference(data, max_line, HEAD), bases)


@FEW
@given(data=st.lists(st.sampled_from(_PIECES), min_size=10, max_size=120).map(b"".join), cut=st.floats(0.05, 0.95))
def test_a_truncated_stream_keeps_every_whole_line_before_the_cut(scratch, data, cut):
    whole = zstandard.ZstdCompressor().compress(data)
    path = scratch / "t.log.zst"
    path.write_bytes(whole[: max(1, int(len(whole) * cut))])
    f = F.list_inputs([str(path)])[0]
    with _small_chunks(), mock.patch.object(F, "_HEAD_BYTES", 0):  # no binary test on what is left
        got = _collect(F.read_shard(F.Shard(f), max_line_bytes=1 << 20))
    assert len(got["errors"]) == 1 and got["errors"][0]["kind"] in ("truncated", "corrupt")
    ref = reference(data, 1 << 20)["lines"]
    assert sorted(got["rows"]) == ref[: len(got["rows"])]  # a prefix of the lines, nothing garbled


@FEW
@given(data=log_bytes, frames=st.integers(2, 6), bad=st.integers(0, 5), where=st.floats(0, 1), n=st.integers(1, 8),
       mask=st.integers(1, 255), codec=st.sampled_from(["gzip", "zstd"]), parts=st.integers(1, 3),
       segment=st.integers(1, 60))
def test_a_corrupt_frame_costs_only_its_own_lines(scratch, data, frames, bad, where, n, mask, codec, parts, segment):
    """A stream of frames of whole lines, one damaged anywhere (header, blocks, checksum):
    every line of the frames before it comes out at its offset and number, every line of
    the frames after it comes out in order after them, and the damage is one error (or
    none, where it happens to decode)."""
    data = data.replace(b"\xef\xbb\xbf", b"")  # a byte-order mark only counts at offset 0
    lines = data.splitlines(keepends=True)
    bounds = [len(lines) * i // frames for i in range(frames + 1)]
    texts = [b"".join(lines[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    texts = [t for t in texts if t] or [b"x\n"]
    bad = bad % len(texts)
    pack = (lambda b: zstandard.ZstdCompressor(write_checksum=True).compress(b)) if codec == "zstd" else \
        gzip.compress
    blobs = [bytearray(pack(t)) for t in texts]
    at = min(int(where * len(blobs[bad])), len(blobs[bad]) - 1)
    blobs[bad][at:at + n] = bytes(b ^ mask for b in blobs[bad][at:at + n])
    assume(F._codec_of(bytes(blobs[0])) == codec)  # else it is no longer a compressed file (misnamed)
    path = scratch / ("d.log.zst" if codec == "zstd" else "d.log.gz")
    path.write_bytes(b"".join(bytes(b) for b in blobs))
    f = F.list_inputs([str(path)])[0]
    with _small_chunks(), mock.patch.object(F, "_HEAD_BYTES", 0):
        got = {"rows": [], "errors": []}
        for part in range(parts):
            one = _collect(F.read_shard(F.Shard(f, part=part, parts=parts), batch_lines=5, segment_bytes=segment,
                                        max_line_bytes=1 << 20))
            got["rows"] += one["rows"]
            got["errors"] += one["errors"]
    rows = sorted(got["rows"])
    # damage to the last frame that makes it ask for more bytes looks like a cut file
    kinds = ("corrupt", "truncated") if bad == len(texts) - 1 else ("corrupt",)
    assert len(got["errors"]) <= 1 and all(e["kind"] in kinds for e in got["errors"]), got["errors"]
    before = reference(b"".join(texts[:bad]), 1 << 20)["lines"]
    after = [t for _, _, t in reference(b"".join(texts[bad + 1:]), 1 << 20)["lines"]]
    assert rows[:len(before)] == before
    assert [t for _, _, t in rows[len(rows) - len(after):]] == after if after else True
    assert len(rows) == len(set(rows))


# -- headers ---------------------------------------------------------------------------

_SPLITTERS = {p.stem: LineSplitter(load_source_config(p)) for p in CONFIGS}
_REAL_HEADS = [
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: ",
    "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO ",
    "Dec 28 13:11:46 ubuntu gdm[8057]: ",
    "[    0.000000] ",
    "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: ",
]
# real headers with their pieces shuffled, bent or glued to random text
header_like = st.one_of(
    st.text(max_size=80),
    st.builds(lambda h, t: h + t, st.sampled_from(_REAL_HEADS), st.text(max_size=40)),
    st.builds(lambda h, i, t: h[:i] + t + h[i:], st.sampled_from(_REAL_HEADS), st.integers(0, 60),
              st.text(alphabet=" \t\x0b\x0c\u00a0\u2003:[]-.0123456789abcXYZ", max_size=6)),
)


@FEW
@given(lines=st.lists(header_like, min_size=1, max_size=12), name=st.sampled_from(sorted(_SPLITTERS)))
def test_any_string_is_parsed_or_counted_malformed(lines, name):
    splitter = _SPLITTERS[name]
    raw = pa.array(lines, pa.string())
    sl = splitter.split(raw)
    n = len(lines)
    assert len(sl.header_ok) == len(sl.content) == len(sl.ts) == len(sl.line_label) == n
    content = sl.content.to_pylist()
    for i, ok in enumerate(sl.header_ok):
        if not ok:  # malformed: the whole line is the message
            assert content[i] == lines[i]
        else:
            assert content[i] is not None and lines[i].endswith(content[i])
    assert 0 <= sl.num_bad_time <= int(sl.header_ok.sum())
    assert set(sl.line_label.to_pylist()) <= {0, 1, None}


@FEW
@example(lines=[_REAL_HEADS[1] + "0\n"], name="bgl")  # a line break inside: the regex's `.` stops there
@given(lines=st.lists(header_like, min_size=1, max_size=12),
       name=st.sampled_from(sorted(k for k, s in _SPLITTERS.items() if s._plan is not None)))
def test_the_regex_free_split_is_the_regex_split(lines, name):
    fast = LineSplitter(_SPLITTERS[name].config)
    raw = pa.array(lines, pa.string())
    fields_fast, ok_fast = fast._split_fast(raw)
    fields_re, ok_re = fast._split_re2(raw)
    assert ok_fast.tolist() == ok_re.tolist()
    for k in fast.names:
        a = [v if ok else None for v, ok in zip(fields_fast[k].to_pylist(), ok_fast, strict=True)]
        b = [v if ok else None for v, ok in zip(fields_re[k].to_pylist(), ok_re, strict=True)]
        assert a == b, k


# -- windows ---------------------------------------------------------------------------


def _table(ts_us: list[int | None], line_no: list[int], file_idx: list[int]) -> pa.Table:
    n = len(line_no)
    return pa.table({
        "ts": pa.array(ts_us, pa.int64()).cast(pa.timestamp("us")),
        "file_idx": pa.array(file_idx, pa.int32()),
        "offset": pa.array(np.arange(n) * 10, pa.int64()),
        "line_no": pa.array(line_no, pa.int64()),
        "event_id": pa.array(np.arange(n), pa.int64()),
        "raw": pa.array([f"l{i}" for i in range(n)]),
        "line_label": pa.array([int(i % 3 == 0) for i in range(n)], pa.int8()),
    })


@FEW
@given(files=st.lists(st.lists(st.integers(0, 300), min_size=1, max_size=30, unique=True), min_size=1, max_size=3),
       size=st.integers(1, 25), step_share=st.floats(0, 1))
def test_fixed_windows_hold_each_line_in_every_window_that_covers_its_number(files, size, step_share):
    step = max(1, round(size * step_share))
    nos = [n for ns in files for n in sorted(ns)]
    fidx = [k for k, ns in enumerate(files) for _ in ns]
    g = FixedGrouping(window_lines=size, step_lines=step)
    out = assign_windows(_table([0] * len(nos), nos, fidx), g, file_names=["a", "b", "c"], first_column="first")
    got: dict[int, list[str]] = {}
    for raw, wid, first in zip(out["raw"].to_pylist(), out["window_id"].to_pylist(), out["first"].to_pylist(),
                               strict=True):
        got.setdefault(int(raw[1:]), []).append((wid, first))
    for i, (n, f) in enumerate(zip(nos, fidx, strict=True)):
        want = [f"{'abc'[f]}#{k * step}" for k in range(n // step + 1) if k * step <= n < k * step + size]
        assert sorted(w for w, _ in got[i]) == sorted(want)  # every line lands, in each covering window
        assert sum(first for _, first in got[i]) == 1  # and is marked first in exactly one
    windows = build_windows(out, "src", files=["a", "b", "c"])
    assert sum(len(x) for x in windows["lines"].to_pylist()) == out.num_rows


@FEW
@example(ts=[5_000_000, None], size_ms=1001, ratio=1)  # 1.001 s is 1000999.99… µs as a float
@given(ts=st.lists(st.one_of(st.none(), st.integers(-10**13, 10**13)), min_size=1, max_size=30),
       size_ms=st.one_of(st.integers(1, 2000), st.integers(1000, 600_000)), ratio=st.integers(1, 8))
def test_sliding_windows_hold_each_timed_line_in_every_window_that_covers_its_time(ts, size_ms, ratio):
    step_ms = max(1, size_ms // ratio)
    g = SlidingGrouping(window_size_s=size_ms / 1000, step_s=step_ms / 1000)
    size, step = size_ms * 1000, step_ms * 1000  # what the config says, in µs, exactly
    out = assign_windows(_table(ts, list(range(len(ts))), [0] * len(ts)), g, first_column="first")
    got: dict[int, list[str]] = {}
    for raw, wid, first in zip(out["raw"].to_pylist(), out["window_id"].to_pylist(), out["first"].to_pylist(),
                               strict=True):
        got.setdefault(int(raw[1:]), []).append((wid, first))
    for i, t in enumerate(ts):
        if t is None:
            assert i not in got  # no time: in no sliding window (the caller counts it)
            continue
        starts = range((t - size) // step + 1, t // step + 1)
        want = sorted(_window_id(k * step) for k in starts)
        assert sorted(w for w, _ in got[i]) == want
        assert sum(first for _, first in got[i]) == 1
    windows = build_windows(out, "src")
    assert windows.num_rows == len({w for ws in got.values() for w, _ in ws})  # window ids are distinct windows


def _window_id(start_us: int) -> str:
    t = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=start_us)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond:06d}" if start_us % 1_000_000 else "")


@FEW
@given(ids=st.lists(st.one_of(st.none(), st.sampled_from(["blk_1", "blk_2", "blk_-3", "x"])), min_size=1, max_size=30))
def test_session_windows_hold_each_line_with_an_id_once(ids):
    g = SessionGrouping(id_regex=r"blk_-?\d+|x")
    out = assign_windows(_table([0] * len(ids), list(range(len(ids))), [0] * len(ids)), g,
                         sessions=pa.array(ids, pa.string()), first_column="first")
    assert out["raw"].to_pylist() == [f"l{i}" for i, s in enumerate(ids) if s is not None]
    assert out["window_id"].to_pylist() == [s for s in ids if s is not None]
    assert all(out["first"].to_pylist())
