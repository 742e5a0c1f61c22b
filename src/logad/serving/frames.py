"""Request bodies of compressed frames → frames, from their headers alone: nothing is decompressed.

The frames endpoint (``POST /v1/sources/{source}/frames``) scores compressed
frames as they are: a CLAD model reads their bytes. This module finds the
frames in a body and refuses the ones the source's model cannot read, without
inflating a single byte, so a decompression bomb costs nothing here.

Body forms:

* ``application/zstd`` or ``application/octet-stream``: zstd frames one after
  the other (which is itself a valid ``.zst`` stream). The body is cut into
  frames by walking the zstd frame format (RFC 8878): the frame header (magic
  number, descriptor, window descriptor, dictionary id, content size), then
  the 3-byte block headers (last-block bit, type, size) up to the last block,
  then the optional 4-byte checksum. Skippable frames (magic numbers
  0x184D2A50-0x184D2A5F, a 4-byte little-endian size, that many bytes) are
  skipped, except one with magic :data:`ID_MAGIC` (0x184D2A5C): its content, 1
  to 256 bytes of UTF-8, is the id of the zstd frame that follows it. A frame
  without one is named by its position ("0", "1", ...).
* ``application/json``: ``{"frames": [{"id": "w1", "data": "<base64>"}, ...]}``
  (``id`` optional, the position by default). The only form for a deflate
  (zlib) model: zlib streams do not say where they end.

Each frame is then checked from its header: its size against the model's
``max_frame_bytes``, its magic number, and its dictionary (the zstd dictionary
id; for zlib, the FDICT flag and the Adler-32 of the preset dictionary).

Each failure is a :class:`FrameBodyError` (a :class:`logad.serving.body.BodyError`
with the HTTP status it maps to) whose reason names the frame (its index, its
id, and its byte offset in a binary body). No Ray, no web framework, no torch.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from typing import Any

from logad.serving.body import JSON_WS, BodyError, json_error, json_string

__all__ = [
    "BINARY_TYPES", "FRAME_JSON_TYPES", "ID_MAGIC", "SKIPPABLE_MAGIC", "ZSTD_MAGIC", "Frame",
    "FrameBodyError", "FrameSpec", "check_zlib_frame", "frame_body", "frame_media_type", "id_frame", "parse_json_frames",
    "split_zstd_frames", "zstd_frame_header",
]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
"""The four bytes every zstd frame starts with (little-endian 0xFD2FB528)."""
SKIPPABLE_MAGIC = range(0x184D2A50, 0x184D2A60)
"""Magic numbers of zstd skippable frames (RFC 8878 3.1.2)."""
ID_MAGIC = 0x184D2A5C
"""The skippable frame whose content names the next zstd frame (1-256 bytes of UTF-8)."""
MAX_ID_CHARS = 256
MAX_BLOCK_BYTES = 128 << 10
"""RFC 8878 Block_Maximum_Size: no block is larger, compressed or not."""

BINARY_TYPES = ("application/zstd", "application/octet-stream")
FRAME_JSON_TYPES = ("application/json",)


class FrameBodyError(BodyError):
    """A body that is not a sequence of frames the model can read.

    ``index`` is the frame's position among the body's frames (None where the body as a
    whole is wrong), ``offset`` its byte offset in a binary body (None in JSON)."""

    def __init__(self, status: int, reason: str, *, index: int | None = None, offset: int | None = None) -> None:
        super().__init__(status, reason)
        self.index = index
        self.offset = offset


@dataclass(frozen=True)
class Frame:
    """One frame of a body: ``data`` is its bytes as sent (never decompressed)."""

    index: int
    id: str
    offset: int | None
    data: bytes
    dict_id: int | None = None
    """The zstd header's dictionary id (0 where it names none); None for zlib."""
    content_size: int | None = None
    """The zstd header's content size, where it gives one."""
    checksum: bool = False


@dataclass(frozen=True)
class FrameSpec:
    """What a model reads: its codec, dictionary and largest frame."""

    codec: str
    """``zstd`` or ``deflate`` (zlib streams with a preset dictionary)."""
    dict_id: int
    """The zstd dictionary id the frames' headers must name (0: a raw-content dictionary)."""
    zlib_dict_adler: int
    """Adler-32 of the zlib preset dictionary (the dictionary's last 32 KiB)."""
    max_frame_bytes: int

    @classmethod
    def from_codec(cls, codec: Any) -> FrameSpec:
        """From a :class:`logad.methods.clad.frames.FrameCodec`."""
        dictionary = bytes(codec.dictionary)
        return cls(str(codec.codec), int(codec.dict_id), zlib.adler32(dictionary[-32768:]),
                   int(codec.max_frame_bytes))


def _name(index: int, frame_id: str | None, offset: int | None) -> str:
    out = f"frame {index:,}"
    if frame_id is not None and frame_id != str(index):
        out += f" (id {frame_id[:64]!r})"
    if offset is not None:
        out += f" at byte {offset:,}"
    return out


# -- zstd: walking the frame format ------------------------------------------------------------


@dataclass(frozen=True)
class ZstdHeader:
    size: int
    """Bytes of the frame header, magic number included."""
    dict_id: int
    content_size: int | None
    checksum: bool


def zstd_frame_header(data: bytes | memoryview, pos: int = 0) -> ZstdHeader:
    """The header of the zstd frame starting at ``pos`` (its magic number checked).

    Raises:
        ValueError: not a zstd frame, a reserved bit set, or the data ends inside the header.
    """
    if bytes(data[pos:pos + 4]) != ZSTD_MAGIC:
        raise ValueError(f"not a zstd frame (it starts with {bytes(data[pos:pos + 4]).hex() or 'nothing'}, "
                         f"not the zstd magic number {ZSTD_MAGIC.hex()})")
    if pos + 5 > len(data):
        raise ValueError("truncated: the data ends inside the frame header")
    fhd = data[pos + 4]
    fcs_flag, single, reserved = fhd >> 6, (fhd >> 5) & 1, (fhd >> 3) & 1
    checksum, did_flag = bool((fhd >> 2) & 1), fhd & 3
    if reserved:
        raise ValueError(f"the frame header descriptor {fhd:#04x} has its reserved bit set")
    did_size = (0, 1, 2, 4)[did_flag]
    fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    at = pos + 5 + (0 if single else 1)
    end = at + did_size + fcs_size
    if end > len(data):
        raise ValueError("truncated: the data ends inside the frame header")
    dict_id = int.from_bytes(data[at:at + did_size], "little")
    content_size = None
    if fcs_size:
        content_size = int.from_bytes(data[at + did_size:end], "little") + (256 if fcs_size == 2 else 0)
    return ZstdHeader(end - pos, dict_id, content_size, checksum)


def _zstd_frame_end(data: bytes | memoryview, pos: int, header: ZstdHeader) -> int:
    """Where the zstd frame whose header starts at ``pos`` ends (its blocks walked)."""
    at = pos + header.size
    n = len(data)
    while True:
        if at + 3 > n:
            raise ValueError(f"truncated: the data ends inside a block header (byte {at:,})")
        h = int.from_bytes(data[at:at + 3], "little")
        last, kind, size = h & 1, (h >> 1) & 3, h >> 3
        if kind == 3:
            raise ValueError(f"the block at byte {at:,} has the reserved block type 3")
        if size > MAX_BLOCK_BYTES:
            raise ValueError(f"the block at byte {at:,} declares {size:,} bytes, over zstd's block "
                             f"maximum of {MAX_BLOCK_BYTES:,}")
        block, at = at, at + 3 + (1 if kind == 1 else size)  # an RLE block holds one byte, `size` times
        if at > n:
            raise ValueError(f"truncated: the data ends inside the block that starts at byte {block:,}")
        if last:
            break
    if header.checksum:
        at += 4
        if at > n:
            raise ValueError("truncated: the data ends inside the frame's checksum")
    return at


def split_zstd_frames(body: bytes | memoryview, *, max_frames: int | None = None,
                      base_offset: int = 0) -> list[Frame]:
    """The zstd frames of a body of concatenated frames, found from their headers and block
    headers alone (nothing is decompressed). Skippable frames are skipped, an id frame
    (:data:`ID_MAGIC`) names the frame after it. An empty body has no frames.

    ``base_offset`` is added to the offsets in the frames and in the reasons (where
    ``body`` is a part of something larger).

    Raises:
        FrameBodyError: 400 for anything that is not whole frames one after the other
            (truncated, a reserved block type, bytes between frames that start no frame),
            naming the frame's index and byte offset; 413 past ``max_frames`` frames.
    """
    data = memoryview(body) if not isinstance(body, memoryview) else body
    n = len(data)
    out: list[Frame] = []
    pos = 0
    pending_id: str | None = None
    pending_at = 0
    while pos < n:
        index = len(out)
        if max_frames is not None and index >= max_frames and bytes(data[pos:pos + 4]) == ZSTD_MAGIC:
            raise FrameBodyError(413, f"more than {max_frames:,} frames in one request (frame {index:,} starts "
                                      f"at byte {base_offset + pos:,}), the limit; send smaller batches",
                                 index=index, offset=base_offset + pos)
        rest = bytes(data[pos:pos + 4])
        if len(rest) < 4 and (ZSTD_MAGIC.startswith(rest) or (rest[0] & 0xF0 == 0x50
                                                               and b"\x2a\x4d\x18".startswith(rest[1:]))):
            raise _bad(index, pending_id, base_offset + pos, "truncated: the body ends inside a magic number")
        if len(rest) == 4 and rest[1:] == b"\x2a\x4d\x18" and rest[0] & 0xF0 == 0x50:
            magic = int.from_bytes(data[pos:pos + 4], "little")
            if pos + 8 > n:
                raise _bad(index, pending_id, base_offset + pos, "truncated: the body ends inside the "
                           "header of a skippable frame")
            size = int.from_bytes(data[pos + 4:pos + 8], "little")
            end = pos + 8 + size
            if end > n:
                raise _bad(index, pending_id, base_offset + pos, f"truncated: a skippable frame declares "
                           f"{size:,} bytes, and the body ends {end - n:,} bytes before its end")
            if magic == ID_MAGIC:
                if pending_id is not None:
                    raise _bad(index, pending_id, base_offset + pos, "two id frames in a row: an id frame "
                               "names the zstd frame that follows it")
                pending_id = _id_text(bytes(data[pos + 8:end]), index, base_offset + pos)
                pending_at = pos
            pos = end
            continue
        try:
            header = zstd_frame_header(data, pos)
            end = _zstd_frame_end(data, pos, header)
        except ValueError as exc:
            what = str(exc)
            if bytes(data[pos:pos + 4]) != ZSTD_MAGIC and index > 0:
                what += ": bytes between frames that start no frame"
            raise _bad(index, pending_id, base_offset + pos, what) from None
        frame_id = pending_id if pending_id is not None else str(index)
        out.append(Frame(index, frame_id, base_offset + pos, bytes(data[pos:end]), header.dict_id,
                         header.content_size, header.checksum))
        pending_id = None
        pos = end
    if pending_id is not None:
        raise _bad(len(out), pending_id, base_offset + pending_at,
                   "the body ends after an id frame: it names no frame")
    return out


def _bad(index: int, frame_id: str | None, offset: int, what: str) -> FrameBodyError:
    return FrameBodyError(400, f"{_name(index, frame_id, offset)}: {what}", index=index, offset=offset)


def _id_text(raw: bytes, index: int, offset: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if not text or len(text) > MAX_ID_CHARS:
        raise _bad(index, None, offset, f"the id frame before it must hold 1-{MAX_ID_CHARS} characters of "
                   f"UTF-8 (it holds {len(raw):,} bytes{', not UTF-8' if raw and not text else ''})")
    return text


def id_frame(frame_id: str) -> bytes:
    """The skippable frame that names the zstd frame written after it (:data:`ID_MAGIC`)."""
    raw = frame_id.encode("utf-8")
    if not 1 <= len(frame_id) <= MAX_ID_CHARS:
        raise ValueError(f"a frame id has 1-{MAX_ID_CHARS} characters")
    return ID_MAGIC.to_bytes(4, "little") + len(raw).to_bytes(4, "little") + raw


# -- zlib (deflate with a preset dictionary) --------------------------------------------------------


def check_zlib_frame(data: bytes, spec: FrameSpec, name: str) -> None:
    """Refuse a zlib stream the model cannot read, from its 6-byte header alone.

    Raises:
        FrameBodyError: 400 not a zlib stream (CMF/FLG check bits, method) or too short to
            be one; 413 over ``max_frame_bytes``; 422 no preset dictionary, or another one.
    """
    if not data:
        raise FrameBodyError(400, f"{name} is empty")
    if len(data) > spec.max_frame_bytes:
        raise FrameBodyError(413, f"{name} is {len(data):,} bytes, over the model's frame limit of "
                                  f"{spec.max_frame_bytes:,}: cut the window into smaller chunks at line boundaries")
    if len(data) < 2:
        raise FrameBodyError(400, f"{name} is not a zlib stream: {len(data)} byte")
    cmf, flg = data[0], data[1]
    if cmf & 0x0F != 8 or cmf >> 4 > 7 or (cmf << 8 | flg) % 31:
        raise FrameBodyError(400, f"{name} is not a zlib stream (its header {data[:2].hex()} is not a deflate "
                                  "header with valid check bits)")
    if not flg & 0x20:
        raise FrameBodyError(422, f"{name} names no preset dictionary (FDICT clear): compress it with the "
                                  "source's dictionary, from the dictionary endpoint")
    if len(data) < 11:  # header, dictionary id, at least one byte of deflate data, Adler-32
        raise FrameBodyError(400, f"{name} is truncated: {len(data)} bytes, shorter than any zlib stream "
                                  "with a preset dictionary")
    dict_adler = int.from_bytes(data[2:6], "big")
    if dict_adler != spec.zlib_dict_adler:
        raise FrameBodyError(422, f"{name} was compressed with the preset dictionary whose Adler-32 is "
                                  f"{dict_adler:08x}, not the source's {spec.zlib_dict_adler:08x}: fetch it "
                                  "from the dictionary endpoint")


# -- JSON: {"frames": [{"id": ..., "data": ...}, ...]} --------------------------------------------

_SHAPE = 'the JSON body must be an object {"frames": [{"id": "optional id", "data": "<base64>"}, ...]}'
_WS = JSON_WS


def _json_fail(text: str, pos: int, expected: str) -> FrameBodyError:
    """400 where the text at ``pos`` is not JSON at all, else 422 (valid JSON, wrong shape)."""
    return json_error(text, pos, expected, shape=_SHAPE, error=FrameBodyError)  # type: ignore[return-value]


def _jstring(text: str, pos: int) -> tuple[str, int]:
    return json_string(text, pos, error=FrameBodyError)


def parse_json_frames(body: bytes, *, max_frames: int, max_frame_bytes: int) -> list[tuple[str | None, bytes]]:
    """``(id or None, frame bytes)`` of each frame of a JSON body, in order.

    A small scanner that takes exactly the one shape and refuses anything else at the
    first character that does not fit: no nesting beyond it, no recursion, nothing built
    for a body that is then refused. Base64 is decoded strictly (standard alphabet,
    padding as written), and a frame whose text alone is over the size limit is refused
    before it is decoded.

    Raises:
        FrameBodyError: 400 invalid JSON or base64, 413 too many frames or a frame too
            large, 422 valid JSON of another shape.
    """
    try:
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:
        raise FrameBodyError(400, f"body is not valid JSON: bad UTF-8 at byte {exc.start:,}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    ws = _WS.match
    pos = ws(text).end()
    if not text.startswith("{", pos):
        raise _json_fail(text, pos, 'an object {"frames": [...]}')
    pos = ws(text, pos + 1).end()
    frames: list[tuple[str | None, bytes]] | None = None
    while not text.startswith("}", pos):
        if not text.startswith('"', pos):
            raise _json_fail(text, pos, "a key")
        key, pos = _jstring(text, pos)
        if key != "frames":
            raise FrameBodyError(422, f"{_SHAPE}: unknown key {key[:64]!r} at character {pos:,}")
        if frames is not None:
            raise FrameBodyError(422, f'{_SHAPE}: "frames" is given twice (at character {pos:,})')
        pos = ws(text, pos).end()
        if not text.startswith(":", pos):
            raise _json_fail(text, pos, "':'")
        pos = ws(text, pos + 1).end()
        if not text.startswith("[", pos):
            raise _json_fail(text, pos, "an array of frames")
        frames, pos = _frames_array(text, ws(text, pos + 1).end(), max_frames, max_frame_bytes)
        if text.startswith(",", pos):
            pos = ws(text, pos + 1).end()
            if text.startswith("}", pos):
                raise _json_fail(text, pos, "a key")
            continue
        if not text.startswith("}", pos):
            raise _json_fail(text, pos, "',' or '}'")
    pos = ws(text, pos + 1).end()
    if pos < len(text):
        raise _json_fail(text, pos, "the end of the body")
    if frames is None:
        raise FrameBodyError(422, f'{_SHAPE}: it has no "frames"')
    return frames


def _frames_array(text: str, pos: int, max_frames: int, max_frame_bytes: int
                  ) -> tuple[list[tuple[str | None, bytes]], int]:
    ws = _WS.match
    out: list[tuple[str | None, bytes]] = []
    if text.startswith("]", pos):
        return out, ws(text, pos + 1).end()
    max_chars = 4 * (-(-max_frame_bytes // 3)) + 4  # the base64 of the largest frame, with slack
    while True:
        index = len(out)
        if index >= max_frames:
            raise FrameBodyError(413, f"more than {max_frames:,} frames in one request, the limit; "
                                      "send smaller batches", index=index)
        if not text.startswith("{", pos):
            raise _json_fail(text, pos, f"frame {index:,}: an object {{\"id\": ..., \"data\": ...}}")
        pos = ws(text, pos + 1).end()
        fields: dict[str, str] = {}
        while not text.startswith("}", pos):
            if not text.startswith('"', pos):
                raise _json_fail(text, pos, "a key")
            key, pos = _jstring(text, pos)
            if key not in ("id", "data"):
                raise FrameBodyError(422, f"{_SHAPE}: frame {index:,} has an unknown key {key[:64]!r} "
                                          f"(at character {pos:,})", index=index)
            if key in fields:
                raise FrameBodyError(422, f'{_SHAPE}: frame {index:,} gives "{key}" twice', index=index)
            pos = ws(text, pos).end()
            if not text.startswith(":", pos):
                raise _json_fail(text, pos, "':'")
            pos = ws(text, pos + 1).end()
            if not text.startswith('"', pos):
                raise _json_fail(text, pos, f'frame {index:,}: a string for "{key}"')
            value, pos = _jstring(text, pos)
            if key == "id" and not 1 <= len(value) <= MAX_ID_CHARS:
                raise FrameBodyError(422, f"frame {index:,}: an id has 1-{MAX_ID_CHARS} characters "
                                          f"(it has {len(value):,})", index=index)
            if key == "data" and len(value) > max_chars:
                raise FrameBodyError(413, f"{_name(index, fields.get('id'), None)} is {len(value):,} "
                                          f"characters of base64, more than a frame of the model's limit "
                                          f"of {max_frame_bytes:,} bytes takes: cut the window into smaller "
                                          "chunks at line boundaries", index=index)
            fields[key] = value
            pos = ws(text, pos).end()
            if text.startswith(",", pos):
                pos = ws(text, pos + 1).end()
                if text.startswith("}", pos):
                    raise _json_fail(text, pos, "a key")
                continue
            if not text.startswith("}", pos):
                raise _json_fail(text, pos, "',' or '}'")
        if "data" not in fields:
            raise FrameBodyError(422, f'{_SHAPE}: {_name(index, fields.get("id"), None)} has no "data"',
                                 index=index)
        try:
            data = base64.b64decode(fields["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise FrameBodyError(400, f"{_name(index, fields.get('id'), None)}: \"data\" is not valid base64 "
                                      f"(standard alphabet, with padding): {exc}", index=index) from None
        out.append((fields.get("id"), data))
        pos = ws(text, pos + 1).end()
        if text.startswith(",", pos):
            pos = ws(text, pos + 1).end()
            continue
        if text.startswith("]", pos):
            return out, ws(text, pos + 1).end()
        raise _json_fail(text, pos, "',' or ']'")


# -- a whole request body --------------------------------------------------------------------------


def frame_media_type(content_type: str, content_encoding: str) -> str:
    """The body's media type, where the frames endpoint takes it (checked before the body is read).

    Raises:
        FrameBodyError: 415, any Content-Encoding (frames are compressed already and are not
            inflated) or a Content-Type other than the binary and JSON forms.
    """
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    enc = (content_encoding or "identity").strip().lower()
    if enc not in ("", "identity"):
        raise FrameBodyError(415, f"Content-Encoding {content_encoding[:64]!r} on frames: the frames are "
                                  "compressed already and are scored as they are; send them without one")
    if ctype not in BINARY_TYPES + FRAME_JSON_TYPES:
        raise FrameBodyError(415, f"unsupported Content-Type {(content_type or '(none)')[:64]!r} for frames: use "
                                  f"{', '.join(BINARY_TYPES + FRAME_JSON_TYPES)}")
    return ctype


def frame_body(body: bytes, content_type: str, content_encoding: str, spec: FrameSpec, *,
               max_body_bytes: int, max_frames: int) -> list[Frame]:
    """Every frame of a request body, each checked from its header for ``spec``'s model.

    Raises:
        FrameBodyError: 415 a content type or coding this endpoint does not take (or the
            binary form for a zlib model), 413 over a limit, 400 not frames (truncated,
            garbage, bad base64, another format), 422 no frame, the wrong dictionary, or
            JSON of another shape. Every reason about one frame names it.
    """
    ctype = frame_media_type(content_type, content_encoding)
    if ctype in BINARY_TYPES and spec.codec != "zstd":
        raise FrameBodyError(415, f"this source's model reads {spec.codec} frames (zlib streams), which do "
                                  "not say where they end: send them as JSON, {\"frames\": [{\"data\": "
                                  "\"<base64>\"}]}")
    if len(body) > max_body_bytes:
        raise FrameBodyError(413, f"body is {len(body):,} bytes, over the limit of {max_body_bytes:,}; "
                                  "send smaller batches")
    if ctype in BINARY_TYPES:
        frames = split_zstd_frames(body, max_frames=max_frames)
    else:
        frames = []
        for index, (frame_id, data) in enumerate(
                parse_json_frames(body, max_frames=max_frames, max_frame_bytes=spec.max_frame_bytes)):
            fid = frame_id if frame_id is not None else str(index)
            if spec.codec == "zstd":
                frames.append(_one_zstd_frame(data, index, fid, spec))
            else:
                frames.append(Frame(index, fid, None, data))
    if not frames:
        raise FrameBodyError(422, "empty batch: the body holds no frame")
    for f in frames:
        name = _name(f.index, f.id, f.offset)
        if spec.codec == "zstd":
            _check_zstd(f, spec, name)
        else:
            check_zlib_frame(f.data, spec, name)
    return frames


def _one_zstd_frame(data: bytes, index: int, frame_id: str, spec: FrameSpec) -> Frame:
    """A JSON frame's bytes: exactly one whole zstd frame."""
    name = _name(index, frame_id, None)
    if not data:
        raise FrameBodyError(400, f"{name} is empty", index=index)
    if len(data) > spec.max_frame_bytes:
        raise FrameBodyError(413, f"{name} is {len(data):,} bytes, over the model's frame limit of "
                                  f"{spec.max_frame_bytes:,}: cut the window into smaller chunks at line boundaries",
                             index=index)
    try:
        header = zstd_frame_header(data)
        end = _zstd_frame_end(data, 0, header)
    except ValueError as exc:
        raise FrameBodyError(400, f"{name}: {exc}", index=index) from None
    if end != len(data):
        raise FrameBodyError(400, f"{name} holds {len(data) - end:,} bytes after the end of its zstd frame "
                                  f"(byte {end:,}): one frame per entry", index=index)
    return Frame(index, frame_id, None, data, header.dict_id, header.content_size, header.checksum)


def _check_zstd(f: Frame, spec: FrameSpec, name: str) -> None:
    if len(f.data) > spec.max_frame_bytes:
        raise FrameBodyError(413, f"{name} is {len(f.data):,} bytes, over the model's frame limit of "
                                  f"{spec.max_frame_bytes:,}: cut the window into smaller chunks at line boundaries",
                             index=f.index, offset=f.offset)
    if f.dict_id != spec.dict_id:
        raise FrameBodyError(422, f"{name} was compressed with dictionary id {f.dict_id}, not the source's "
                                  f"dictionary id {spec.dict_id}: fetch it from the dictionary endpoint",
                             index=f.index, offset=f.offset)
    from logad.methods.clad.frames import FrameError, check_zstd_frame

    try:  # the model's own header check, as it reads frames
        check_zstd_frame(f.data, dict_id=spec.dict_id, max_frame_bytes=spec.max_frame_bytes, name=name)
    except FrameError as exc:
        raise FrameBodyError(400, str(exc), index=f.index, offset=f.offset) from None
