"""A Ray worker process setup hook that turns off decompression in the process it runs in.

tests/integration/test_serving_frames.py runs :func:`poison` in the service's replica: every
entry point of ``zstandard`` and ``zlib``/``gzip`` that inflates data then raises
:class:`DecompressionDisabled` there, so a frames request that succeeds decompressed nothing.
The hook runs before the replica imports logad, so the module attributes replaced here are
what logad's code looks up.

One exception: zlib still inflates while a module is being imported. Cython extension
modules (grpc's, scipy's, ...) unpack their own string constants with ``zlib.decompress``
when they load, and a request may import one for the first time; that is not a request's
data being decompressed.
"""

from __future__ import annotations

import gzip
import sys
import zlib

import zstandard

MARK = "decompression is disabled in this process"


class DecompressionDisabled(RuntimeError):
    """Raised by every decompression entry point after :func:`poison`."""


def _importing() -> bool:
    """Whether the caller runs inside an import (module initialisation)."""
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        f = f.f_back
    return False


def _refuse(what: str, original=None):  # noqa: ANN001, ANN202
    def refuse(*args, **kwargs):
        if original is not None and _importing():
            return original(*args, **kwargs)
        raise DecompressionDisabled(f"{what}: {MARK}")

    refuse.__name__ = what.rsplit(".", 1)[-1]
    refuse.poisoned = True
    return refuse


class _NoDecompressor:
    """Stands in for ``zstandard.ZstdDecompressor`` (a C type whose methods cannot be replaced):
    it can be made, and every way it has to inflate data raises."""

    def __init__(self, *_args, **_kwargs) -> None:
        pass

    decompress = _refuse("ZstdDecompressor.decompress")
    decompressobj = _refuse("ZstdDecompressor.decompressobj")
    stream_reader = _refuse("ZstdDecompressor.stream_reader")
    stream_writer = _refuse("ZstdDecompressor.stream_writer")
    read_to_iter = _refuse("ZstdDecompressor.read_to_iter")
    copy_stream = _refuse("ZstdDecompressor.copy_stream")
    multi_decompress_to_buffer = _refuse("ZstdDecompressor.multi_decompress_to_buffer")
    decompress_content_dict_chain = _refuse("ZstdDecompressor.decompress_content_dict_chain")


def poison() -> None:
    """Replace every decompression entry point of zstandard, zlib and gzip with one that raises.
    (gzip's readers inflate with ``zlib.decompressobj``, so they raise too.)"""
    zstandard.ZstdDecompressor = _NoDecompressor
    zstandard.decompress = _refuse("zstandard.decompress")
    zstandard.open = _refuse("zstandard.open")
    backend = getattr(zstandard, "backend_c", None)
    if backend is not None and hasattr(backend, "ZstdDecompressor"):
        backend.ZstdDecompressor = _NoDecompressor
    zlib.decompress = _refuse("zlib.decompress", zlib.decompress)
    zlib.decompressobj = _refuse("zlib.decompressobj", zlib.decompressobj)
    gzip.decompress = _refuse("gzip.decompress", gzip.decompress)


def poisoned() -> bool:
    """Whether :func:`poison` ran in this process."""
    return zstandard.ZstdDecompressor is _NoDecompressor and getattr(zlib.decompress, "poisoned", False)
