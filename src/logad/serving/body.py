"""Request bodies → lines, with every limit checked: no Ray, no web framework.

A body is JSON (``{"lines": [...]}``) or plain text (one line per line),
optionally compressed as a whole with ``Content-Encoding: gzip`` or ``zstd``.
Compressed bodies are inflated a little at a time, and decoding stops as soon
as the output passes ``max_decompressed_bytes``, so a decompression bomb costs
at most that much memory. Lines are counted before they are split out (text)
or one by one as they are read (JSON), so a body of millions of tiny lines is
refused before it becomes millions of Python strings, and so is a line over
``max_line_chars``. JSON is read by a small scanner that accepts exactly the
one shape the API takes and refuses anything else at the first character that
does not fit: no nesting, no recursion, no objects built for a body that is
then refused. Nothing from a request is ever unpickled.

Each failure is a :class:`BodyError` carrying the HTTP status it maps to.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from json.decoder import scanstring

import zstandard

__all__ = ["BodyError", "BodyLimits", "decode_body", "decompress", "parse_lines"]

JSON_TYPES = ("application/json",)
TEXT_TYPES = ("text/plain",)
ENCODINGS = ("identity", "gzip", "x-gzip", "zstd")


class BodyError(Exception):
    """A bad request body; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass(frozen=True)
class BodyLimits:
    """Size limits of one request (all in bytes, or lines)."""

    max_body_bytes: int = 16 << 20
    """Body as sent (compressed or not): larger → 413."""
    max_decompressed_bytes: int = 64 << 20
    """Body after decompression: larger → 413 (the decompression-bomb guard)."""
    max_lines: int = 200_000
    """Lines per request: more → 413."""
    max_line_chars: int = 1 << 20
    """Characters in one line: a longer line → 413."""


# Feed the zstd decoder this many compressed bytes at a time. A zstd block of
# 128 KiB can be encoded in a handful of bytes (RLE), so one step can emit at
# most about 256 B / 4 B * 128 KiB = 8 MiB past the limit before it is caught.
_ZSTD_STEP = 256
_GZIP_STEP = 1 << 16


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (identity, gzip or zstd; concatenated frames allowed).

    Raises:
        BodyError: 415 unknown coding, 400 corrupt or truncated data, 413 output over ``limit``.
    """
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc in ("gzip", "x-gzip"):
        return _gunzip(body, limit)
    if enc == "zstd":
        return _unzstd(body, limit)
    raise BodyError(415, f"unsupported Content-Encoding {encoding!r}: use gzip, zstd or none")


def _too_big(limit: int) -> BodyError:
    return BodyError(413, f"decompressed body is larger than the limit of {limit:,} bytes; "
                          "send smaller batches")


def _gunzip(body: bytes, limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    data = body
    while data:
        d = zlib.decompressobj(wbits=31)
        pending = data
        while pending and not d.eof:
            try:
                chunk = d.decompress(pending, limit + 1 - size)
            except zlib.error as exc:
                at = len(body) - len(pending)  # the bad data is in what was fed last
                raise BodyError(400, f"corrupt gzip body (bad data at or after byte {at:,}, in the "
                                     f"member that starts at byte {len(body) - len(data):,}): {exc}") from None
            size += len(chunk)
            out.append(chunk)
            if size > limit:
                raise _too_big(limit)
            pending = d.unconsumed_tail
        if not d.eof:
            raise BodyError(400, f"corrupt gzip body: it ends, at byte {len(body):,}, in the middle "
                                 f"of the member that starts at byte {len(body) - len(data):,}")
        data = d.unused_data
    return b"".join(out)


def _unzstd(body: bytes, limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    dctx = zstandard.ZstdDecompressor()
    d = dctx.decompressobj()
    fed = False
    pos = frame = 0
    while pos < len(body):
        piece = body[pos:pos + _ZSTD_STEP]
        pos += len(piece)
        while piece:
            fed = True
            try:
                chunk = d.decompress(piece)
            except zstandard.ZstdError as exc:
                raise BodyError(400, f"corrupt zstd body (frame at byte {frame:,}, bad data in bytes "
                                     f"{pos - len(piece):,}-{pos:,}): {exc}") from None
            size += len(chunk)
            out.append(chunk)
            if size > limit:
                raise _too_big(limit)
            if d.eof:  # a frame ended: the rest of this piece starts the next one
                piece = d.unused_data
                frame = pos - len(piece)
                d, fed = dctx.decompressobj(), False
            else:
                piece = b""
    if fed:
        raise BodyError(400, f"corrupt zstd body: it ends, at byte {len(body):,}, in the middle of "
                             f"the frame that starts at byte {frame:,}")
    return b"".join(out)


def parse_lines(data: bytes, content_type: str, limits: BodyLimits | None = None) -> tuple[list[str], int]:
    """Lines of a decompressed body and how many had undecodable bytes (replaced).

    With ``limits``, ``max_lines`` and ``max_line_chars`` are checked as the lines are
    read, before a body over them has been split into strings.

    Raises:
        BodyError: 415 unknown content type, 400 invalid JSON or UTF-8 in JSON,
            422 JSON that is not ``{"lines": [strings]}``, 413 over a limit.
    """
    limits = limits or _NO_LIMITS
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype in JSON_TYPES:
        return _json_lines(data, limits)
    if ctype in TEXT_TYPES:
        return _text_lines(data, limits)
    accepted = ", ".join(JSON_TYPES + TEXT_TYPES)
    raise BodyError(415, f"unsupported Content-Type {content_type or '(none)'!r}: use {accepted}")


_NO_LIMITS = BodyLimits(max_body_bytes=1 << 62, max_decompressed_bytes=1 << 62,
                        max_lines=1 << 62, max_line_chars=1 << 62)


def _too_many(count: int, limits: BodyLimits) -> BodyError:
    return BodyError(413, f"{count:,} lines in one request, over the limit of {limits.max_lines:,}; "
                          "send smaller batches")


def _too_long(index: int, length: int, limits: BodyLimits) -> BodyError:
    return BodyError(413, f"line {index:,} (0-based) is {length:,} characters long, over the limit of "
                          f"{limits.max_line_chars:,}; split it, or raise max_line_chars in the serve config")


def _text_lines(data: bytes, limits: BodyLimits) -> tuple[list[str], int]:
    count = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if count > limits.max_lines:
        raise _too_many(count, limits)
    try:
        text = data.decode("utf-8")
        replaced = 0
    except UnicodeDecodeError:
        text_lines = []
        replaced = 0
        for r in data.split(b"\n"):
            try:
                text_lines.append(r.decode("utf-8"))
            except UnicodeDecodeError:
                text_lines.append(r.decode("utf-8", errors="replace"))
                replaced += 1
        text = "\n".join(text_lines)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the break after the last line ends it; it starts no new line
    if lines and max(map(len, lines)) > limits.max_line_chars:
        i = next(i for i, x in enumerate(lines) if len(x) > limits.max_line_chars)
        raise _too_long(i, len(lines[i]), limits)
    return lines, replaced


# The JSON body is exactly {"lines": [string, ...]} (whitespace anywhere JSON allows it).
JSON_WS = re.compile(r"[ \t\n\r]*")
_AFTER_ITEM = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")
_SHAPE = 'the JSON body must be an object {"lines": ["raw log line", ...]}'
_SURROGATE = re.compile("[\ud800-\udfff]")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_KINDS = {"{": "an object", "[": "an array", '"': "a string", "t": "true", "f": "false", "n": "null"}


_SYNTAX = ("a key", "':'", "',' or '}'", "',' or ']'", "the end of the body")


def json_error(text: str, pos: int, expected: str, *, shape: str = _SHAPE,
               error: type[BodyError] = BodyError) -> BodyError:
    """400 where the JSON value at ``pos`` is not valid JSON, else 422 (valid JSON, but not
    ``shape``). Shared by the scanners of the lines and frames bodies (``error`` is their
    exception class)."""
    pos = JSON_WS.match(text, pos).end()
    if pos >= len(text):
        return error(400, f"body is not valid JSON: it ends at character {pos:,}, where "
                          f"{expected} should follow")
    c = text[pos]
    kind = _KINDS.get(c)
    if kind in ("true", "false", "null") and not text.startswith(kind, pos):
        kind = None
    elif kind is None and _NUMBER.match(text, pos):
        kind = "a number"
    if kind is None or expected in _SYNTAX:
        return error(400, f"body is not valid JSON: {c!r} at character {pos:,}, where "
                          f"{expected} should follow")
    return error(422, f"{shape}: found {kind} at character {pos:,}, where {expected} should be")


def _json_lines(data: bytes, limits: BodyLimits) -> tuple[list[str], int]:
    try:
        text = data.decode(json.detect_encoding(data))
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"body is not valid JSON: bad UTF-8 at byte {exc.start:,}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    pos = JSON_WS.match(text).end()
    if not text.startswith("{", pos):
        raise json_error(text, pos, 'an object {"lines": [...]}')
    pos = JSON_WS.match(text, pos + 1).end()
    lines: list[str] | None = None
    replaced = 0
    if not text.startswith("}", pos):
        while True:
            if not text.startswith('"', pos):
                raise json_error(text, pos, "a key")
            key, pos = json_string(text, pos)
            if key != "lines":
                raise BodyError(422, f'{_SHAPE}: unknown key {key[:64]!r} at character {pos:,}')
            if lines is not None:
                raise BodyError(422, f'{_SHAPE}: "lines" is given twice (at character {pos:,})')
            pos = JSON_WS.match(text, pos).end()
            if not text.startswith(":", pos):
                raise json_error(text, pos, "':'")
            pos = JSON_WS.match(text, pos + 1).end()
            if not text.startswith("[", pos):
                raise json_error(text, pos, 'an array ["raw log line", ...]')
            lines, pos, replaced = _json_items(text, pos + 1, limits)
            if text.startswith(",", pos):
                pos = JSON_WS.match(text, pos + 1).end()
                continue
            if not text.startswith("}", pos):
                raise json_error(text, pos, "',' or '}'")
            break
    pos = JSON_WS.match(text, pos + 1).end()
    if pos < len(text):
        raise json_error(text, pos, "the end of the body")
    if lines is None:
        raise BodyError(422, f'{_SHAPE}: it has no "lines"')
    return lines, replaced


def json_string(text: str, pos: int, *, error: type[BodyError] = BodyError) -> tuple[str, int]:
    """The JSON string whose opening quote is at ``pos``, and the position after it."""
    try:
        return scanstring(text, pos + 1, True)
    except ValueError as exc:  # json.JSONDecodeError: unterminated, bad escape, control character
        msg = getattr(exc, "msg", str(exc)).removesuffix(" at")
        raise error(400, f"body is not valid JSON: {msg} at character {getattr(exc, 'pos', pos):,}") from None


def _json_items(text: str, pos: int, limits: BodyLimits) -> tuple[list[str], int, int]:
    """The strings of an array whose ``[`` is before ``pos``: ``(lines, position after the array
    and the whitespace after it, lines with replaced characters)``. A string holding line
    breaks is split like text; a lone surrogate escape (``"\\ud800"``, not text in any
    encoding) is replaced by U+FFFD and counted, as undecodable bytes of a text body are."""
    out: list[str] = []
    replaced = 0
    pos = JSON_WS.match(text, pos).end()
    if text.startswith("]", pos):
        return out, JSON_WS.match(text, pos + 1).end(), replaced
    after = _AFTER_ITEM.match
    max_lines, max_chars = limits.max_lines, limits.max_line_chars
    while True:
        if not text.startswith('"', pos):
            raise json_error(text, pos, 'a string (every item of "lines" is one raw log line)')
        item, pos = json_string(text, pos)
        if not item.isascii() and _SURROGATE.search(item):
            item = _SURROGATE.sub("\ufffd", item)
            replaced += 1
        first = len(out)
        if "\n" in item or "\r" in item:
            out.extend(item.splitlines() or [item])
        else:
            out.append(item)
        if len(out) > max_lines:
            raise BodyError(413, f"over {max_lines:,} lines in one request, the limit; "
                                 "send smaller batches")
        if len(item) > max_chars:
            for k in range(first, len(out)):
                if len(out[k]) > max_chars:
                    raise _too_long(k, len(out[k]), limits)
        m = after(text, pos)
        if m is None:
            raise json_error(text, pos, "',' or ']'")
        pos = m.end()
        if m.group(1) == "]":
            return out, pos, replaced


def decode_body(
    body: bytes, content_type: str, content_encoding: str, limits: BodyLimits
) -> tuple[list[str], int]:
    """Check, decompress and split a request body: ``(lines, lines with replaced bytes)``.

    Raises:
        BodyError: with the status to answer (413, 415, 400 or 422).
    """
    if len(body) > limits.max_body_bytes:
        raise BodyError(413, f"body is {len(body):,} bytes, over the limit of "
                             f"{limits.max_body_bytes:,}; send smaller batches")
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype not in JSON_TYPES + TEXT_TYPES:  # before spending time on decompression
        parse_lines(b"", content_type)
    data = decompress(body, content_encoding, limits.max_decompressed_bytes)
    return parse_lines(data, content_type, limits)
