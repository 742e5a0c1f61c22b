"""Find input files and read them as batches of lines.

Inputs are files or folders on a local path or any pyarrow filesystem URI
(``s3://``, ``gs://``, ``hdfs://``, ``file://``). Plain files larger than a
shard are read as byte ranges, so one big file spreads across workers. A gzip
or zstd stream cannot be entered in the middle, so where there are fewer
files than readers, several readers share one stream (:func:`share_streams`):
each decompresses all of it, which is cheap, and parses only its own
segments of it, which is where the time goes.

Nothing is lost silently: bytes that do not decode are replaced and the line
counted; a corrupt compressed stream ends that file with an error naming the
file and the compressed byte offset, and every line decoded before it is kept.
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import zstandard

from logad.errors import DataError

__all__ = [
    "LINES_SCHEMA",
    "InputFile",
    "ReadStats",
    "Shard",
    "list_inputs",
    "plan_shards",
    "read_shard",
    "resolve_fs",
    "share_streams",
    "trim_lines",
]

LINES_SCHEMA = pa.schema(
    [
        pa.field("file_idx", pa.int32()),
        pa.field("offset", pa.int64()),     # byte offset of the line in the (decompressed) file
        pa.field("line_no", pa.int64()),    # 0-based line number (in a byte range: from its start)
        pa.field("raw", pa.string()),
    ]
)

_CHUNK_BYTES = 4 << 20
# A stream shared by several readers is cut, at line breaks, into segments of about
# this many (decompressed) bytes, dealt round-robin to the readers.
SEGMENT_BYTES = 16 << 20


@dataclass(frozen=True)
class InputFile:
    index: int
    uri: str            # as the user can read it (local path or URI)
    size: int
    compression: str    # "none" | "gzip" | "zstd"
    input: str = ""     # the INPUT argument it was found under, as given
    path: str = ""      # the file as the user names it: INPUT as given, joined with the path inside it

    @property
    def shown(self) -> str:
        """The file's path as the user gave it (or found under the input folder they gave)."""
        return self.path or self.uri

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Shard:
    """A piece of one input file for one reader.

    Either a byte range ``[start, end)`` of a plain file (the lines that start
    in it), or, with ``parts`` > 1, reader ``part`` of ``parts`` sharing a whole
    stream: the stream is cut at line breaks into segments of about
    ``SEGMENT_BYTES`` and this reader parses segments ``part``, ``part + parts``, …
    """

    file: InputFile
    start: int = 0
    end: int | None = None   # None: to the end of the file (always for compressed files)
    part: int = 0
    parts: int = 1

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end is None and self.parts == 1

    @property
    def size(self) -> int:
        """This shard's share of the file's (stored) bytes."""
        return ((self.end or self.file.size) - self.start) // self.parts

    @property
    def raw_size(self) -> int:
        """This shard's share of the file's log bytes; compressed files are guessed at
        5× their size (the raw size is only known once decompressed)."""
        return self.size if self.file.compression == "none" else self.size * 5


@dataclass
class ReadStats:
    files: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    lines_with_replaced_bytes: int = 0
    empty_lines: int = 0
    errors: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "bytes_read": self.bytes_read,
            "lines_read": self.lines_read,
            "lines_with_replaced_bytes": self.lines_with_replaced_bytes,
            "empty_lines": self.empty_lines,
            "errors": list(self.errors),
        }


def resolve_fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path for a local path or URI."""
    if "://" in uri:
        try:
            return pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise DataError(f"cannot open {uri}: {exc}") from exc
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def _compression_of(name: str) -> str:
    low = name.lower()
    if low.endswith((".gz", ".gzip")):
        return "gzip"
    if low.endswith((".zst", ".zstd")):
        return "zstd"
    return "none"


def _join(uri: str, fs_base: str, fs_path: str) -> str:
    """Turn a path found under ``fs_base`` back into the user's form of ``uri``."""
    rel = fs_path[len(fs_base):].lstrip("/")
    return uri.rstrip("/") + "/" + rel


def list_inputs(inputs: list[str]) -> list[InputFile]:
    """Expand files and folders (recursively) into an ordered list of input files.

    Hidden files (names starting with '.') inside folders are skipped.

    Raises:
        DataError: an input does not exist, or no file was found.
    """
    found: list[tuple[str, int, str, str]] = []  # (uri, size, input, path as the user names it)
    for uri in inputs:
        fs, path = resolve_fs(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"input {uri} does not exist")
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            files = sorted(
                (i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")),
                key=lambda i: i.path,
            )
            base = uri if "://" in uri else path
            for i in files:
                found.append((_join(base, path, i.path), i.size, uri, _join(uri, path, i.path)))
        else:
            found.append((uri if "://" in uri else path, info.size, uri, uri))
    if not found:
        raise DataError(f"no input files found in {inputs}")
    return [InputFile(k, u, s, _compression_of(u), given, shown) for k, (u, s, given, shown) in enumerate(found)]


def plan_shards(files: list[InputFile], *, shard_bytes: int = 64 << 20, split_plain: bool = True) -> list[Shard]:
    """Cut plain files into byte ranges of about ``shard_bytes``; others stay whole."""
    shards: list[Shard] = []
    for f in files:
        if f.compression != "none" or not split_plain or f.size <= shard_bytes:
            shards.append(Shard(f))
            continue
        starts = list(range(0, f.size, shard_bytes))
        for a, b in zip(starts, starts[1:] + [None], strict=True):
            shards.append(Shard(f, a, b))
    return shards


def share_streams(shards: list[Shard], readers: int, *, segment_bytes: int = SEGMENT_BYTES) -> list[Shard]:
    """Let several readers share each whole-file stream where there are fewer shards
    than ``readers`` (one big compressed file, say), so that every reader parses.

    Each of a stream's readers decompresses all of it and parses only its own
    segments; decompression costs a few percent of parsing (HDFS logs: zstd 3 %,
    gzip 6 %), so the wall time still falls with every reader added. A stream is
    never shared by more readers than it has segments (see :attr:`Shard.raw_size`).
    """
    if len(shards) >= readers:
        return shards
    per = -(-readers // len(shards))
    out: list[Shard] = []
    for s in shards:
        k = min(per, max(1, s.raw_size // segment_bytes)) if s.whole else 1
        if k > 1:
            out.extend(Shard(s.file, part=i, parts=k) for i in range(k))
        else:
            out.append(s)
    return out


def read_shard(
    shard: Shard, *, encoding: str = "utf-8", batch_lines: int = 65536, segment_bytes: int = SEGMENT_BYTES
) -> Iterator[tuple[pa.Table, ReadStats]]:
    """Yield (lines table, stats of this batch) for one shard, streaming.

    The last batch's stats also carry any read error of the file. Offsets and
    line numbers are the same whichever way a file is cut into shards (line
    numbers are -1 inside a byte range that does not start the file).
    """
    f = shard.file
    fs, path = resolve_fs(f.uri)
    stats = ReadStats(files=1 if shard.start == 0 and shard.part == 0 else 0)
    fh = None
    try:
        if f.compression == "none":
            fh = fs.open_input_file(path)
            first = _line_start(fh, shard.start)
            chunks = _plain_chunks(fh)
        else:
            fh = fs.open_input_stream(path, compression=None)
            first = 0
            chunks = _decompressed_chunks(fh, f.compression)
        if shard.parts == 1:
            yield from _read_lines(chunks, shard, first, encoding, batch_lines, stats)
            return
        for pos, line_no, data, error in _own_segments(chunks, shard.part, shard.parts, segment_bytes):
            if error is not None:  # the lines before the corrupt data are this reader's
                data = data[: data.rfind(b"\n") + 1]
                stats.errors.append({"file": f.uri, "offset": error.offset, "error": str(error)})
            yield from _read_lines(iter((data,)), shard, pos, encoding, batch_lines, stats, line_no=line_no)
    except OSError as exc:  # an unreadable file: report it and let the others go on
        stats.errors.append({"file": f.uri, "offset": 0, "error": f"cannot read: {exc}"})
        yield _empty_table(), _flush(stats)
    finally:
        if fh is not None:
            fh.close()


def _empty_table() -> pa.Table:
    return LINES_SCHEMA.empty_table()


class _Corrupt(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset


def _plain_chunks(fh) -> Iterator[bytes]:
    while chunk := fh.read(_CHUNK_BYTES):
        yield chunk


_COMPRESSED_CHUNK = 64 << 10


def _decompressed_chunks(fh, compression: str) -> Iterator[bytes]:
    """Decompress frame by frame (zstd) or member by member (gzip), 64 KiB at a time.

    A corrupt frame raises :class:`_Corrupt` with the compressed offset of the
    chunk where decoding failed; everything decoded before it has been yielded.
    """
    def new():
        if compression == "zstd":
            return zstandard.ZstdDecompressor().decompressobj()
        return zlib.decompressobj(wbits=31)

    dobj, pos, pending, fed = new(), 0, b"", False
    while True:
        data = pending or fh.read(_COMPRESSED_CHUNK)
        pending = b""
        if not data:
            break
        fed = True
        try:
            out = dobj.decompress(data)
        except (zstandard.ZstdError, zlib.error) as exc:
            raise _Corrupt(pos, f"corrupt {compression} data: {exc}") from exc
        if dobj.eof:
            rest = dobj.unused_data
            if len(rest) == len(data) and not out:  # nothing consumed: not a frame at all
                raise _Corrupt(pos, f"corrupt {compression} data: no valid frame at this offset")
            pos += len(data) - len(rest)
            pending = rest
            dobj, fed = new(), False
        else:
            pos += len(data)
        if out:
            yield out
    if fed and not dobj.eof:
        raise _Corrupt(pos, f"corrupt {compression} data: the stream ends in the middle of a frame")


def _own_segments(chunks: Iterator[bytes], part: int, parts: int, segment_bytes: int):
    """This reader's segments of a shared stream: (offset, first line number, bytes, error).

    The stream is cut after the first line break once a segment holds
    ``segment_bytes``, the same way in every reader; segment ``j`` goes to reader
    ``j % parts``. Other readers' segments are only counted (bytes and line
    breaks), never copied. A corrupt stream ends the segment it is in, which
    its owner gets with the error (and only its whole lines).
    """
    j = pos = line_no = size = 0
    held: list[bytes] = []
    error: _Corrupt | None = None
    try:
        for chunk in chunks:
            held.append(chunk)
            size += len(chunk)
            if size < segment_bytes:
                continue
            cut = chunk.rfind(b"\n") + 1
            if not cut:  # no line break in this chunk: the segment grows
                continue
            rest = chunk[cut:]
            held[-1] = chunk[:cut]
            if j % parts == part:
                data = b"".join(held)
                yield pos, line_no, data, None
                line_no += data.count(b"\n")
            else:
                line_no += sum(c.count(b"\n") for c in held)
            pos += size - len(rest)
            j += 1
            held, size = ([rest] if rest else []), len(rest)
    except _Corrupt as exc:
        error = exc
    if j % parts == part and (held or error is not None):
        yield pos, line_no, b"".join(held), error


def _line_start(fh: pa.NativeFile, start: int) -> int:
    """Position ``fh`` at the first line that starts at or after ``start``; return it."""
    if start == 0:
        return 0
    fh.seek(start - 1)
    skipped = 0
    while True:
        chunk = fh.read(1 << 16)
        if not chunk:
            break
        i = chunk.find(b"\n")
        if i >= 0:
            first = start - 1 + skipped + i + 1
            fh.seek(first)
            return first
        skipped += len(chunk)
    first = start - 1 + skipped
    fh.seek(first)
    return first


def _read_lines(chunks, shard: Shard, pos: int, encoding: str, batch_lines: int, stats: ReadStats,
                line_no: int | None = None):
    # Lines are cut at b"\n" over whole chunks (numpy finds the breaks, one Arrow binary
    # array holds the lines) and decoded per batch: no Python object per line in UTF-8
    f = shard.file
    end = shard.end
    if line_no is None:
        # a byte range counts from its own start: the driver adds the lines of the ranges
        # before it once every range is read (see :func:`line_bases`)
        line_no = 0
    leftover = b""
    pend: list[pa.Array] = []
    pend_off: list[np.ndarray] = []
    pend_n = 0
    done = False
    while not done:
        try:
            chunk = next(chunks, b"")
        except _Corrupt as exc:
            stats.errors.append({"file": f.uri, "offset": exc.offset, "error": str(exc)})
            chunk = b""
            leftover = b""  # a cut-off partial line is not a line
        if not chunk:
            buf = leftover + b"\n" if leftover else b""  # a last line without a line break
            leftover = b""
            done = True
        else:
            buf = leftover + chunk
        if not buf:
            continue
        data = np.frombuffer(buf, np.uint8)
        nl = np.flatnonzero(data == 10)
        if not len(nl):
            leftover = buf
            continue
        cut = int(nl[-1]) + 1
        starts = np.concatenate(([0], nl[:-1] + 1)).astype(np.int64)
        bounds = np.concatenate((starts, [cut])).astype(np.int32)
        lines = pa.Array.from_buffers(pa.binary(), len(starts), [None, pa.py_buffer(bounds), pa.py_buffer(buf[:cut])])
        leftover = buf[cut:]
        lens = np.diff(bounds).astype(np.int64)  # with the line break
        offs = pos + starts
        pos += cut
        if end is not None and offs[-1] >= end:
            keep = int(np.searchsorted(offs, end, side="left"))
            lines, offs, lens = lines.slice(0, keep), offs[:keep], lens[:keep]
            done = True
        stats.bytes_read += int(lens.sum())  # the bytes of this shard's own lines
        if not len(lines):
            continue
        pend.append(lines)
        pend_off.append(offs)
        pend_n += len(lines)
        while pend_n >= batch_lines:
            merged = pa.concat_arrays(pend) if len(pend) > 1 else pend[0]
            offs_all = np.concatenate(pend_off)
            table, line_no = _arrow_table(merged.slice(0, batch_lines), offs_all[:batch_lines], f.index, line_no,
                                          encoding, stats)
            pend, pend_off, pend_n = [merged.slice(batch_lines)], [offs_all[batch_lines:]], pend_n - batch_lines
            yield table, _flush(stats)
    if pend_n:
        merged = pa.concat_arrays(pend) if len(pend) > 1 else pend[0]
        table, line_no = _arrow_table(merged, np.concatenate(pend_off), f.index, line_no, encoding, stats)
        yield table, _flush(stats)
    elif stats.files or stats.errors or stats.bytes_read or stats.empty_lines:
        yield _empty_table(), _flush(stats)


def _arrow_table(lines: pa.Array, offs: np.ndarray, file_idx: int, line_no: int, encoding: str,
                 stats: ReadStats):
    """A lines table from binary lines that still end in their line break.

    UTF-8 is decoded by one Arrow cast; another encoding, or a batch with
    undecodable bytes (replaced and counted), is decoded line by line.
    """
    n = len(lines)
    body = pc.binary_slice(lines, 0, -1)  # the "\n"
    if codecs.lookup(encoding).name != "utf-8":
        return _to_table(body.to_pylist(), offs, file_idx, line_no, encoding, stats)
    try:
        text = body.cast(pa.string())
    except pa.ArrowInvalid:
        return _to_table(body.to_pylist(), offs, file_idx, line_no, encoding, stats)
    nums = np.arange(line_no, line_no + n, dtype=np.int64) if line_no >= 0 else np.full(n, -1, np.int64)
    text, nonempty = trim_lines(text)
    stats.empty_lines += int(n - nonempty.sum())
    stats.lines_read += n
    if not nonempty.all():
        idx = np.flatnonzero(nonempty)
        text = text.take(pa.array(idx))
        offs, nums = offs[idx], nums[idx]
    table = pa.table(
        {
            "file_idx": pa.array(np.full(len(text), file_idx, np.int32)),
            "offset": pa.array(offs, pa.int64()),
            "line_no": pa.array(nums, pa.int64()),
            "raw": text,
        },
        schema=LINES_SCHEMA,
    )
    return table, (line_no + n if line_no >= 0 else -1)


def trim_lines(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Lines without their line break: one trailing ``"\r"`` dropped, and which of them
    hold more than whitespace (the others are counted as empty and skipped). The rule
    for every line logad reads, from a file or from a request."""
    text = pc.if_else(pc.ends_with(text, pattern="\r"), pc.utf8_slice_codeunits(text, 0, -1), text)
    return text, pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0).to_numpy(zero_copy_only=False)


def _flush(stats: ReadStats) -> ReadStats:
    out = ReadStats(stats.files, stats.bytes_read, stats.lines_read, stats.lines_with_replaced_bytes,
                    stats.empty_lines, list(stats.errors))
    stats.files = stats.bytes_read = stats.lines_read = 0
    stats.lines_with_replaced_bytes = stats.empty_lines = 0
    stats.errors.clear()
    return out


def _to_table(parts: list[bytes], offs: np.ndarray, file_idx: int, line_no: int, encoding: str, stats: ReadStats):
    n = len(parts)
    try:
        text = b"\n".join(parts).decode(encoding).split("\n")
        if len(text) != n:  # an encoding where b"\n" is not the line break
            raise UnicodeDecodeError(encoding, b"", 0, 1, "line count changed")
    except UnicodeDecodeError:
        text = []
        for p in parts:
            try:
                text.append(p.decode(encoding))
            except UnicodeDecodeError:
                text.append(p.decode(encoding, errors="replace"))
                stats.lines_with_replaced_bytes += 1
    text = [t[:-1] if t.endswith("\r") else t for t in text]
    nums = np.arange(line_no, line_no + n, dtype=np.int64) if line_no >= 0 else np.full(n, -1, np.int64)
    nonempty = np.fromiter((bool(t.strip()) for t in text), dtype=bool, count=n)
    stats.empty_lines += int(n - nonempty.sum())
    stats.lines_read += n
    if not nonempty.all():
        idx = np.flatnonzero(nonempty)
        text = [text[i] for i in idx]
        offs, nums = offs[idx], nums[idx]
    table = pa.table(
        {
            "file_idx": pa.array(np.full(len(text), file_idx, np.int32)),
            "offset": pa.array(offs, pa.int64()),
            "line_no": pa.array(nums, pa.int64()),
            "raw": pa.array(text, pa.string()),
        },
        schema=LINES_SCHEMA,
    )
    return table, (line_no + n if line_no >= 0 else -1)
