"""Reading plain, gzip and zstd files; byte-range shards; bad bytes; corrupt streams."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pytest
import zstandard

from logad.errors import DataError
from logad.sources.files import list_inputs, plan_shards, read_shard


def _read_all(paths, **kw):
    files = list_inputs([str(p) for p in paths])
    tables, stats = [], []
    for shard in plan_shards(files, **kw):
        for t, s in read_shard(shard):
            tables.append(t)
            stats.append(s)
    table = pa.concat_tables(tables)
    errors = [e for s in stats for e in s.errors]
    return table, stats, errors


@pytest.fixture
def sample_text(hdfs_sample_lines) -> bytes:
    return ("\n".join(hdfs_sample_lines[:5000]) + "\n").encode()


def test_plain_gzip_zstd_give_the_same_lines(tmp_path, sample_text):
    (tmp_path / "a.log").write_bytes(sample_text)
    (tmp_path / "a.log.gz").write_bytes(gzip.compress(sample_text))
    (tmp_path / "a.log.zst").write_bytes(zstandard.ZstdCompressor().compress(sample_text))
    got = {}
    for name in ("a.log", "a.log.gz", "a.log.zst"):
        table, _, errors = _read_all([tmp_path / name])
        assert not errors
        got[name] = table.select(["offset", "line_no", "raw"]).to_pylist()
    assert got["a.log"] == got["a.log.gz"] == got["a.log.zst"]
    assert len(got["a.log"]) == 5000


def test_byte_range_shards_cover_every_line_once(tmp_path, sample_text):
    (tmp_path / "a.log").write_bytes(sample_text)
    whole, _, _ = _read_all([tmp_path / "a.log"])
    for shard_bytes in (1000, 4096, 65536, 100_003):
        parts, _, _ = _read_all([tmp_path / "a.log"], shard_bytes=shard_bytes)
        assert parts.num_rows == whole.num_rows
        assert sorted(parts["offset"].to_pylist()) == whole["offset"].to_pylist()
        assert sorted(zip(parts["offset"].to_pylist(), parts["raw"].to_pylist(), strict=True)) == list(
            zip(whole["offset"].to_pylist(), whole["raw"].to_pylist(), strict=True)
        )
    assert len(plan_shards(list_inputs([str(tmp_path / "a.log")]), shard_bytes=4096)) > 10


def test_undecodable_bytes_are_replaced_and_counted(tmp_path):
    (tmp_path / "bad.log").write_bytes(b"good line\nbad \xff\xfe line\r\n\n  \nlast line without newline")
    table, stats, _ = _read_all([tmp_path / "bad.log"])
    assert table["raw"].to_pylist() == ["good line", "bad \ufffd\ufffd line", "last line without newline"]
    assert sum(s.lines_with_replaced_bytes for s in stats) == 1
    assert sum(s.empty_lines for s in stats) == 2
    assert sum(s.lines_read for s in stats) == 5


def test_corrupt_zstd_is_reported_with_offset_and_earlier_lines_kept(tmp_path, sample_text):
    cctx = zstandard.ZstdCompressor()
    # two frames: the second one is corrupted in the middle
    first = cctx.compress(sample_text[:200_000])
    second = bytearray(cctx.compress(sample_text[200_000:]))
    mid = len(second) // 2
    second[mid : mid + 64] = b"\x00" * 64
    (tmp_path / "broken.log.zst").write_bytes(first + bytes(second))
    table, _, errors = _read_all([tmp_path / "broken.log.zst"])
    assert len(errors) == 1
    err = errors[0]
    assert err["file"].endswith("broken.log.zst") and "corrupt zstd" in err["error"]
    assert len(first) <= err["offset"] <= len(first) + len(second)
    assert table.num_rows >= sample_text[:200_000].count(b"\n")


@pytest.mark.parametrize("where", [0.25, 0.5, 0.9])
def test_corrupt_zstd_never_hangs_wherever_the_damage_is(tmp_path, sample_text, where):
    data = bytearray(zstandard.ZstdCompressor().compress(sample_text))
    k = int(len(data) * where)
    data[k : k + 40] = b"\x00" * 40
    (tmp_path / "b.log.zst").write_bytes(bytes(data))
    _, _, errors = _read_all([tmp_path / "b.log.zst"])
    assert len(errors) == 1 and "corrupt zstd" in errors[0]["error"]


def _framed(sample_text: bytes, codec: str, k: int = 5) -> tuple[list[bytes], list[list[bytes]]]:
    """``sample_text`` as ``k`` frames (members) of whole lines, as a shipper writes them."""
    lines = sample_text.splitlines(keepends=True)
    groups = [lines[i * len(lines) // k:(i + 1) * len(lines) // k] for i in range(k)]
    pack = (lambda b: zstandard.ZstdCompressor(write_checksum=True).compress(b)) if codec == "zstd" else gzip.compress
    return [pack(b"".join(g)) for g in groups], groups


def _damage(blob: bytes, at: int, n: int = 24) -> bytes:
    out = bytearray(blob)
    out[at:at + n] = bytes(b ^ 0x5A for b in out[at:at + n])
    return bytes(out)


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
@pytest.mark.parametrize("where", ["header", "middle", "end"])
def test_reading_goes_on_at_the_frame_after_a_corrupt_one(tmp_path, sample_text, codec, where):
    """A shipper's file of many frames loses only the damaged frame: the lines of every
    frame before and after it come out, the gap is one error at its offset, and the
    lines before it keep their numbers."""
    blobs, groups = _framed(sample_text, codec)
    at = {"header": 0, "middle": len(blobs[2]) // 2, "end": len(blobs[2]) - 30}[where]
    blobs[2] = _damage(blobs[2], at)
    name = "shipped.log" + (".zst" if codec == "zstd" else ".gz")
    (tmp_path / name).write_bytes(b"".join(blobs))
    table, _, errors = _read_all([tmp_path / name])
    assert len(errors) == 1, errors
    err = errors[0]
    third = len(blobs[0]) + len(blobs[1])
    assert err["kind"] == "corrupt" and f"corrupt {codec}" in err["error"]
    # where decoding failed (damage can make the decoder read on past its frame's end),
    # the damaged frame, and where reading went on
    assert third <= err["offset"] <= sum(map(len, blobs))
    assert f"at compressed byte {third:,}" in err["error"]
    assert f"at byte {third + len(blobs[2]):,}" in err["error"]
    raw = table["raw"].to_pylist()
    before = [x.decode().rstrip("\n") for g in groups[:2] for x in g]
    after = [x.decode().rstrip("\n") for g in groups[3:] for x in g]
    assert raw[:len(before)] == before and raw[-len(after):] == after
    assert table["line_no"].to_pylist()[:len(before)] == list(range(len(before)))
    nums, offs = table["line_no"].to_numpy(), table["offset"].to_numpy()
    assert (nums[1:] > nums[:-1]).all() and (offs[1:] > offs[:-1]).all()


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_damage_across_several_frames_is_one_gap(tmp_path, sample_text, codec):
    blobs, groups = _framed(sample_text, codec)
    data = b"".join(blobs)
    lo = len(blobs[0]) + len(blobs[1]) // 2
    hi = len(blobs[0]) + len(blobs[1]) + len(blobs[2]) + 10  # into the fourth frame's header
    data = data[:lo] + bytes(hi - lo) + data[hi:]
    (tmp_path / "s.log.zst").write_bytes(data)
    table, _, errors = _read_all([tmp_path / "s.log.zst"])
    assert len(errors) == 1 and "corrupt" in errors[0]["error"]
    after = [x.decode().rstrip("\n") for x in groups[4]]
    assert table["raw"].to_pylist()[-len(after):] == after


def test_garbage_after_the_last_frame_says_nothing_follows(tmp_path, sample_text):
    blobs, _ = _framed(sample_text, "zstd")
    (tmp_path / "z.log.zst").write_bytes(b"".join(blobs) + b"\x00" * 5000)
    table, _, errors = _read_all([tmp_path / "z.log.zst"])
    assert len(errors) == 1 and "no good frame follows" in errors[0]["error"]
    assert table.num_rows == 5000


def test_a_shared_stream_goes_on_after_a_gap_as_one_reader_does(tmp_path, monkeypatch, sample_text):
    blobs, _ = _framed(sample_text, "zstd", k=9)
    blobs[4] = _damage(blobs[4], len(blobs[4]) // 2)
    (tmp_path / "shared.log.zst").write_bytes(b"".join(blobs))
    f = list_inputs([str(tmp_path / "shared.log.zst")])[0]
    (whole,), _, whole_errors = _read_shared(f, 1, monkeypatch)
    per_part, _, errors = _read_shared(f, 3, monkeypatch, segment_bytes=20_000)
    assert errors == whole_errors and len(errors) == 1
    got = pa.concat_tables([p for p in per_part if p is not None]).sort_by("offset")
    assert got.equals(whole)
    assert whole.num_rows >= 5000 * 8 // 9


def test_truncated_zstd_is_reported(tmp_path, sample_text):
    data = zstandard.ZstdCompressor().compress(sample_text)
    (tmp_path / "t.log.zst").write_bytes(data[: len(data) // 2])
    table, _, errors = _read_all([tmp_path / "t.log.zst"])
    assert len(errors) == 1 and "ends in the middle" in errors[0]["error"]
    assert table.num_rows > 0


def test_corrupt_gzip_is_reported(tmp_path, sample_text):
    data = bytearray(gzip.compress(sample_text))
    data[len(data) // 2 : len(data) // 2 + 32] = b"\xff" * 32
    (tmp_path / "broken.log.gz").write_bytes(bytes(data))
    _, _, errors = _read_all([tmp_path / "broken.log.gz"])
    assert len(errors) == 1 and "corrupt gzip" in errors[0]["error"]


def test_folders_are_expanded_in_order_and_missing_inputs_refused(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.log").write_text("b\n")
    (tmp_path / "d" / "sub" / "a.log").write_text("a\n")
    (tmp_path / "d" / ".hidden").write_text("h\n")
    files = list_inputs([str(tmp_path / "d")])
    assert [f.name for f in files] == ["b.log", "a.log"]
    with pytest.raises(DataError, match="does not exist"):
        list_inputs([str(tmp_path / "nope")])


def test_the_driver_merges_what_parse_tasks_return():
    """Counts add up, and the distinct messages of every shard group come out in input
    order (first position across all groups) with their total counts: what Drain3
    would have seen from the whole stream."""
    from logad.pipelines.ingest import _Collector, _Tally

    t = _Tally()
    t.add({"lines_read": 10}, [{"file": "a.log", "offset": 0, "error": "x"}], [("parse", "n1")])
    t.add({"lines_read": 5, "lines_parsed": 5}, None, [("parse", "n2"), ("read", "n2")])
    counts, errors, nodes = t.get()
    assert counts == {"lines_read": 15, "lines_parsed": 5} and len(errors) == 1
    assert nodes == {"parse": ["n1", "n2"], "read": ["n2"]}

    merged = _Collector()
    merged.collect(["b", "c"], [5, 9], [2, 1])  # a later shard group, returned first
    merged.collect(["a", "b"], [0, 3], [4, 1])
    assert merged.ordered() == (["a", "b", "c"], [4, 3, 1])


@pytest.mark.parametrize("shard_bytes,batch_lines", [(64 << 20, 65536), (97, 3), (1_000, 7)])
def test_arrow_line_reader_equals_the_line_by_line_reader(tmp_path, monkeypatch, shard_bytes, batch_lines):
    """UTF-8 input is decoded by one Arrow cast per batch; it must give exactly what
    line-by-line decoding (used for other encodings and bad bytes) gives: CRLF, blank and
    whitespace-only lines, undecodable bytes, a last line without a break, byte-range shards."""
    import pyarrow as pa

    from logad.sources import files as F

    body = (b"a\r\nb\n\n   \n\t\nbad\xff\xfeline\r\n\xe2\x82\xac euro \u00a0\n" * 40) + b"last line, no break \xe2\x82"
    (tmp_path / "x.log").write_bytes(body)

    def run():
        shards = F.plan_shards(F.list_inputs([str(tmp_path / "x.log")]), shard_bytes=shard_bytes, split_plain=True)
        tables, totals = [], {}
        for s in shards:
            for t, st in F.read_shard(s, batch_lines=batch_lines):
                tables.append(t)
                for k, v in st.to_dict().items():
                    if isinstance(v, int):
                        totals[k] = totals.get(k, 0) + v
        return pa.concat_tables(tables).combine_chunks(), totals, [t.num_rows for t in tables]

    fast = run()
    monkeypatch.setattr(F, "_FAST_UTF8", False)  # every batch decoded line by line
    slow = run()
    assert fast[0].equals(slow[0])
    assert fast[1:] == slow[1:]
    assert fast[1]["lines_with_replaced_bytes"] == 41 and fast[1]["empty_lines"] == 120


def _write(path, text: bytes):
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text))
    elif path.name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(text))
    else:
        path.write_bytes(text)
    return list_inputs([str(path)])[0]


def _read_shared(f, parts, monkeypatch, **kw):
    """Every reader of a shared stream: the lines of each, and the summed stats."""
    from logad.sources import files as F

    # small decompressed chunks, so a small file still makes many segments
    monkeypatch.setattr(F, "_CHUNK_BYTES", 4093)
    monkeypatch.setattr(F, "_COMPRESSED_CHUNK", 1021)
    per_part, totals, errors = [], {}, []
    for i in range(parts):
        tables = []
        for t, st in read_shard(F.Shard(f, part=i, parts=parts), **kw):
            tables.append(t)
            d = st.to_dict()
            errors += d.pop("errors")
            for k, v in d.items():
                if isinstance(v, int):
                    totals[k] = totals.get(k, 0) + v
        per_part.append(pa.concat_tables(tables) if tables else None)
    return per_part, totals, errors


@pytest.mark.parametrize("name", ["a.log", "a.log.gz", "a.log.zst"])
@pytest.mark.parametrize("parts", [2, 3, 7])
def test_readers_sharing_a_stream_read_every_line_once(tmp_path, monkeypatch, sample_text, name, parts):
    """Each reader of a shared stream parses its own segments; together they give exactly
    the lines, offsets and line numbers of one reader, and the same counts."""
    f = _write(tmp_path / name, sample_text + b"\r\n\nlast line without a break")
    whole, stats, _ = _read_all([tmp_path / name])
    per_part, totals, errors = _read_shared(f, parts, monkeypatch, segment_bytes=20_000, batch_lines=1000)
    assert not errors
    assert all(p is not None and p.num_rows > 0 for p in per_part)  # every reader got lines
    got = pa.concat_tables(per_part).sort_by("offset")
    assert got.equals(whole)
    assert got["line_no"].to_pylist()[-1] == sample_text.count(b"\n") + 2  # numbers count the empty lines
    for k in ("files", "bytes_read", "lines_read", "empty_lines"):
        assert totals[k] == sum(getattr(s, k) for s in stats), k


def test_a_corrupt_shared_stream_is_reported_once_with_every_line_before_it(tmp_path, monkeypatch, sample_text):
    cctx = zstandard.ZstdCompressor()
    first = cctx.compress(sample_text[:300_000])
    second = bytearray(cctx.compress(sample_text[300_000:]))
    second[len(second) // 2 : len(second) // 2 + 64] = b"\x00" * 64
    (tmp_path / "broken.log.zst").write_bytes(first + bytes(second))
    f = list_inputs([str(tmp_path / "broken.log.zst")])[0]
    (whole,), _, whole_errors = _read_shared(f, 1, monkeypatch)  # one reader, the same chunks
    per_part, _, errors = _read_shared(f, 3, monkeypatch, segment_bytes=20_000)
    assert errors == whole_errors and len(errors) == 1
    assert "corrupt zstd" in errors[0]["error"] and len(first) <= errors[0]["offset"] <= len(first) + len(second)
    got = pa.concat_tables([p for p in per_part if p is not None]).sort_by("offset")
    assert got.equals(whole)  # every line decoded before the damage, once
    assert got.num_rows >= sample_text[:300_000].count(b"\n")


def test_share_streams_gives_every_reader_a_part_only_where_shards_are_few(tmp_path, sample_text):
    from logad.sources.files import share_streams

    big = _write(tmp_path / "big.log.zst", sample_text)
    small = _write(tmp_path / "small.log.gz", sample_text[:5000])
    shards = plan_shards([big, small])
    shared = share_streams(shards, 4, segment_bytes=10_000)
    # two readers per stream, but the small one is one segment: one reader
    assert [(s.file.name, s.part, s.parts) for s in shared] == (
        [("big.log.zst", 0, 2), ("big.log.zst", 1, 2), ("small.log.gz", 0, 1)]
    )
    assert share_streams(shards, 2) == shards  # a shard per reader already
    ranges = plan_shards([_write(tmp_path / "p.log", sample_text)], shard_bytes=100_000)
    assert 1 < len(ranges) < 64
    assert share_streams(ranges, 64, segment_bytes=1000) == ranges  # byte ranges are never shared
