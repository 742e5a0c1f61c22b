"""Request bodies → lines, with every limit checked: no Ray, no web framework.

A body is JSON (``{"lines": [...]}``) or plain text (one line per line),
optionally compressed as a whole with ``Content-Encoding: gzip`` or ``zstd``.
Compressed bodies are inflated a little at a time, and decoding stops as soon
as the output passes ``max_decompressed_bytes``, so a decompression bomb costs
at most that much memory. Nothing from a request is ever unpickled.

Each failure is a :class:`BodyError` carrying the HTTP status it maps to.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

import zstandard

__all__ = ["BodyError", "BodyLimits", "decode_body", "decompress", "parse_lines"]

JSON_TYPES = ("application/json",)
TEXT_TYPES = ("text/plain",)
ENCODINGS = ("identity", "gzip", "x-gzip", "zstd")


class BodyError(Exception):
    """A bad request body; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class BodyLimits:
    """Size limits of one request (all in bytes, or lines)."""

    max_body_bytes: int = 16 << 20
    """Body as sent (compressed or not): larger → 413."""
    max_decompressed_bytes: int = 64 << 20
    """Body after decompression: larger → 413 (the decompression-bomb guard)."""
    max_lines: int = 200_000
    """Lines per request: more → 413."""


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
                raise BodyError(400, f"corrupt gzip body: {exc}") from None
            size += len(chunk)
            out.append(chunk)
            if size > limit:
                raise _too_big(limit)
            pending = d.unconsumed_tail
        if not d.eof:
            raise BodyError(400, "corrupt gzip body: the stream ends in the middle of a member")
        data = d.unused_data
    return b"".join(out)


def _unzstd(body: bytes, limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    dctx = zstandard.ZstdDecompressor()
    d = dctx.decompressobj()
    fed = False
    pos = 0
    while pos < len(body):
        piece = body[pos:pos + _ZSTD_STEP]
        pos += len(piece)
        while piece:
            fed = True
            try:
                chunk = d.decompress(piece)
            except zstandard.ZstdError as exc:
                raise BodyError(400, f"corrupt zstd body: {exc}") from None
            size += len(chunk)
            out.append(chunk)
            if size > limit:
                raise _too_big(limit)
            if d.eof:  # a frame ended: the rest of this piece starts the next one
                piece = d.unused_data
                d, fed = dctx.decompressobj(), False
            else:
                piece = b""
    if fed:
        raise BodyError(400, "corrupt zstd body: the data ends in the middle of a frame")
    return b"".join(out)


def parse_lines(data: bytes, content_type: str) -> tuple[list[str], int]:
    """Lines of a decompressed body and how many had undecodable bytes (replaced).

    Raises:
        BodyError: 415 unknown content type, 400 invalid JSON or UTF-8 in JSON,
            422 JSON that is not ``{"lines": [strings]}``.
    """
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype in JSON_TYPES:
        try:
            payload = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BodyError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("lines"), list):
            raise BodyError(422, 'JSON body must be an object {"lines": ["raw log line", ...]}')
        lines = payload["lines"]
        if not all(isinstance(x, str) for x in lines):
            raise BodyError(422, 'every item of "lines" must be a string (one raw log line)')
        out = []
        for x in lines:  # a JSON string may hold several lines; split them like text
            out.extend(x.splitlines() or [x]) if ("\n" in x or "\r" in x) else out.append(x)
        return out, 0
    if ctype in TEXT_TYPES:
        try:
            text = data.decode("utf-8")
            replaced = 0
        except UnicodeDecodeError:
            raw = data.split(b"\n")
            text_lines = []
            replaced = 0
            for r in raw:
                try:
                    text_lines.append(r.decode("utf-8"))
                except UnicodeDecodeError:
                    text_lines.append(r.decode("utf-8", errors="replace"))
                    replaced += 1
            text = "\n".join(text_lines)
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the break after the last line ends it; it starts no new line
        return lines, replaced
    accepted = ", ".join(JSON_TYPES + TEXT_TYPES)
    raise BodyError(415, f"unsupported Content-Type {content_type or '(none)'!r}: use {accepted}")


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
    lines, replaced = parse_lines(data, content_type)
    if len(lines) > limits.max_lines:
        raise BodyError(413, f"{len(lines):,} lines in one request, over the limit of "
                             f"{limits.max_lines:,}; send smaller batches")
    return lines, replaced
