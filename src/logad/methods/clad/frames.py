"""Compressed frames: the unit CLAD reads.

A *frame* is one window's raw lines (each line followed by ``"\\n"``, UTF-8),
compressed as one independent frame with a dictionary trained on the training
windows. Codecs:

* ``zstd`` (default): a zstd frame (RFC 8878) whose header carries the
  dictionary id and the content size, no checksum. This is the format the
  service accepts as is (``POST /v1/sources/{source}/frames``) and what a log
  shipper produces with the source's dictionary (``GET
  /v1/sources/{source}/dictionary``).
* ``deflate``: a zlib stream (RFC 1950) with the same dictionary's last 32 KiB
  as its preset dictionary (FDICT set, the dictionary's Adler-32 in its header).
  gzip itself cannot name a preset dictionary, which is why the second codec
  is zlib-framed deflate.

A window longer than ``max_frame_bytes`` compressed is cut at line boundaries
into consecutive chunks, each compressed on its own: greedily, the longest run
of lines whose frame fits. A single line whose frame alone does not fit is cut
into pieces at character boundaries (the only case a line is split). Nothing is
dropped: the chunks' contents concatenate to the window's text.

Nothing here decompresses: :func:`check_zstd_frame` reads a frame's header
(magic number, dictionary id, content size) without decoding its content.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zstandard

from logad.errors import DataError

__all__ = [
    "ZSTD_MAGIC",
    "FrameCodec",
    "FrameError",
    "WindowFrames",
    "check_zstd_frame",
    "frame_windows",
    "train_dictionary",
]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
"""The four bytes every zstd frame starts with (little-endian 0xFD2FB528)."""
MIN_DICT_SAMPLES = 8


class FrameError(DataError):
    """A frame the model cannot read (not zstd, another dictionary, too large)."""


def train_dictionary(samples: Sequence[bytes], size_bytes: int, *, seed: int = 0) -> bytes:
    """A zstd dictionary (raw bytes, with its header and id) trained on ``samples``.

    zstd's trainer wants many samples; a small training set is repeated (in a
    seeded order) until it has enough, and where training still fails the
    samples' concatenation is used as a raw-content dictionary.
    """
    samples = [s for s in samples if s]
    if not samples:
        raise DataError("no non-empty training windows to train a compression dictionary on")
    pool = list(samples)
    rng = np.random.default_rng(seed)
    while len(pool) < 64 or sum(map(len, pool)) < 8 * size_bytes:
        pool += [samples[i] for i in rng.permutation(len(samples))]
        if len(pool) > 200_000:
            break
    try:
        d = zstandard.train_dictionary(size_bytes, pool, level=3, notifications=0)
        return d.as_bytes()
    except zstandard.ZstdError:
        content = b"".join(samples)[-size_bytes:]
        return content


@dataclass
class FrameCodec:
    """How windows become frames: codec, level, dictionary, frame size limit."""

    codec: Literal["zstd", "deflate"]
    level: int
    dictionary: bytes
    max_frame_bytes: int

    def __post_init__(self) -> None:
        self._zstd_dict = zstandard.ZstdCompressionDict(self.dictionary)
        self.dict_id = self._zstd_dict.dict_id()  # 0 for a raw-content dictionary
        self._cctx = zstandard.ZstdCompressor(
            level=self.level, dict_data=self._zstd_dict, write_content_size=True,
            write_checksum=False, write_dict_id=True)
        self._zdict = self.dictionary[-32768:]
        self.dict_sha256 = hashlib.sha256(self.dictionary).hexdigest()

    def __getstate__(self) -> dict[str, Any]:  # for Ray tasks: the C objects are rebuilt
        return {k: getattr(self, k) for k in ("codec", "level", "dictionary", "max_frame_bytes")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def to_json(self) -> dict[str, Any]:
        """The settings (the dictionary travels as its own file, ``dictionary.zdict``)."""
        return {"codec": self.codec, "level": self.level, "max_frame_bytes": self.max_frame_bytes,
                "dict_id": self.dict_id, "dict_size_bytes": len(self.dictionary),
                "dict_sha256": self.dict_sha256, "line_terminator": "\\n", "encoding": "utf-8"}

    def compress(self, data: bytes) -> bytes:
        """One frame of ``data``."""
        if self.codec == "zstd":
            return self._cctx.compress(data)
        c = zlib.compressobj(self.level if 0 <= self.level <= 9 else 6, zlib.DEFLATED, 15, 9,
                             zlib.Z_DEFAULT_STRATEGY, self._zdict)
        return c.compress(data) + c.flush()

    def frame_lines(self, lines: Sequence[str]) -> tuple[list[bytes], list[tuple[int, int]]]:
        """A window's frames and, per frame, the lines it holds (``[start, stop)``).

        A piece of a cut line counts as that line. An empty window is one frame of
        no content, so every window gets a score.
        """
        encoded = [(str(x) + "\n").encode("utf-8", "replace") for x in lines]
        if not encoded:
            return [self.compress(b"")], [(0, 0)]
        whole = self.compress(b"".join(encoded))
        if len(whole) <= self.max_frame_bytes:
            return [whole], [(0, len(encoded))]
        frames: list[bytes] = []
        spans: list[tuple[int, int]] = []
        start = 0
        while start < len(encoded):
            # the largest n with frame(lines[start:start+n]) fitting: grow by doubling, then bisect
            left = len(encoded) - start
            lo, hi, k = 0, 0, 1
            best: bytes | None = None
            while True:
                k = min(k, left)
                f = self.compress(b"".join(encoded[start:start + k]))
                if len(f) > self.max_frame_bytes:
                    hi = k
                    break
                lo, best = k, f
                if k == left:
                    break
                k *= 2
            while hi - lo > 1:
                mid = (lo + hi) // 2
                f = self.compress(b"".join(encoded[start:start + mid]))
                if len(f) <= self.max_frame_bytes:
                    lo, best = mid, f
                else:
                    hi = mid
            if lo == 0:  # one line too large for a frame: cut it into pieces
                for piece in self._cut_line(lines[start]):
                    frames.append(piece)
                    spans.append((start, start + 1))
                start += 1
                continue
            assert best is not None
            frames.append(best)
            spans.append((start, start + lo))
            start += lo
        return frames, spans

    def _cut_line(self, line: str) -> list[bytes]:
        text = str(line) + "\n"
        out: list[bytes] = []
        while text:
            n = len(text)
            while n > 1 and len(self.compress(text[:n].encode("utf-8", "replace"))) > self.max_frame_bytes:
                n = max(1, n * 3 // 4)
            out.append(self.compress(text[:n].encode("utf-8", "replace")))
            text = text[n:]
        return out


@dataclass
class WindowFrames:
    """The frames of a batch of windows, flat: ``frames[i]`` belongs to window ``owner[i]``
    and holds its lines ``spans[i]``."""

    frames: list[bytes]
    owner: np.ndarray
    spans: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.frames)

    def counts(self, num_windows: int) -> np.ndarray:
        return np.bincount(self.owner, minlength=num_windows)


def frame_windows(codec: FrameCodec, lines: Sequence[Sequence[str]]) -> WindowFrames:
    """Frame every window of a batch (a window per entry of ``lines``)."""
    frames: list[bytes] = []
    owner: list[int] = []
    spans: list[tuple[int, int]] = []
    for w, window in enumerate(lines):
        f, s = codec.frame_lines(list(window) if window is not None else [])
        frames += f
        spans += s
        owner += [w] * len(f)
    return WindowFrames(frames, np.asarray(owner, dtype=np.int64), spans)


def check_zstd_frame(data: bytes, *, dict_id: int, max_frame_bytes: int, name: str) -> None:
    """Refuse a frame the model cannot read, from its header alone (nothing is decompressed).

    Raises:
        FrameError: empty, over ``max_frame_bytes``, not a zstd frame (magic number), a header
            zstd cannot read, or compressed with another dictionary than ``dict_id``.
    """
    if not data:
        raise FrameError(f"{name} is empty")
    if len(data) > max_frame_bytes:
        raise FrameError(f"{name} is {len(data):,} bytes, over the model's frame limit of "
                         f"{max_frame_bytes:,}: cut the window into smaller chunks at line boundaries")
    if data[:4] != ZSTD_MAGIC:
        raise FrameError(f"{name} is not a zstd frame (it starts with {data[:4].hex() or 'nothing'}, "
                         f"not the zstd magic number {ZSTD_MAGIC.hex()})")
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as exc:
        raise FrameError(f"{name} has no readable zstd frame header: {exc}") from None
    if params.dict_id != dict_id:
        raise FrameError(f"{name} was compressed with dictionary id {params.dict_id}, not the "
                         f"source's dictionary id {dict_id}: fetch it from the dictionary endpoint")
