"""Find input files and read them as batches of lines.

Inputs are files or folders on a local path or any pyarrow filesystem URI
(``s3://``, ``gs://``, ``hdfs://``, ``file://``). Plain files larger than a
shard are read as byte ranges, so one big file spreads across workers. A gzip
or zstd stream cannot be entered in the middle, so where there are fewer
files than readers, several readers share one stream (:func:`share_streams`):
each decompresses all of it, which is cheap, and parses only its own
segments of it, which is where the time goes.

Nothing is lost silently, and dirty input never stops a run:

* bytes that do not decode are replaced (U+FFFD) and NUL bytes removed; such
  lines are kept and counted, with their file and first line numbers;
* a line longer than ``max_line_bytes`` is skipped and counted the same way,
  and memory stays bounded whatever the line length (no line is ever held
  whole beyond that size);
* a file that is not text (binary data in its first 64 KiB) is skipped and
  reported; a file whose name says ``.gz``/``.zst`` but whose bytes say
  otherwise is read as what it is, with a warning;
* a corrupt zstd frame or gzip member is reported with the file and the
  compressed byte offset where decoding failed; every line decoded before it is
  kept (the decompressor is fed 1 KiB at a time, so that is everything up to the
  damaged block), and reading goes on at the next good frame (member) after it.
  A truncated stream ends its file with an error naming the file's size;
* folder walks report dangling symbolic links, link loops, named pipes and
  devices, and files reached twice through links (read once); a file that
  cannot be read is reported and the others go on.
"""

from __future__ import annotations

import codecs
import errno
import functools
import os
import stat as stat_mod
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
    "DEFAULT_MAX_LINE_BYTES",
    "LINES_SCHEMA",
    "InputFile",
    "InputListing",
    "ReadStats",
    "Shard",
    "find_inputs",
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

DEFAULT_MAX_LINE_BYTES = 1 << 20
"""Longest line kept (bytes, without its line break); longer ones are skipped and counted."""

_CHUNK_BYTES = 4 << 20
# A stream shared by several readers is cut, at line breaks, into segments of about
# this many (decompressed) bytes, dealt round-robin to the readers.
SEGMENT_BYTES = 16 << 20
# Compressed bytes read at a time, and fed to the decompressor at a time: small feeds
# bound what one call can produce (a zstd block of zeros expands 40,000-fold) and what a
# corrupt block can take with it, and cost nothing (they are even faster than 64 KiB).
_COMPRESSED_CHUNK = 64 << 10
_FEED_BYTES = 1 << 10
# After a corrupt frame, the next frame header is looked for from the byte after the bad
# frame's own header when the bad frame is at most this long (its bytes are kept while it
# is read), else from where decoding failed: damage that made the decoder read on into the
# next frames would otherwise take them with it.
_RESCAN_BYTES = 1 << 20
# Lines (bytes) a batch holds at most, besides ``batch_lines``: long lines make short batches.
_BATCH_BYTES = 32 << 20
# What the text-or-binary test looks at: the first bytes of the (decompressed) file.
_HEAD_BYTES = 64 << 10
# Line numbers kept per (file, kind) of line problem; the counts are always complete.
_EXAMPLES = 10

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class InputFile:
    index: int
    uri: str            # as the user can read it (local path or URI)
    size: int
    compression: str    # "none" | "gzip" | "zstd" (from the name; the bytes have the last word)
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
    def speaks_for_file(self) -> bool:
        """Whether this shard reports what concerns the whole file (skipped, binary,
        misnamed): the first range or reader; the others stay quiet about it."""
        return self.start == 0 and self.part == 0

    @property
    def size(self) -> int:
        """This shard's share of the file's (stored) bytes."""
        return ((self.end or self.file.size) - self.start) // self.parts

    @property
    def raw_size(self) -> int:
        """This shard's share of the file's log bytes; compressed files are guessed at
        5× their size (the raw size is only known once decompressed)."""
        return self.size if self.file.compression == "none" else self.size * 5


_COUNTS = ("files", "files_skipped", "bytes_read", "lines_read", "lines_with_replaced_bytes",
           "lines_with_nul_bytes", "lines_too_long", "empty_lines")


@dataclass
class ReadStats:
    """What reading a shard found, batch by batch.

    ``errors`` are file-level problems that cost lines (a file skipped, or the rest
    of it after a corrupt frame): ``{file, kind, offset, error}``. ``warnings`` are
    file-level problems that cost nothing (a misnamed compressed file, a file reached
    twice): ``{file, kind, offset, warning}``. ``problems`` are line-level, per
    (file index, kind): ``[count, offsets, 0-based line numbers]`` of the first
    ``_EXAMPLES`` lines; kinds ``too_long`` (skipped), ``replaced_bytes`` and
    ``nul_bytes`` (kept, repaired).
    """

    files: int = 0
    files_skipped: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    lines_with_replaced_bytes: int = 0
    lines_with_nul_bytes: int = 0
    lines_too_long: int = 0
    empty_lines: int = 0
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    problems: dict[tuple[int, str], list] = field(default_factory=dict)

    def note(self, file_idx: int, kind: str, offsets: np.ndarray, line_nos: np.ndarray) -> None:
        """Count lines of one kind of problem, keeping the first few positions."""
        rec = self.problems.setdefault((file_idx, kind), [0, [], []])
        rec[0] += len(offsets)
        room = _EXAMPLES - len(rec[1])
        if room > 0:
            rec[1] += [int(x) for x in offsets[:room]]
            rec[2] += [int(x) for x in line_nos[:room]]

    def error(self, f: InputFile, kind: str, offset: int, message: str) -> None:
        self.errors.append({"file": f.shown, "kind": kind, "offset": int(offset), "error": message})

    def warn(self, f: InputFile, kind: str, offset: int, message: str) -> None:
        self.warnings.append({"file": f.shown, "kind": kind, "offset": int(offset), "warning": message})

    def to_dict(self) -> dict:
        out: dict = {k: getattr(self, k) for k in _COUNTS}
        out["errors"] = list(self.errors)
        out["warnings"] = list(self.warnings)
        out["line_problems"] = [
            {"file_idx": f, "kind": kind, "count": c, "offsets": list(o), "line_nos": list(n)}
            for (f, kind), (c, o, n) in self.problems.items()
        ]
        return out

    def flush(self) -> ReadStats:
        """A copy of what was gathered since the last flush; this one starts again."""
        out = ReadStats(**{k: getattr(self, k) for k in _COUNTS}, errors=self.errors, warnings=self.warnings,
                        problems=self.problems)
        for k in _COUNTS:
            setattr(self, k, 0)
        self.errors, self.warnings, self.problems = [], [], {}
        return out


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


def _codec_of(head: bytes) -> str:
    """The compression the first bytes of a file show: a zstd frame (or skippable
    frame), a gzip member, or neither."""
    if head[:4] == _ZSTD_MAGIC or (len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and 0x50 <= head[0] <= 0x5F):
        return "zstd"
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    return "none"


def _join(uri: str, fs_base: str, fs_path: str) -> str:
    """Turn a path found under ``fs_base`` back into the user's form of ``uri``."""
    rel = fs_path[len(fs_base):].lstrip("/")
    return uri.rstrip("/") + "/" + rel


@dataclass
class InputListing:
    """The files to read, and what a folder walk skipped or merged, as run-summary
    entries (``errors``: not read; ``warnings``: read, with a remark)."""

    files: list[InputFile]
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)


_KIND_OF_MODE = {stat_mod.S_IFIFO: "a named pipe", stat_mod.S_IFSOCK: "a socket",
                 stat_mod.S_IFCHR: "a character device", stat_mod.S_IFBLK: "a block device"}


def find_inputs(inputs: list[str]) -> InputListing:
    """Expand files and folders (recursively) into an ordered list of input files.

    Hidden files (names starting with '.') inside folders are skipped. Local
    folders are walked following symbolic links, each folder and file once
    (a link to a folder already walked, or a second name of a file, is a
    warning); dangling links, link loops, named pipes, sockets and devices found
    in a folder are reported and skipped.

    Raises:
        DataError: an input does not exist or is not a file or folder, or no file
            was found.
    """
    listing = InputListing([])
    found: list[tuple[str, int, str, str]] = []  # (uri, size, input, path as the user names it)
    seen: dict[tuple[int, int], list] = {}       # (device, inode) of local files → [path shown, added]
    for uri in inputs:
        fs, path = resolve_fs(uri)
        if isinstance(fs, pafs.LocalFileSystem):
            _find_local(uri, path, found, listing, seen)
            continue
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"input {uri} does not exist")
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            files = sorted(
                (i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")),
                key=lambda i: i.path,
            )
            for i in files:
                found.append((_join(uri, path, i.path), i.size, uri, _join(uri, path, i.path)))
        else:
            found.append((uri, info.size, uri, uri))
    if not found:
        raise DataError(f"no input files found in {inputs}")
    listing.files = [InputFile(k, u, s, _compression_of(u), given, shown)
                     for k, (u, s, given, shown) in enumerate(found)]
    return listing


def list_inputs(inputs: list[str]) -> list[InputFile]:
    """The files of :func:`find_inputs` (what a walk skipped is dropped)."""
    return find_inputs(inputs).files


def _find_local(uri: str, path: str, found: list, listing: InputListing, seen: dict) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"input {uri} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot open input {uri}: {exc.strerror}") from exc
    if stat_mod.S_ISREG(st.st_mode):
        _add_local(path, st, uri, uri, found, listing, seen)
        return
    if not stat_mod.S_ISDIR(st.st_mode):
        what = _KIND_OF_MODE.get(stat_mod.S_IFMT(st.st_mode), "not a regular file")
        raise DataError(f"input {uri} is {what}, not a file or folder: copy it to a file first")
    entries: list[tuple[str, os.stat_result]] = []
    walked: dict[tuple[int, int], str] = {}

    def shown(p: str) -> str:
        return _join(uri, path, p) if p != path else uri

    def walk(folder: str, fst: os.stat_result) -> None:
        walked[(fst.st_dev, fst.st_ino)] = folder
        try:
            with os.scandir(folder) as it:
                names = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            listing.errors.append({"file": shown(folder), "kind": "unreadable", "offset": 0,
                                   "error": f"cannot list this folder ({exc.strerror}): skipped"})
            return
        for e in names:
            p = e.path
            if e.name.startswith(".") and not e.is_dir():
                continue  # hidden files (an editor's lock link among them) are not logs
            try:
                est = os.stat(p)  # follows links
            except FileNotFoundError:
                if e.is_symlink():
                    listing.errors.append({"file": shown(p), "kind": "dangling_link", "offset": 0,
                                           "error": f"dangling symbolic link to {os.readlink(p)}: skipped"})
                else:
                    listing.errors.append({"file": shown(p), "kind": "unreadable", "offset": 0,
                                           "error": "removed while the folder was listed: skipped"})
                continue
            except OSError as exc:
                kind = "link_loop" if exc.errno == errno.ELOOP else "unreadable"
                listing.errors.append({"file": shown(p), "kind": kind, "offset": 0,
                                       "error": f"cannot open ({exc.strerror}): skipped"})
                continue
            if stat_mod.S_ISDIR(est.st_mode):
                first = walked.get((est.st_dev, est.st_ino))
                if first is not None:
                    listing.warnings.append({"file": shown(p), "kind": "link_loop", "offset": 0,
                                             "warning": f"the folder {shown(first)} again (a symbolic link): "
                                             "not walked twice"})
                    continue
                walk(p, est)
            elif stat_mod.S_ISREG(est.st_mode):
                entries.append((p, est))
            else:
                what = _KIND_OF_MODE.get(stat_mod.S_IFMT(est.st_mode), "not a regular file")
                listing.errors.append({"file": shown(p), "kind": "not_regular", "offset": 0,
                                       "error": f"{what}, not a regular file: skipped"})

    walk(path, st)
    # a file with several names here is read under its own (not a link's), the first in order
    for p, est in sorted(entries, key=lambda x: (os.path.islink(x[0]), x[0])):
        seen.setdefault((est.st_dev, est.st_ino), [shown(p), False])
    for p, est in sorted(entries, key=lambda x: x[0]):
        _add_local(p, est, uri, shown(p), found, listing, seen)


def _add_local(p: str, st: os.stat_result, given: str, shown: str, found: list, listing: InputListing,
               seen: dict) -> None:
    """Add a local file unless it is read under another name (``seen``: (device, inode)
    → [the name it is read under, whether it is added yet])."""
    rec = seen.setdefault((st.st_dev, st.st_ino), [shown, False])
    if rec[1] or rec[0] != shown:
        listing.warnings.append({"file": shown, "kind": "duplicate", "offset": 0,
                                 "warning": f"the same file as {rec[0]} (another name of it): read once"})
        return
    rec[1] = True
    found.append((p, st.st_size, given, shown))


def plan_shards(files: list[InputFile], *, shard_bytes: int = 64 << 20, split_plain: bool = True) -> list[Shard]:
    """Cut plain files into byte ranges of about ``shard_bytes``; others stay whole.

    A big file with a plain name is only cut when its first bytes are not a gzip
    or zstd header (a rotated log compressed without its suffix is read whole,
    decompressed).
    """
    shards: list[Shard] = []
    for f in files:
        if f.compression != "none" or not split_plain or f.size <= shard_bytes or _looks_compressed(f):
            shards.append(Shard(f))
            continue
        starts = list(range(0, f.size, shard_bytes))
        for a, b in zip(starts, starts[1:] + [None], strict=True):
            shards.append(Shard(f, a, b))
    return shards


def _looks_compressed(f: InputFile) -> bool:
    try:
        fs, path = resolve_fs(f.uri)
        with fs.open_input_stream(path, compression=None) as fh:
            return _codec_of(fh.read(4)) != "none"
    except (OSError, DataError):
        return False  # the reader reports it


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


class _StreamError(Exception):
    """Reading stopped: ``kind`` corrupt | truncated | unreadable, at byte ``offset``
    (compressed for a compressed file)."""

    def __init__(self, kind: str, offset: int, message: str) -> None:
        super().__init__(message)
        self.kind, self.offset = kind, offset


def read_shard(
    shard: Shard, *, encoding: str = "utf-8", batch_lines: int = 65536, segment_bytes: int = SEGMENT_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[tuple[pa.Table, ReadStats]]:
    """Yield (lines table, stats of this batch) for one shard, streaming.

    Offsets and line numbers are the same whichever way a file is cut into
    shards (in a byte range, line numbers count from the range's start; the
    driver adds the lines before it). Memory is bounded by the chunk size, the
    batch size and ``max_line_bytes``, whatever the input.
    """
    f = shard.file
    stats = ReadStats()
    fh = None
    try:
        try:
            fs, path = resolve_fs(f.uri)
            if shard.whole or shard.parts > 1:
                fh = fs.open_input_stream(path, compression=None)
                first = fh.read(_COMPRESSED_CHUNK)
                codec = _codec_of(first)
                magic = {"zstd": _ZSTD_MAGIC, "gzip": _GZIP_MAGIC}.get(f.compression, b"")
                if first and len(first) < len(magic) and magic.startswith(first):  # cut inside the magic
                    if shard.speaks_for_file:
                        stats.files = 1
                        stats.error(f, "truncated", len(first), f"the {f.compression} stream ends in its first "
                                    "bytes: the file is truncated")
                    yield _empty_table(), stats.flush()
                    return
                pos: int | None = 0
                chunks = _plain_chunks(fh, first) if codec == "none" else _decompressed_chunks(fh, codec, first)
                head, chunks = _peek(chunks, _HEAD_BYTES)
            else:  # a byte range of a plain file: judged by the file's head, like the others
                fh = fs.open_input_file(path)
                codec = "none"
                head = fh.read_at(min(_HEAD_BYTES, f.size), 0)
                pos = _line_start(fh, shard.start, shard.end)
                chunks = _plain_chunks(fh, b"", pos or 0)
        except (OSError, DataError) as exc:
            if shard.speaks_for_file:
                stats.files_skipped = 1
                stats.error(f, "unreadable", 0, f"cannot read: {exc}")
            yield _empty_table(), stats.flush()
            return
        named = {"none": "a plain name", "gzip": "a .gz name", "zstd": "a .zst name"}[f.compression]
        why = _not_text(head, encoding)
        if why:
            if shard.speaks_for_file:
                stats.files_skipped = 1
                note = f"; it has {named} but no {f.compression} header" if codec != f.compression else ""
                stats.error(f, "binary", 0, f"not a text file ({why}{note}): skipped")
            yield _empty_table(), stats.flush()
            return
        if shard.speaks_for_file:
            stats.files = 1
            if codec != f.compression and head:
                what = {"none": "plain text", "gzip": "gzip data", "zstd": "zstd data"}[codec]
                stats.warn(f, "misnamed", 0, f"{what} under {named}: read as {what}")
        if pos is None:  # a byte range in which no line starts
            yield _empty_table(), stats.flush()
            return
        events = chunks if shard.parts == 1 else _own_segments(chunks, shard.part, shard.parts, segment_bytes)
        cutter = _LineCutter(pos, 0, max_line_bytes, shard.end)
        yield from _batches(events, cutter, f, encoding, batch_lines, stats)
    finally:
        if fh is not None:
            fh.close()


def _empty_table() -> pa.Table:
    return LINES_SCHEMA.empty_table()


def _peek(chunks: Iterator[bytes | _Gap], n: int) -> tuple[bytes, Iterator[bytes | _Gap]]:
    """The first ``n`` bytes of ``chunks`` (fewer at its end or where reading fails)
    and an iterator that still yields everything, gaps and the failure included."""
    got: list[bytes | _Gap] = []
    size = 0
    failure: _StreamError | None = None
    try:
        while size < n:
            c = next(chunks, None)
            if c is None:
                break
            got.append(c)
            size += len(c) if isinstance(c, bytes) else 0
    except _StreamError as exc:
        failure = exc

    def again() -> Iterator[bytes]:
        yield from got
        if failure is not None:
            raise failure
        yield from chunks

    return b"".join(c for c in got if isinstance(c, bytes))[:n], again()


@functools.lru_cache(maxsize=32)
def _ascii_compatible(encoding: str) -> bool:
    """Whether ASCII bytes (NUL and the line break too) mean themselves in ``encoding``."""
    try:
        return "A\n\x00".encode(encoding) == b"A\n\x00"
    except (LookupError, UnicodeError):
        return False


_CONTROL = np.zeros(256, dtype=bool)
_CONTROL[[*range(1, 8), *range(14, 27), *range(28, 32), 127]] = True  # not \t \n \v \f \r \b ESC, not NUL


def _not_text(head: bytes, encoding: str) -> str | None:
    """Why the first bytes of a file say it is not text, or None.

    NUL bytes are left out of the judgement (a log after a crash often holds runs
    of them, and they are removed from lines anyway); of the other bytes, more
    than 5 % control characters, or (UTF-8) more than 30 % control characters
    and undecodable bytes together, is binary data: random or compressed bytes
    score about 10 % and 50 %, logs 0.
    """
    if not head or not _ascii_compatible(encoding):
        return None
    data = np.frombuffer(head, np.uint8)
    data = data[data != 0]
    if len(data) < 64:
        return None
    control = int(_CONTROL[data].sum())
    if control > 0.05 * len(data):
        return f"{control / len(data):.0%} control bytes in its first {len(head):,} bytes"
    if codecs.lookup(encoding).name == "utf-8":
        body = bytes(data)
        bad = body.decode("utf-8", errors="replace").count("\ufffd") - body.decode(
            "utf-8", errors="ignore").count("\ufffd")
        if control + bad > 0.3 * len(data):
            return f"{(control + bad) / len(data):.0%} undecodable or control bytes in its first {len(head):,} bytes"
    return None


class _Prefixed:
    """A stream with some bytes already read from it."""

    def __init__(self, fh, first: bytes) -> None:
        self.fh, self.first = fh, first

    def read(self, n: int) -> bytes:
        if self.first:
            out, self.first = self.first, b""
            return out
        return self.fh.read(n)


def _plain_chunks(fh, first: bytes = b"", pos: int = 0) -> Iterator[bytes]:
    if first:
        pos += len(first)
        yield first
    while True:
        try:
            chunk = fh.read(_CHUNK_BYTES)
        except OSError as exc:
            raise _StreamError("unreadable", pos, f"reading failed: {exc}") from exc
        if not chunk:
            return
        pos += len(chunk)
        yield chunk


@dataclass(frozen=True)
class _Gap:
    """A damaged stretch of a compressed stream that reading stepped over: decoding
    failed at compressed byte ``offset``; ``message`` says where it went on, if it did."""

    offset: int
    message: str


def _header_ok(buf: bytes, i: int, compression: str) -> bool:
    """Whether a frame (member) header plausibly starts at ``buf[i]``: its magic, and
    reserved bits clear in the bytes after it (a header cut off by the end of ``buf``
    passes; the decoder judges it)."""
    if compression == "zstd":
        return buf[i:i + 4] == _ZSTD_MAGIC and (len(buf) < i + 5 or not buf[i + 4] & 0x08)
    if buf[i:i + 3] != _GZIP_MAGIC + b"\x08":
        return False
    h = buf[i + 3:i + 10]
    return (not h or not h[0] & 0xE0) and (len(h) < 7 or (h[5] in (0, 2, 4) and (h[6] <= 13 or h[6] == 255)))


def _next_header(buf: bytes, compression: str) -> int:
    """Where the first plausible frame (member) header in ``buf`` starts, or -1."""
    magic = _ZSTD_MAGIC if compression == "zstd" else _GZIP_MAGIC
    i = buf.find(magic)
    while i >= 0 and not _header_ok(buf, i, compression):
        i = buf.find(magic, i + 1)
    return i


def _decompressed_chunks(fh, compression: str, first: bytes = b"") -> Iterator[bytes | _Gap]:
    """Decompress frame by frame (zstd) or member by member (gzip), feeding 1 KiB at a
    time and yielding about 4 MiB at a time.

    A corrupt frame does not end the file: everything decoded before it is yielded,
    then a :class:`_Gap` naming the compressed offset of the feed where decoding
    failed, and reading goes on at the next frame header after it (damage that spans
    several frames is one gap). A stream that ends inside a frame (a truncated file)
    raises :class:`_StreamError` with the file's size.
    """
    def new():
        if compression == "zstd":
            return zstandard.ZstdDecompressor().decompressobj()
        return zlib.decompressobj(wbits=31)

    src = _Prefixed(fh, first)
    unit = "frame" if compression == "zstd" else "member"
    dobj, fed = new(), False
    buf, k = b"", 0  # bytes read, and how many of them were fed (or skipped)
    base, start = 0, 0  # the compressed offsets of buf[k] and of the current frame's first byte
    seen: bytearray | None = bytearray()  # the current frame's bytes fed so far (None: over _RESCAN_BYTES)
    at_end = False
    failed: tuple[int, int, str] | None = None  # (offset, its frame's start, why) of a gap not yet reported
    out: list[bytes] = []
    size = 0

    def more() -> bytes:
        nonlocal at_end
        try:
            data = src.read(_COMPRESSED_CHUNK)
        except OSError as exc:
            raise _StreamError("unreadable", base + len(buf) - k,
                               f"reading failed: {exc}; the rest of the file is not read") from exc
        at_end = not data
        return data

    def gap(resumed: int | None) -> _Gap:
        offset, frame, why = failed
        head = f"corrupt {compression} data ({why}) in the {unit} at compressed byte {frame:,}"
        if resumed is None:
            return _Gap(offset, f"{head}; no good {unit} follows it: the rest of the file is not read")
        return _Gap(offset, f"{head}; reading went on at the next good {unit}, at byte {resumed:,} "
                            f"({resumed - frame:,} compressed bytes skipped); the line cut off by the gap is dropped "
                            "and the lines after it are numbered on from the last line before it")

    try:
        while True:
            if failed is not None and dobj is None:  # looking for the next frame header
                while len(buf) < _COMPRESSED_CHUNK and not at_end:
                    buf += more()
                i = _next_header(buf, compression)
                if i < 0:
                    if at_end:
                        break
                    keep = min(9, len(buf))  # a header may straddle two reads
                    base, buf = base + len(buf) - keep, buf[-keep:]
                    buf += more()
                    continue
                base, buf, start, dobj, fed, seen = base + i, buf[i:], base + i, new(), False, bytearray()
            if k >= len(buf):
                buf, k = more(), 0
                if not buf:
                    if fed and dobj is not None and not dobj.eof and seen and _next_header(bytes(seen[1:]),
                                                                                          compression) >= 0:
                        # damage made the decoder read on to the end of the file (a length or
                        # flag field hit): the frames it swallowed are still there
                        if out:
                            yield b"".join(out)
                            out, size = [], 0
                        if failed is None:
                            failed = (base, start, f"the {unit} runs on to the end of the file")
                        buf, k, base, dobj = bytes(seen[1:]), 0, start + 1, None
                        continue
                    break
            piece = buf[k:k + _FEED_BYTES]
            try:
                got = dobj.decompress(piece)
                if dobj.eof and not got and len(dobj.unused_data) == len(piece):
                    raise zlib.error(f"no {compression} {unit} starts here")  # nothing consumed: not a frame
            except (zstandard.ZstdError, zlib.error) as exc:
                if out:
                    yield b"".join(out)
                    out, size = [], 0
                if failed is None:
                    failed = (base, start, f"no {compression} {unit} starts here" if not fed else str(exc))
                buf, k = buf[k:], 0
                if seen is not None:  # look again from the byte after this frame's header
                    buf, base = bytes(seen[1:]) + buf if seen else buf[1:], start + 1
                dobj = None
                continue
            fed = True
            if failed is not None and (got or dobj.eof):  # a good frame again
                yield gap(start)
                failed = None
            if got:
                out.append(got)
                size += len(got)
            used = len(piece) - len(dobj.unused_data) if dobj.eof else len(piece)
            base, k = base + used, k + used
            if dobj.eof:
                start, dobj, fed, seen = base, new(), False, bytearray()
            elif seen is not None:
                seen += piece
                if len(seen) > _RESCAN_BYTES:
                    seen = None
            if size >= _CHUNK_BYTES:
                yield b"".join(out)
                out, size = [], 0
    except _StreamError as exc:  # reading failed: what was decoded, and a gap being skipped, come first
        broke: _StreamError | None = exc
    else:
        broke = None
    if out:
        yield b"".join(out)
    if failed is not None:
        yield gap(None)
    elif broke is None and fed and not dobj.eof:
        broke = _StreamError("truncated", base, f"the {compression} stream ends in the middle of a {unit}: the "
                             "file is truncated; its last partial line is dropped")
    if broke is not None:
        raise broke


def _own_segments(chunks: Iterator[bytes], part: int, parts: int, segment_bytes: int):
    """This reader's share of a shared stream: its bytes, and ``(offset, line number)``
    where each of its segments after the first starts.

    The stream is cut after the last line break of the chunk in which a segment
    reaches ``segment_bytes``, the same way in every reader; segment ``j`` goes to
    reader ``j % parts``. Other readers' segments are only counted (bytes and line
    breaks), never held, so a stream without line breaks costs no memory. A read
    error ends the stream for every reader, and a gap (a corrupt frame stepped
    over) is passed on; the owner of the segment it is in reports either.
    """
    j = pos = lines = size = 0  # segment j starts at byte pos, line `lines`; size: its bytes so far
    mine = part == 0
    try:
        for chunk in chunks:
            if isinstance(chunk, _Gap):
                if mine:
                    yield chunk
                continue
            size += len(chunk)
            cut = chunk.rfind(b"\n") + 1 if size >= segment_bytes else 0
            if not cut:  # no line break, or the segment is not full yet: it grows
                if mine:
                    yield chunk
                lines += chunk.count(b"\n")
                continue
            head, rest = chunk[:cut], chunk[cut:]
            if mine:
                yield head
            lines += head.count(b"\n")
            pos += size - len(rest)
            j += 1
            mine = j % parts == part
            size = len(rest)
            if mine:
                yield (pos, lines)
                if rest:
                    yield rest
    except _StreamError:
        if mine:
            raise


def _line_start(fh: pa.NativeFile, start: int, end: int | None) -> int | None:
    """The offset of the first line that starts at or after ``start`` (and before
    ``end``), or None where none does: a range inside one long line ends its scan at
    ``end``, never at the line's end."""
    if start == 0:
        fh.seek(0)
        return 0
    pos = start - 1
    fh.seek(pos)
    while end is None or pos < end:
        chunk = fh.read(1 << 16)
        if not chunk:
            return None
        i = chunk.find(b"\n")
        if i >= 0:
            first = pos + i + 1
            if end is not None and first >= end:
                return None
            fh.seek(first)
            return first
        pos += len(chunk)
    return None


class _LineCutter:
    """Cuts a byte stream into lines (at ``\\n``), streaming, in bounded memory.

    :meth:`feed` returns pieces of whole lines: (an Arrow binary array of the lines
    with their breaks, their offsets, their 0-based numbers, whether a NUL byte is
    in them). A line is too long when it holds more than ``max_line_bytes`` bytes
    besides its NUL bytes (a run of NULs written by a crash does not cost the line
    after it). A line too long is never held: its bytes are dropped as they come,
    and it is listed in :attr:`long` as (offset, number, length) once its end is
    found. With ``end``, lines that start at or after it belong to the next byte
    range: :attr:`done` turns true there.
    """

    def __init__(self, pos: int, line_no: int, max_line_bytes: int, end: int | None = None) -> None:
        self.pos, self.line_no = pos, line_no   # where the line in progress starts, and its number
        self.max, self.end = max_line_bytes, end
        self.partial = b""        # the line in progress (when not too long), NUL bytes maybe taken out
        self.gap = 0              # NUL bytes taken out of ``partial``
        self.skipped = -1         # bytes of the line in progress, when it is too long (else -1)
        self.long: list[tuple[int, int, int]] = []
        self.done = end is not None and pos >= end

    def jump(self, pos: int, line_no: int) -> None:
        """Go on at another place of the stream (the next segment of a shared stream;
        the previous one ended with a line break)."""
        self.pos, self.line_no, self.partial, self.gap, self.skipped = pos, line_no, b"", 0, -1

    def feed(self, chunk: bytes) -> list[tuple[pa.Array, np.ndarray, np.ndarray, bool]]:
        if self.done or not chunk:
            return []
        if self.skipped >= 0:
            i = chunk.find(b"\n")
            if i < 0:
                self.skipped += len(chunk)
                return []
            self._long_line_ends(self.skipped + i)
            chunk = chunk[i + 1:]
            if self.done or not chunk:
                return []
        buf = self.partial + chunk if self.partial else chunk
        gap, self.partial, self.gap = self.gap, b"", 0
        nl = np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)
        if not len(nl):
            self._hold(buf, gap)
            return []
        cut = int(nl[-1]) + 1
        piece = self._piece(buf, nl, gap)
        self.pos += cut + gap
        self.line_no += len(nl)
        if self.end is not None and self.pos >= self.end:
            self.done = True
        if not self.done:
            self._hold(buf[cut:], 0)
        return [piece] if piece is not None else []

    def finish(self) -> list[tuple[pa.Array, np.ndarray, np.ndarray, bool]]:
        """The stream ended: its last line, if it has no line break."""
        if self.done:
            return []
        if self.skipped >= 0:
            self._long_line_ends(self.skipped)
            return []
        if not self.partial:
            return []
        buf, gap, self.partial, self.gap = self.partial + b"\n", self.gap, b"", 0
        piece = self._piece(buf, np.array([len(buf) - 1]), gap)
        self.done = True
        return [piece] if piece is not None else []

    def drop(self) -> None:
        """The stream broke off: the line in progress was cut short and is not a line."""
        self.partial, self.gap, self.skipped, self.done = b"", 0, -1, True

    def cut(self) -> None:
        """The stream goes on after a gap: the line in progress was cut short and is not
        a line; the bytes after the gap start a new one (its offset counts the bytes
        dropped, so that offsets stay those of the decoded stream)."""
        self.pos += self.skipped if self.skipped >= 0 else len(self.partial) + self.gap
        self.partial, self.gap, self.skipped = b"", 0, -1

    def _hold(self, rest: bytes, gap: int) -> None:
        """Keep the start of the line in progress, NUL bytes taken out where they make it
        long; or, where it is too long even without them, only count its bytes."""
        if len(rest) > self.max:
            nuls = rest.count(b"\x00")
            if len(rest) - nuls > self.max:
                self.skipped = len(rest) + gap
                return
            # one NUL stays, so that the line is still counted as one that had them
            rest, gap = b"\x00" + rest.replace(b"\x00", b""), gap + nuls - 1
        self.partial, self.gap = rest, gap

    def _long_line_ends(self, length: int) -> None:
        self.long.append((self.pos, self.line_no, length))
        self.pos += length + 1
        self.line_no += 1
        self.skipped = -1
        if self.end is not None and self.pos >= self.end:
            self.done = True

    def _piece(self, buf: bytes, nl: np.ndarray, gap: int):
        """The lines of ``buf`` up to its last break; the first one had ``gap`` NUL bytes
        taken out of it."""
        cut = int(nl[-1]) + 1
        starts = np.concatenate(([0], nl[:-1] + 1)).astype(np.int64)
        lens = nl.astype(np.int64) - starts  # without the line break
        has_nul = buf.find(b"\x00", 0, cut) >= 0
        if has_nul:  # a line's length is its bytes besides NULs
            lens -= np.add.reduceat((np.frombuffer(buf, np.uint8, count=cut) == 0).astype(np.int64), starts)
        offs = self.pos + starts
        offs[1:] += gap
        nums = self.line_no + np.arange(len(nl), dtype=np.int64)
        keep = len(nl)
        if self.end is not None and offs[-1] >= self.end:
            keep = int(np.searchsorted(offs, self.end, side="left"))
            self.done = True
        bounds = np.concatenate((starts, [cut])).astype(np.int32)
        lines = pa.Array.from_buffers(pa.binary(), len(nl), [None, pa.py_buffer(bounds), pa.py_buffer(buf[:cut])])
        too_long = lens[:keep] > self.max
        if too_long.any():
            true_lens = nl.astype(np.int64) - starts
            true_lens[0] += gap
            self.long += list(zip(offs[:keep][too_long].tolist(), nums[:keep][too_long].tolist(),
                                  true_lens[:keep][too_long].tolist(), strict=True))
            ok = np.flatnonzero(~too_long)
            lines, offs, nums = lines.take(pa.array(ok)), offs[ok], nums[ok]
        elif keep < len(nl):
            lines, offs, nums = lines.slice(0, keep), offs[:keep], nums[:keep]
        if not len(offs):
            return None
        return lines, offs, nums, has_nul


def _batches(events, cutter: _LineCutter, f: InputFile, encoding: str, batch_lines: int, stats: ReadStats):
    """Batches of decoded lines from ``events`` (chunks of bytes, gaps where a corrupt
    frame was stepped over, and ``(offset, line)`` jumps of a shared stream), at most
    ``batch_lines`` lines or about ``_BATCH_BYTES``."""
    pend: list[tuple[pa.Array, np.ndarray, np.ndarray, bool]] = []
    pend_n = pend_bytes = 0
    ended = False
    while not ended:
        try:
            ev = next(events, None)
        except _StreamError as exc:
            cutter.drop()
            stats.error(f, exc.kind, exc.offset, str(exc))
            ev = None
        if ev is None:
            pieces = cutter.finish()
            ended = True
        elif isinstance(ev, tuple):
            cutter.jump(*ev)
            continue
        elif isinstance(ev, _Gap):
            cutter.cut()
            stats.error(f, "corrupt", ev.offset, ev.message)
            continue
        else:
            pieces = cutter.feed(ev)
            ended = cutter.done
        if cutter.long:
            _count_long(cutter, f, stats)
        for p in pieces:
            pend.append(p)
            pend_n += len(p[1])
            pend_bytes += p[0].nbytes
        while pend_n >= batch_lines or (pend and pend_bytes >= _BATCH_BYTES):
            lines, offs, nums, nul = _merge(pend)
            take = min(batch_lines, len(offs))
            yield _decode(lines.slice(0, take), offs[:take], nums[:take], f.index, encoding, stats, nul), stats.flush()
            pend = [(lines.slice(take), offs[take:], nums[take:], nul)] if take < len(offs) else []
            pend_n -= take
            pend_bytes = pend[0][0].nbytes if pend else 0
    if pend_n:
        lines, offs, nums, nul = _merge(pend)
        yield _decode(lines, offs, nums, f.index, encoding, stats, nul), stats.flush()
    elif any(getattr(stats, k) for k in _COUNTS) or stats.errors or stats.warnings or stats.problems:
        yield _empty_table(), stats.flush()


def _merge(pend):
    if len(pend) == 1:
        return pend[0]
    return (pa.concat_arrays([p[0] for p in pend]), np.concatenate([p[1] for p in pend]),
            np.concatenate([p[2] for p in pend]), any(p[3] for p in pend))


def _count_long(cutter: _LineCutter, f: InputFile, stats: ReadStats) -> None:
    offs = np.array([x[0] for x in cutter.long], np.int64)
    nums = np.array([x[1] for x in cutter.long], np.int64)
    stats.lines_too_long += len(offs)
    stats.lines_read += len(offs)
    stats.bytes_read += sum(x[2] + 1 for x in cutter.long)
    stats.note(f.index, "too_long", offs, nums)
    cutter.long.clear()


_FAST_UTF8 = True  # decode UTF-8 with one Arrow cast per batch (tests turn it off to compare)


def _decode(lines: pa.Array, offs: np.ndarray, nums: np.ndarray, file_idx: int, encoding: str,
            stats: ReadStats, has_nul: bool) -> pa.Table:
    """A lines table from binary lines that still end in their line break.

    NUL bytes are removed (ASCII-compatible encodings), a UTF-8 byte-order mark at
    the start of a file is dropped, and UTF-8 is decoded by one Arrow cast; another
    encoding, or a batch with undecodable bytes (replaced and counted), is decoded
    line by line. Empty and whitespace-only lines are counted and left out.
    """
    n = len(lines)
    stats.bytes_read += int(pc.sum(pc.binary_length(lines)).as_py() or 0)
    body = pc.binary_slice(lines, 0, -1)  # the "\n"
    if has_nul and _ascii_compatible(encoding):
        nul = pc.match_substring(body, "\x00").to_numpy(zero_copy_only=False)
        if nul.any():
            stats.lines_with_nul_bytes += int(nul.sum())
            stats.note(file_idx, "nul_bytes", offs[nul], nums[nul])
            body = pc.replace_substring(body, "\x00", "")
    utf8 = codecs.lookup(encoding).name == "utf-8"
    text = None
    if utf8 and _FAST_UTF8:
        try:
            text = body.cast(pa.string())
        except pa.ArrowInvalid:
            text = None
    if text is None:
        values, bad = _decode_lines(body.to_pylist(), encoding)
        if bad.any():
            stats.lines_with_replaced_bytes += int(bad.sum())
            stats.note(file_idx, "replaced_bytes", offs[bad], nums[bad])
        text = pa.array(values, pa.string())
    if utf8 and offs[0] == 0:
        text = pa.concat_arrays([pc.utf8_ltrim(text.slice(0, 1), characters="\ufeff"), text.slice(1)])
    text, nonempty = trim_lines(text)
    stats.empty_lines += int(n - nonempty.sum())
    stats.lines_read += n
    if not nonempty.all():
        idx = np.flatnonzero(nonempty)
        text = text.take(pa.array(idx))
        offs, nums = offs[idx], nums[idx]
    return pa.table(
        {
            "file_idx": pa.array(np.full(len(text), file_idx, np.int32)),
            "offset": pa.array(offs, pa.int64()),
            "line_no": pa.array(nums, pa.int64()),
            "raw": text,
        },
        schema=LINES_SCHEMA,
    )


def _decode_lines(parts: list[bytes], encoding: str) -> tuple[list[str], np.ndarray]:
    """Each line decoded; which of them had bytes replaced."""
    n = len(parts)
    bad = np.zeros(n, dtype=bool)
    try:
        text = b"\n".join(parts).decode(encoding).split("\n")
        if len(text) == n:
            return text, bad
    except UnicodeDecodeError:
        pass
    text = []  # an undecodable byte, or an encoding where b"\n" is not the line break
    for i, p in enumerate(parts):
        try:
            text.append(p.decode(encoding))
        except UnicodeDecodeError:
            text.append(p.decode(encoding, errors="replace"))
            bad[i] = True
    return text, bad


def trim_lines(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Lines without their line break: one trailing ``"\r"`` dropped, and which of them
    hold more than whitespace (the others are counted as empty and skipped). The rule
    for every line logad reads, from a file or from a request."""
    text = pc.if_else(pc.ends_with(text, pattern="\r"), pc.utf8_slice_codeunits(text, 0, -1), text)
    return text, pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0).to_numpy(zero_copy_only=False)
