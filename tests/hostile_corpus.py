"""A corpus of hostile input files mixed with real log lines, made at test time.

:func:`build` writes, under one folder, files of every kind of dirty input that
ingest meets in the field: undecodable and NUL bytes inside lines, a crash's run
of NULs, binary files, a line of tens of MB, CRLF line ends and missing final
line breaks, corrupt and truncated ``.zst`` and ``.gz`` files (damaged in the
middle, after good frames), compressed files under the wrong name, empty and
blank files, dangling and looping symbolic links, a second name of a file,
unreadable files, a named pipe, nested folders. The real lines come from the
fixtures (syslog-family forensic logs, HDFS, BGL).

It returns a :class:`Planted` manifest: every line that must come out of ingest
(its file as found under the folder, its 1-based line number, its text after
repair), and every problem the run summary must report, with its file and
where. Nothing here imports logad: the manifest says what a user expects.
"""

from __future__ import annotations

import gzip
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

BAD_BYTES = [b"\xff\xfe", b"\x80", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe9"]


@dataclass
class Planted:
    """What a corpus holds, by path relative to its folder."""

    good: dict[tuple[str, int], str] = field(default_factory=dict)  # (file, line) → text in the windows table
    line_problems: dict[tuple[str, str], set[int]] = field(default_factory=dict)  # (file, kind) → lines
    errors: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # file → (kind, lowest, highest offset)
    warnings: dict[str, str] = field(default_factory=dict)  # file → kind
    may_add_lines: set[str] = field(default_factory=set)  # files whose damage may yield extra (garbled) lines
    after_gap: dict[str, list[str]] = field(default_factory=dict)  # file → its last lines, read after a bad frame
    kinds: Counter = field(default_factory=Counter)  # hostile inputs made, by kind
    controls: int = 0  # clean files among them (plain, in a nested folder)
    bytes: int = 0

    def problem(self, rel: str, kind: str, line: int) -> None:
        self.line_problems.setdefault((rel, kind), set()).add(line)


def real_lines(kind: str) -> list[bytes]:
    """Real log lines (no line break, no NUL, valid UTF-8, not blank) of one family."""
    if kind == "syslog":
        raw = b"".join(p.read_bytes() + b"\n" for p in sorted((FIXTURES / "forensic").rglob("*"))
                       if p.is_file() and p.suffix != ".md")
    elif kind == "hdfs":
        raw = _unzstd(FIXTURES / "loghub_2k" / "HDFS_2k.log.zst")
    elif kind == "bgl":
        raw = _unzstd(FIXTURES / "loghub_2k" / "BGL_2k.log.zst")
    else:
        raise ValueError(kind)
    out = []
    for line in raw.split(b"\n"):
        line = line.rstrip(b"\r")
        if line.strip() and b"\x00" not in line and line == line.rstrip():
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                continue
            out.append(line)
    return out


def _unzstd(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh).read()


class _Lines:
    """Real lines handed out in turn (round and round)."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines, self.i = lines, 0

    def take(self, n: int) -> list[bytes]:
        out = [self.lines[(self.i + k) % len(self.lines)] for k in range(n)]
        self.i += n
        return out


def build(folder: Path, family: str = "syslog", *, copies: int = 1, long_line_bytes: int = 40 << 20,
          lines_per_file: int = 120, seed: int = 0, special: bool = True) -> Planted:
    """Write the corpus under ``folder`` (created); ``copies`` files of each kind.

    ``special`` adds what a folder walk meets besides files (links, a named pipe,
    an unreadable file); those are made once, whatever ``copies``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    src = _Lines(real_lines(family))
    p = Planted()
    n = lines_per_file
    for c in range(copies):
        sfx = f"-{c:03d}" if copies > 1 else ""
        _plain(folder, f"good{sfx}.log", src.take(n), p)
        _non_utf8(folder, f"nonutf8{sfx}.log", src.take(n), p, rng)
        _nul(folder, f"nul{sfx}.log", src.take(n), p, rng)
        _zero_fill(folder, f"crash{sfx}.log", src.take(n), p)
        _binary(folder, f"random{sfx}.log", p, rng)
        _binary_gz(folder, f"random{sfx}.log.gz", p, rng)
        _line_ends(folder, sfx, src, n, p)
        _frames(folder, f"frames{sfx}.log.zst", src.take(5 * n), p, "zstd", "corrupt")
        _frames(folder, f"frames{sfx}.log.gz", src.take(5 * n), p, "gzip", "corrupt")
        _frames(folder, f"cut{sfx}.log.zst", src.take(5 * n), p, "zstd", "truncated")
        _frames(folder, f"cut{sfx}.log.gz", src.take(5 * n), p, "gzip", "truncated")
        _misnamed(folder, sfx, src, n, p)
        _empty(folder, sfx, p)
        sub = folder / f"nested{sfx}" / "deeper"
        sub.mkdir(parents=True, exist_ok=True)
        _plain(folder, f"nested{sfx}/deeper/inner.log", src.take(n), p)
    if long_line_bytes:
        _long(folder, "long.log", src.take(2 * n), p, long_line_bytes, rng)
    if special:
        _special(folder, src.take(n), p)
    p.bytes = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()
                  and stat.S_ISREG(f.stat().st_mode))
    return p


def _write_lines(path: Path, lines: list[bytes], end: bytes = b"\n", final: bool = True) -> bytes:
    data = end.join(lines) + (end if final else b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _plant(p: Planted, rel: str, lines: list[bytes], first: int = 1) -> None:
    for k, line in enumerate(lines):
        p.good[(rel, first + k)] = line.decode("utf-8")


def _plain(folder: Path, rel: str, lines: list[bytes], p: Planted) -> None:
    _write_lines(folder / rel, lines)
    _plant(p, rel, lines)
    p.controls += 1


def _non_utf8(folder: Path, rel: str, lines: list[bytes], p: Planted, rng) -> None:
    out = []
    for k, line in enumerate(lines):
        if k % 5 == 2:
            cut = int(rng.integers(1, len(line)))
            bad = BAD_BYTES[k % len(BAD_BYTES)]
            line = line[:cut] + bad + line[cut:]
            p.problem(rel, "replaced_bytes", k + 1)
        out.append(line)
        p.good[(rel, k + 1)] = line.decode("utf-8", errors="replace")
    _write_lines(folder / rel, out)
    p.kinds["non_utf8_bytes"] += 1


def _nul(folder: Path, rel: str, lines: list[bytes], p: Planted, rng) -> None:
    out: list[bytes] = []
    for k, line in enumerate(lines):
        if k == len(lines) // 2:  # a line of NULs only: an empty line once they are removed
            out.append(b"\x00" * 300)
            p.problem(rel, "nul_bytes", len(out))
        if k % 6 == 1:  # a NUL inside the line
            cut = int(rng.integers(1, len(line)))
            line = line[:cut] + b"\x00" + line[cut:]
        elif k % 6 == 4:  # a run of NULs before it, as a crash leaves
            line = b"\x00" * int(rng.integers(10, 5000)) + line
        out.append(line)
        if b"\x00" in line:
            p.problem(rel, "nul_bytes", len(out))
        p.good[(rel, len(out))] = line.replace(b"\x00", b"").decode("utf-8")
    _write_lines(folder / rel, out)
    p.kinds["nul_bytes"] += 1


def _zero_fill(folder: Path, rel: str, lines: list[bytes], p: Planted) -> None:
    """A log after a power loss: the start is NULs (more than the binary test reads,
    more than a line may hold), then the lines written after the reboot."""
    head = b"\x00" * (3 << 20)
    (folder / rel).write_bytes(head + b"\n".join(lines) + b"\n")
    _plant(p, rel, [lines[0]] + lines[1:])
    p.problem(rel, "nul_bytes", 1)
    p.kinds["crash_zero_fill"] += 1


def _binary(folder: Path, rel: str, p: Planted, rng) -> None:
    (folder / rel).write_bytes(rng.integers(0, 256, 256 << 10, dtype=np.uint8).tobytes())
    p.errors[rel] = ("binary", 0, 0)
    p.kinds["binary"] += 1


def _binary_gz(folder: Path, rel: str, p: Planted, rng) -> None:
    (folder / rel).write_bytes(gzip.compress(rng.integers(0, 256, 128 << 10, dtype=np.uint8).tobytes()))
    p.errors[rel] = ("binary", 0, 0)
    p.kinds["binary_compressed"] += 1


def _line_ends(folder: Path, sfx: str, src: _Lines, n: int, p: Planted) -> None:
    for rel, end, final, kind in ((f"crlf{sfx}.log", b"\r\n", True, "crlf"),
                                  (f"nofinal{sfx}.log", b"\n", False, "no_final_newline"),
                                  (f"crlf-nofinal{sfx}.log", b"\r\n", False, "crlf_no_final_newline")):
        lines = src.take(n)
        _write_lines(folder / rel, lines, end, final)
        _plant(p, rel, lines)
        p.kinds[kind] += 1


def _frames(folder: Path, rel: str, lines: list[bytes], p: Planted, codec: str, damage: str) -> None:
    """Five frames (members) of real lines; the third is damaged in its middle
    (``corrupt``) or the file ends there (``truncated``). Every line of the first two
    must come out at its line number; of a corrupt file, every line of the last two
    too, last and in order (their numbers count on from what the third gave)."""
    parts = np.array_split(np.arange(len(lines)), 5)
    blobs, first = [], 1
    for idx in parts:
        text = b"".join(lines[i] + b"\n" for i in idx)
        if codec == "zstd":
            blobs.append(zstandard.ZstdCompressor(write_checksum=True).compress(text))
        else:
            blobs.append(gzip.compress(text))
    third = sum(len(b) for b in blobs[:2])
    data = bytearray(b"".join(blobs))
    mid = third + len(blobs[2]) // 2
    if damage == "corrupt":
        data[mid:mid + 24] = bytes((b ^ 0x5A) for b in data[mid:mid + 24])
        p.errors[rel] = ("corrupt", third, len(data))
        p.may_add_lines.add(rel)  # a damaged block can decode to garbage before the check fails
        p.after_gap[rel] = [lines[int(i)].decode("utf-8") for i in np.concatenate(parts[3:])]
    else:
        data = data[:mid]
        p.errors[rel] = ("truncated", len(data), len(data))
        p.may_add_lines.add(rel)  # the third frame's lines before the cut are real lines too
    (folder / rel).write_bytes(bytes(data))
    for i in np.concatenate(parts[:2]):
        p.good[(rel, int(i) + first)] = lines[int(i)].decode("utf-8")
    p.kinds[f"{damage}_{codec}"] += 1


def _misnamed(folder: Path, sfx: str, src: _Lines, n: int, p: Planted) -> None:
    lines = src.take(n)
    _write_lines(folder / f"plain{sfx}.log.zst", lines)  # plain text named .zst
    _plant(p, f"plain{sfx}.log.zst", lines)
    p.warnings[f"plain{sfx}.log.zst"] = "misnamed"
    lines = src.take(n)
    (folder / f"gzip{sfx}.log.zst").write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    _plant(p, f"gzip{sfx}.log.zst", lines)
    p.warnings[f"gzip{sfx}.log.zst"] = "misnamed"
    lines = src.take(n)
    (folder / f"rotated{sfx}.log.1").write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(lines) + b"\n"))
    _plant(p, f"rotated{sfx}.log.1", lines)
    p.warnings[f"rotated{sfx}.log.1"] = "misnamed"
    p.kinds["plain_text_as_zst"] += 1
    p.kinds["gzip_as_zst"] += 1
    p.kinds["zstd_under_plain_name"] += 1


def _empty(folder: Path, sfx: str, p: Planted) -> None:
    (folder / f"empty{sfx}.log").write_bytes(b"")
    (folder / f"empty{sfx}.log.gz").write_bytes(b"")
    (folder / f"empty{sfx}.log.zst").write_bytes(zstandard.ZstdCompressor().compress(b""))
    (folder / f"blank{sfx}.log").write_bytes(b"\n \n\t\t\n\r\n   \r\n" * 40)
    p.kinds["empty"] += 3
    p.kinds["blank_only"] += 1


def _long(folder: Path, rel: str, lines: list[bytes], p: Planted, size: int, rng) -> None:
    """A line of ``size`` bytes (a dumped payload after a real header) between real lines."""
    half = len(lines) // 2
    words = rng.integers(97, 123, size, dtype=np.uint8)
    words[rng.integers(0, size, size // 8)] = 32
    big = lines[0] + b" payload=" + words.tobytes()
    with open(folder / rel, "wb") as fh:
        fh.write(b"\n".join(lines[:half]) + b"\n")
        fh.write(big + b"\n")
        fh.write(b"\n".join(lines[half:]))  # and no final line break
    _plant(p, rel, lines[:half])
    _plant(p, rel, lines[half:], first=half + 2)
    p.problem(rel, "too_long", half + 1)
    p.kinds["long_line"] += 1


def _special(folder: Path, lines: list[bytes], p: Planted) -> None:
    """What a folder walk meets besides files; made once."""
    os.symlink(folder / "nowhere.log", folder / "dangling.log")
    p.errors["dangling.log"] = ("dangling_link", 0, 0)
    os.symlink("self.log", folder / "self.log")
    p.errors["self.log"] = ("link_loop", 0, 0)
    os.symlink(".", folder / "loop")  # the folder again, through a link
    p.warnings["loop"] = "link_loop"
    first_good = min(r for r, _ in p.good if r.startswith("good"))
    os.symlink(first_good, folder / "alias.log")  # a second name of a file: read once
    p.warnings["alias.log"] = "duplicate"
    os.mkfifo(folder / "pipe.log")  # reading a named pipe would wait for ever
    p.errors["pipe.log"] = ("not_regular", 0, 0)
    locked = folder / "locked.log"
    _write_lines(locked, lines)
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads it anyway
        _plant(p, "locked.log", lines)
    else:
        p.errors["locked.log"] = ("unreadable", 0, 0)
    if Path("/proc/self/mem").exists():  # reading fails with EIO, even for root (as a bad disk does)
        os.symlink("/proc/self/mem", folder / "eio.log")
        p.errors["eio.log"] = ("unreadable", 0, 0)
    p.kinds.update({"dangling_link": 1, "self_link": 1, "folder_link_loop": 1, "second_name": 1, "named_pipe": 1,
                    "chmod_000" if os.access(locked, os.R_OK) else "unreadable_chmod_000": 1,
                    "read_error_eio": int(Path("/proc/self/mem").exists())})
