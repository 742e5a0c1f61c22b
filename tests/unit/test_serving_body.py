"""Request-body decoding of the HTTP service: limits, codings, content types (no Ray)."""

from __future__ import annotations

import gzip

import pytest
import zstandard

from logad.serving.body import BodyError, BodyLimits, decode_body, decompress, parse_lines

LIMITS = BodyLimits(max_body_bytes=1 << 20, max_decompressed_bytes=1 << 20, max_lines=1000)
TEXT = b"line one\nline two\r\nline three\n"


def _status(fn, *args) -> int:
    with pytest.raises(BodyError) as exc:
        fn(*args)
    assert exc.value.reason
    return exc.value.status


@pytest.mark.parametrize("encoding, body", [
    ("", TEXT), ("identity", TEXT), ("gzip", gzip.compress(TEXT)),
    ("zstd", zstandard.ZstdCompressor().compress(TEXT)),
    ("zstd", zstandard.ZstdCompressor().compress(TEXT[:9]) + zstandard.ZstdCompressor().compress(TEXT[9:])),
    ("gzip", gzip.compress(TEXT[:9]) + gzip.compress(TEXT[9:])),
])
def test_codings_and_concatenated_frames(encoding, body):
    lines, replaced = decode_body(body, "text/plain; charset=utf-8", encoding, LIMITS)
    assert lines == ["line one", "line two\r", "line three"] and replaced == 0


def test_json_and_text_bodies():
    assert parse_lines(b'{"lines": ["a", "b\\nc"]}', "application/json") == (["a", "b", "c"], 0)
    assert parse_lines(b"a\n\xffb\n", "text/plain") == (["a", "\ufffdb"], 1)
    assert parse_lines(b"", "text/plain") == ([], 0)


def test_bombs_stop_at_the_limit():
    raw = b"\0" * (64 << 20)
    assert _status(decompress, zstandard.ZstdCompressor(level=19).compress(raw), "zstd", 1 << 20) == 413
    assert _status(decompress, gzip.compress(raw, 9), "gzip", 1 << 20) == 413


@pytest.mark.parametrize("body, ctype, enc, status", [
    (b"x" * ((1 << 20) + 1), "text/plain", "", 413),
    (b"x\n" * 1001, "text/plain", "", 413),
    (TEXT, "application/xml", "", 415),
    (TEXT, "", "", 415),
    (TEXT, "text/plain", "br", 415),
    (b"garbage", "text/plain", "zstd", 400),
    (zstandard.ZstdCompressor().compress(TEXT)[:-3], "text/plain", "zstd", 400),
    (gzip.compress(TEXT)[:-4], "text/plain", "gzip", 400),
    (b"garbage", "text/plain", "gzip", 400),
    (b"{", "application/json", "", 400),
    (b'{"lines": "a"}', "application/json", "", 422),
    (b'["a"]', "application/json", "", 422),
    (b'{"lines": [null]}', "application/json", "", 422),
])
def test_bad_bodies_map_to_their_status(body, ctype, enc, status):
    assert _status(decode_body, body, ctype, enc, LIMITS) == status
