"""Request bodies built to hurt: counts and lengths refused before the strings exist, JSON
of every shape read without recursion, offsets in the reasons (no Ray)."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from logad.serving.body import BodyError, BodyLimits, decode_body, parse_lines

LIMITS = BodyLimits(max_body_bytes=64 << 20, max_decompressed_bytes=64 << 20, max_lines=1000,
                    max_line_chars=200)
JSON = "application/json"


def _refused(fn, *args) -> BodyError:
    with pytest.raises(BodyError) as exc:
        fn(*args)
    assert exc.value.reason
    return exc.value


def _split(lines: list[str]) -> list[str]:
    """What the API makes of a list of JSON strings: one holding line breaks is several lines."""
    out: list[str] = []
    for x in lines:
        out.extend(x.splitlines() or [x]) if ("\n" in x or "\r" in x) else out.append(x)
    return out


# text without lone surrogates (not text in any encoding; tested on their own below)
_line = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(_line, max_size=30), ascii_only=st.booleans(), indent=st.sampled_from([None, 0, 2]))
def test_any_list_of_lines_reads_back_as_json_loads_reads_it(lines, ascii_only, indent):
    body = json.dumps({"lines": lines}, ensure_ascii=ascii_only, indent=indent).encode()
    assert parse_lines(body, JSON) == (_split(json.loads(body)["lines"]), 0)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _line,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_line, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=_json | st.fixed_dictionaries({"lines": _json}))
def test_any_other_json_is_refused_with_a_4xx(value):
    body = json.dumps(value).encode()
    ok = isinstance(value, dict) and set(value) == {"lines"} and isinstance(value["lines"], list) \
        and all(isinstance(x, str) for x in value["lines"])
    if ok:
        assert parse_lines(body, JSON)[0] == _split(value["lines"])
    else:
        assert _refused(parse_lines, body, JSON).status == 422  # valid JSON, not the API's shape


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_bytes_give_lines_or_a_body_error(data):
    for ctype in (JSON, "text/plain"):
        try:
            parse_lines(data, ctype, LIMITS)
        except BodyError as exc:
            assert exc.status in (400, 413, 422) and exc.reason


@pytest.mark.parametrize("body, where", [
    (b"[" * 100_000 + b"]" * 100_000, "found an array at character 0"),
    (b'{"lines": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "found an array at character 11"),
    (b'{"lines": [' + b"{" * 100_000 + b"}" * 100_000 + b"]}", "found an object at character 11"),
    (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "unknown key 'a'"),
])
def test_deep_nesting_is_refused_at_the_first_character_that_does_not_fit(body, where):
    exc = _refused(parse_lines, body, JSON)
    assert exc.status == 422 and where in exc.reason


@pytest.mark.parametrize("body, status, words", [
    (b'{"lines": ["a"], "meta": 1}', 422, "unknown key 'meta'"),
    (b'{"lines": ["a"], "lines": ["b"]}', 422, '"lines" is given twice'),
    (b"{}", 422, 'it has no "lines"'),
    (b'{"lines": ["a"]} {}', 400, "'{' at character 17"),
    (b'{"lines": ["a" "b"]}', 400, "at character 15"),
    (b'{"lines": ["a\x01"]}', 400, "Invalid control character at character 13"),
    (b'{"lines": ["\\q"]}', 400, "Invalid \\escape"),
    (b'{"lines": ["\xc3"]}', 400, "bad UTF-8 at byte 12"),
    (b'{"lines": [1]}', 422, "found a number at character 11"),
    (b"nul", 400, "'n' at character 0"),
    (b"null", 422, "found null at character 0"),
    (b"-", 400, "'-' at character 0"),
    (b" -1.5e3", 422, "found a number at character 1"),
])
def test_json_reasons_say_where(body, status, words):
    exc = _refused(parse_lines, body, JSON)
    assert (exc.status, words in exc.reason) == (status, True), exc.reason


def test_json_encodings_and_a_byte_order_mark():
    doc = '{"lines": ["é", "x"]}'
    for body in (doc.encode("utf-16"), doc.encode("utf-32"), b"\xef\xbb\xbf" + doc.encode()):
        assert parse_lines(body, JSON) == (["é", "x"], 0)


def test_a_lone_surrogate_is_replaced_and_counted():
    assert parse_lines(b'{"lines": ["a\\ud800b", "\\ud83d\\ude00", "c\\udfff"]}', JSON) == (
        ["a\ufffdb", "\U0001f600", "c\ufffd"], 2)


def test_too_many_lines_are_refused_before_they_become_strings():
    for body, ctype in ((b"ab\n" * 1_000_000, "text/plain"),
                        (b'{"lines": [' + b'"ab",' * 1_000_000 + b'"ab"]}', JSON)):
        tracemalloc.start()
        try:
            exc = _refused(parse_lines, body, ctype, LIMITS)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert exc.status == 413 and "1,000" in exc.reason
        # the JSON text is decoded once (one byte a character); a million strings would be ~60 MB
        assert peak < len(body) + (1 << 20), (ctype, peak)


def test_the_line_limit_counts_lines_not_line_breaks():
    ok = b"x\n" * 1000
    assert len(parse_lines(ok, "text/plain", LIMITS)[0]) == 1000
    assert len(parse_lines(ok[:-1], "text/plain", LIMITS)[0]) == 1000  # no break after the last
    assert _refused(parse_lines, ok + b"x", "text/plain", LIMITS).status == 413
    split = json.dumps({"lines": ["a\nb"] * 500}).encode()  # 500 strings, 1,000 lines
    assert len(parse_lines(split, JSON, LIMITS)[0]) == 1000
    assert _refused(parse_lines, json.dumps({"lines": ["a\nb"] * 500 + ["c"]}).encode(), JSON, LIMITS).status == 413


@pytest.mark.parametrize("ctype, body, index", [
    ("text/plain", b"a\n" + b"x" * 201 + b"\nb\n", 1),
    ("text/plain", b"a\nb\n" + "é".encode() * 201, 2),  # characters, not bytes
    (JSON, json.dumps({"lines": ["a", "b", "x" * 201]}).encode(), 2),
    (JSON, json.dumps({"lines": ["a", "b\n" + "x" * 201 + "\nc"]}).encode(), 2),
])
def test_one_line_over_max_line_chars_is_refused_by_its_index(ctype, body, index):
    exc = _refused(parse_lines, body, ctype, LIMITS)
    assert exc.status == 413 and exc.reason.startswith(f"line {index} (0-based) is 201 characters")
    assert "max_line_chars" in exc.reason
    at_limit = body.replace(b"x" * 201, b"x" * 200).replace("é".encode() * 201, "é".encode() * 200)
    assert parse_lines(at_limit, ctype, LIMITS)[0]


def test_many_long_strings_split_into_short_lines_are_fine():
    body = json.dumps({"lines": ["\n".join(["x" * 100] * 3)] * 300}).encode()
    assert len(parse_lines(body, JSON, LIMITS)[0]) == 900


def test_corrupt_frames_are_reported_with_their_offset():
    zc = zstandard.ZstdCompressor(write_checksum=True)
    first = zc.compress(b"line one\n" * 50)
    second = zc.compress(b"line two\n" * 50)
    for bad in (first + b"\xff" * 16, first + second[:-4] + b"\0\0\0\0"):  # no frame; a bad checksum
        exc = _refused(decode_body, bad, "text/plain", "zstd", LIMITS)
        assert exc.status == 400 and f"frame at byte {len(first):,}" in exc.reason, exc.reason
    exc = _refused(decode_body, first + second[:-4], "text/plain", "zstd", LIMITS)
    assert f"ends, at byte {len(first) + len(second) - 4:,}, in the middle of the frame that starts " \
           f"at byte {len(first):,}" in exc.reason
    g1, g2 = gzip.compress(b"a\n" * 100), gzip.compress(b"b\n" * 100)
    exc = _refused(decode_body, g1 + g2[:-6], "text/plain", "gzip", LIMITS)
    assert exc.status == 400 and f"member that starts at byte {len(g1):,}" in exc.reason
    exc = _refused(decode_body, g1 + g2[:10] + b"\xff" * 20, "text/plain", "gzip", LIMITS)
    assert exc.status == 400 and f"in the member that starts at byte {len(g1):,}" in exc.reason
