"""The model registry: versioned detector artifacts per (source, method).

Layout under the registry root (a local path or any pyarrow filesystem URI)::

    ROOT/<source>/<method>/v000001/           one immutable version
        config.json, model.safetensors, ...   the model directory as `logad train` wrote it
        manifest.json                         written last: the version exists once it does
    ROOT/<source>/<method>/production.json    {"version": N, ...}: that method's production
    ROOT/<source>/serving.json                {"method": M, "version": N, ...}: what the
                                              HTTP service scores this source with

Crash safety: a writer killed at any point leaves only complete versions listed,
and aliases that name complete versions.

- A version is written into a hidden ``.tmp-*`` folder next to its final place.
  On a local or mounted file system its files and its ``manifest.json`` (a SHA-256
  per file) are written and flushed to disk there, and one ``rename`` makes it
  appear, whole, as ``vNNNNNN``. Object stores have no atomic rename: there the
  folder is moved first and the manifest written last, as its commit point.
- A version folder without a manifest (an object-store move cut short) is never
  listed or served, and the next version number skips past it.
- Aliases are small JSON files written to a temporary name, flushed, and renamed
  over the old one (``os.replace``; on object stores a single PUT, atomic too), so
  a reader sees the old alias or the new one, never a torn one. ``promote`` writes
  the method's production alias, then the source's serving alias: a promotion cut
  between the two has moved the first only (both still name complete versions);
  running it again finishes it.
- Leftovers of killed writers (``.tmp-*`` folders and files) are removed by the
  next write to the same place: at once where the writer was a process on this
  host that no longer runs, otherwise once they are older than an hour.

``$LOGAD_REGISTRY_PAUSE_AT`` is for crash tests only: set to K (or to a step's
NAME), every write step prints ``registry step: NAME`` to stderr and the K-th (or
the named one) stops there for good (0: none does), so a test can kill the writer
at each step in turn.

Source and method names are checked against a strict pattern, so no name can
escape the registry root (``../../etc`` is refused).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from logad import __version__
from logad.errors import DataError, LogadError

__all__ = [
    "DEFAULT_REGISTRY",
    "ModelRegistry",
    "ModelVersion",
    "RegistryError",
    "validate_name",
]

DEFAULT_REGISTRY = "registry"
"""Where the CLI looks when neither ``--registry`` nor ``$LOGAD_REGISTRY`` is given."""

MANIFEST = "manifest.json"
PRODUCTION = "production.json"
SERVING = "serving.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION_DIR = re.compile(r"v(\d{6})")
_LEFTOVER = re.compile(r"\.tmp-(?P<label>.+)-(?P<pid>\d+)-[0-9a-f]{8}@(?P<host>[^/@]+)")
_CHUNK = 1 << 20
STALE_AFTER_S = 3600.0
"""A ``.tmp-*`` leftover whose writer cannot be checked is removed once this old."""
PAUSE_ENV = "LOGAD_REGISTRY_PAUSE_AT"
_steps_done = 0


def _step(name: str) -> None:
    """Crash-test hook: with ``$LOGAD_REGISTRY_PAUSE_AT`` set to K (or to a step's name),
    announce each finished write step on stderr and stop for good after the K-th (0:
    never) or the named one, so a test can kill the writer right there."""
    global _steps_done
    at = os.environ.get(PAUSE_ENV)
    if not at:
        return
    _steps_done += 1
    print(f"registry step: {name}", file=sys.stderr, flush=True)
    if at == name or (at.isdigit() and _steps_done == int(at)):
        time.sleep(3600)


def _tmp_name(label: str) -> str:
    """A hidden temporary name that says which process on which host writes it."""
    return f".tmp-{label}-{os.getpid()}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"


def _writer_gone(name: str, mtime: float | None, now: float) -> bool:
    """Whether the ``.tmp-*`` entry ``name`` is a dead writer's leftover."""
    m = _LEFTOVER.fullmatch(name)
    if m is not None and m.group("host") == socket.gethostname():
        pid = int(m.group("pid"))
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, someone else's
            return False
        return False
    return mtime is not None and now - mtime > STALE_AFTER_S


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RegistryError(LogadError):
    """A registry operation failed: bad name, unknown version, unreadable root."""


def validate_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a safe source or method name, else raise.

    Names are 1–128 characters of letters, digits, ``.``, ``_`` and ``-``, start
    with a letter or digit, and are never ``.``/``..``: one path segment that
    cannot leave the registry root.

    Raises:
        RegistryError: the name is not allowed (says which characters are).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or set(name) <= {"."}:
        raise RegistryError(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass
class ModelVersion:
    """One registered version, as its manifest describes it."""

    source: str
    method: str
    version: int
    created_at: str
    uri: str
    """Where the version's files live (registry root + relative path)."""
    threshold: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    """File name → SHA-256 of its bytes."""
    logad_version: str = ""
    production: bool = False
    serving: bool = False

    @property
    def tag(self) -> str:
        return f"{self.source}/{self.method}/v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModelRegistry:
    """Versioned model store on a local folder or a pyarrow filesystem URI.

    Args:
        root: a local path (created on first write) or a URI such as
            ``s3://bucket/logad/registry`` or ``gs://…``; multi-node clusters need
            a root every node can read (object storage or a shared mount).
        cache_dir: where :meth:`fetch` copies remote versions (versions never
            change, so a cached copy stays valid); default ``~/.cache/logad/registry``.
    """

    def __init__(self, root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> None:
        root = str(root)
        if not root:
            raise RegistryError("registry root is empty; pass --registry PATH or set LOGAD_REGISTRY")
        self.root = root
        if "://" in root and not root.startswith("file://"):
            try:
                self._fs, base = pafs.FileSystem.from_uri(root)
            except Exception as exc:  # pyarrow raises several types for bad URIs
                raise RegistryError(f"cannot open registry {root}: {exc}") from exc
            self._local = False
        else:
            self._fs = pafs.LocalFileSystem()
            base = str(Path(root.removeprefix("file://")).expanduser().resolve())
            self._local = True
        self._base = base.rstrip("/")
        self._cache = Path(cache_dir or Path.home() / ".cache" / "logad" / "registry").expanduser()

    def __repr__(self) -> str:
        return f"ModelRegistry({self.root!r})"

    # -- paths --------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join([self._base, *parts])

    def _is_dir(self, path: str) -> bool:
        return self._fs.get_file_info(path).type == pafs.FileType.Directory

    def _children(self, path: str) -> list[str]:
        if not self._is_dir(path):
            return []
        infos = self._fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def _read_json(self, path: str) -> dict[str, Any] | None:
        if self._fs.get_file_info(path).type != pafs.FileType.File:
            return None
        try:
            with self._fs.open_input_stream(path) as fh:
                data = json.loads(fh.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read {path} in registry {self.root}: {exc}") from exc
        if not isinstance(data, dict):
            raise RegistryError(f"{path} in registry {self.root} is not a JSON object")
        return data

    def _write_json_atomic(self, path: str, data: dict[str, Any]) -> None:
        payload = _json_bytes(data)
        if self._local:
            parent = Path(path).parent
            parent.mkdir(parents=True, exist_ok=True)
            tmp = str(parent / _tmp_name(Path(path).name))
            with open(tmp, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            _step(f"{Path(path).name} written aside")
            os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file
            _fsync_dir(str(parent))
        else:
            with self._fs.open_output_stream(path) as fh:  # one PUT: atomic on object stores
                fh.write(payload)

    # -- reading ------------------------------------------------------------------------------

    def sources(self) -> list[str]:
        """Source names with at least one directory in the registry."""
        return [s for s in self._children(self._base) if _NAME.fullmatch(s)]

    def methods(self, source: str) -> list[str]:
        validate_name("source", source)
        return [m for m in self._children(self._path(source)) if _NAME.fullmatch(m)]

    def _version_numbers(self, source: str, method: str, *, complete: bool) -> list[int]:
        out = []
        for name in self._children(self._path(source, method)):
            m = _VERSION_DIR.fullmatch(name)
            if m is None:
                continue
            if complete and self._fs.get_file_info(
                self._path(source, method, name, MANIFEST)
            ).type != pafs.FileType.File:
                continue  # an interrupted write: no manifest, not a version
            out.append(int(m.group(1)))
        return sorted(out)

    def versions(self, source: str, method: str) -> list[ModelVersion]:
        """Every complete version of (source, method), oldest first."""
        validate_name("source", source)
        validate_name("method", method)
        prod = self.production_version(source, method)
        serving = self.serving(source)
        out = []
        for n in self._version_numbers(source, method, complete=True):
            mv = self._read_version(source, method, n)
            mv.production = n == prod
            mv.serving = serving is not None and serving == (method, n)
            out.append(mv)
        return out

    def list(self, source: str | None = None) -> list[ModelVersion]:
        """Every complete version, for one source or all of them."""
        sources = [validate_name("source", source)] if source else self.sources()
        return [v for s in sources for m in self.methods(s) for v in self.versions(s, m)]

    def _read_version(self, source: str, method: str, version: int) -> ModelVersion:
        data = self._read_json(self._path(source, method, f"v{version:06d}", MANIFEST))
        if data is None:
            known = ", ".join(str(n) for n in self._version_numbers(source, method, complete=True))
            raise RegistryError(
                f"no version {version} of {source}/{method} in registry {self.root}"
                + (f"; versions: {known}" if known else "; nothing registered for it yet")
            )
        fields = ModelVersion.__dataclass_fields__
        kept = {k: v for k, v in data.items() if k in fields}
        kept["uri"] = self._uri(source, method, version)
        return ModelVersion(**kept)

    def _uri(self, source: str, method: str, version: int) -> str:
        return self.root.rstrip("/") + f"/{source}/{method}/v{version:06d}"

    def production_version(self, source: str, method: str) -> int | None:
        """The production version number of (source, method), or None."""
        data = self._read_json(self._path(source, method, PRODUCTION))
        return None if data is None else int(data["version"])

    def serving(self, source: str) -> tuple[str, int] | None:
        """``(method, version)`` the service scores ``source`` with, or None."""
        validate_name("source", source)
        data = self._read_json(self._path(source, SERVING))
        return None if data is None else (str(data["method"]), int(data["version"]))

    def get(self, source: str, method: str | None = None, version: int | str | None = None) -> ModelVersion:
        """One version: explicit, or production (``version`` None or ``"production"``).

        With ``method`` None, the source's serving model.

        Raises:
            RegistryError: nothing matches; the message lists what exists.
        """
        validate_name("source", source)
        if method is None:
            serving = self.serving(source)
            if serving is None:
                known = ", ".join(self.sources()) or "none"
                raise RegistryError(
                    f"source {source!r} has no production model in registry {self.root} "
                    f"(sources with models: {known}); promote one with "
                    "`logad registry promote SOURCE METHOD VERSION`"
                )
            method, version = serving
        validate_name("method", method)
        if version is None or version == "production":
            version = self.production_version(source, method)
            if version is None:
                raise RegistryError(f"{source}/{method} has no production version in registry {self.root}")
        mv = self._read_version(source, method, _as_version(version))
        mv.production = mv.version == self.production_version(source, method)
        mv.serving = self.serving(source) == (method, mv.version)
        return mv

    def fetch(self, version: ModelVersion, *, verify: bool = True) -> Path:
        """A local directory holding the version's files (copied from remote roots).

        Local registries return the version folder itself. Remote ones are copied
        into the cache once, checked against the manifest's SHA-256 sums, and
        renamed into place, so a half-copied version is never used.

        Raises:
            RegistryError: a file is missing or does not match its checksum.
        """
        src = self._path(version.source, version.method, f"v{version.version:06d}")
        if self._local:
            local = Path(src)
            if verify:
                _verify(local, version.files)
            return local
        key = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        dest = self._cache / key / version.source / version.method / f"v{version.version:06d}"
        if (dest / MANIFEST).is_file():
            return dest
        tmp = dest.with_name(f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        for name in [*version.files, MANIFEST]:
            with self._fs.open_input_stream(f"{src}/{name}") as fin, open(tmp / name, "wb") as fout:
                while chunk := fin.read(_CHUNK):
                    fout.write(chunk)
        if verify:
            _verify(tmp, version.files)
        try:
            tmp.rename(dest)
        except OSError:  # another process cached it first
            if not (dest / MANIFEST).is_file():
                raise
        return dest

    # -- writing ------------------------------------------------------------------------------

    def register(
        self,
        model_dir: str | os.PathLike[str],
        source: str,
        *,
        metrics: dict[str, Any] | None = None,
        sweep: dict[str, Any] | None = None,
        threshold: float | None = None,
        promote: bool = False,
    ) -> ModelVersion:
        """Copy a model directory in as the next version of (source, its method).

        The method and threshold are read from the model's own files. The first
        version of a (source, method) becomes its production version by itself,
        and the source's serving model when the source has none; ``promote=True``
        makes this version both. ``threshold`` is recorded in the manifest (read
        from the model's state.json/threshold.json/training.json when not given).

        Raises:
            DataError: ``model_dir`` is not a saved logad model.
            RegistryError: bad source name or an unwritable registry.
        """
        from logad.methods import read_artifact_header

        validate_name("source", source)
        model_dir = Path(model_dir)
        header = read_artifact_header(model_dir)
        method = validate_name("method", str(header["method"]))
        files = sorted(p.name for p in model_dir.iterdir() if p.is_file() and p.name != MANIFEST)
        if any(p.is_dir() for p in model_dir.iterdir()):
            raise DataError(f"{model_dir} has sub-folders; a model directory holds files only")
        sums = {name: _sha256(model_dir / name) for name in files}
        if threshold is None:
            threshold = _threshold_of(model_dir)

        parent = self._path(source, method)
        self._fs.create_dir(parent, recursive=True)
        self._sweep_leftovers(parent)
        self._sweep_leftovers(self._path(source))
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for _attempt in range(20):
            taken = self._version_numbers(source, method, complete=False)
            number = (taken[-1] if taken else 0) + 1
            final = self._path(source, method, f"v{number:06d}")
            tmp = self._path(source, method, _tmp_name(f"v{number:06d}"))
            manifest = {
                "source": source,
                "method": method,
                "version": number,
                "created_at": created,
                "logad_version": __version__,
                "threshold": threshold,
                "metrics": metrics or {},
                "sweep": sweep,
                "files": sums,
            }
            self._fs.create_dir(tmp, recursive=True)
            for name in files:
                self._upload(model_dir / name, f"{tmp}/{name}")
                _step(f"uploaded {name}")
            if self._local:  # the manifest inside, then one rename makes the whole version appear
                _write_local(f"{tmp}/{MANIFEST}", _json_bytes(manifest))
                _fsync_dir(tmp)
                _step("manifest written")
            try:
                self._move_dir(tmp, final)
            except _Taken:
                self._fs.delete_dir(tmp)
                continue  # a concurrent writer took this number; try the next
            break
        else:  # pragma: no cover - 20 concurrent writers in a row
            raise RegistryError(f"could not allocate a version for {source}/{method}")
        _step(f"v{number:06d} in place")
        if not self._local:
            self._write_json_atomic(f"{final}/{MANIFEST}", manifest)  # the commit point
            _step("manifest written")

        first = self.production_version(source, method) is None
        if promote or first:
            self.promote(source, method, number, serve=promote or self.serving(source) is None)
        return self.get(source, method, number)

    def promote(self, source: str, method: str, version: int | str, *, serve: bool = True) -> ModelVersion:
        """Make ``version`` the production version of (source, method).

        With ``serve`` (the default), it also becomes the model the HTTP service
        scores ``source`` with; a running service picks the change up without a
        restart.

        Raises:
            RegistryError: no such complete version.
        """
        validate_name("source", source)
        validate_name("method", method)
        number = _as_version(version)
        self._read_version(source, method, number)  # raises when it does not exist
        self._sweep_leftovers(self._path(source, method))
        self._sweep_leftovers(self._path(source))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._write_json_atomic(self._path(source, method, PRODUCTION), {"version": number, "promoted_at": stamp})
        _step(f"{PRODUCTION} in place")
        if serve:
            self._write_json_atomic(
                self._path(source, SERVING), {"method": method, "version": number, "promoted_at": stamp}
            )
            _step(f"{SERVING} in place")
        return self.get(source, method, number)

    def _sweep_leftovers(self, folder: str) -> list[str]:
        """Remove the ``.tmp-*`` leftovers of dead writers in ``folder``; their names."""
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        except OSError:
            return []
        now = time.time()
        removed = []
        for info in infos:
            if not info.base_name.startswith(".tmp-"):
                continue
            mtime = info.mtime.timestamp() if info.mtime is not None else None
            if not _writer_gone(info.base_name, mtime, now):
                continue
            try:
                if info.type == pafs.FileType.Directory:
                    self._fs.delete_dir(info.path)
                else:
                    self._fs.delete_file(info.path)
            except OSError:  # another writer swept it first
                continue
            removed.append(info.base_name)
        return removed

    def _upload(self, local: Path, dest: str) -> None:
        if self._local:  # flushed to disk before the rename that publishes it
            with open(local, "rb") as fin:
                _write_local(dest, fin)
            return
        with open(local, "rb") as fin, self._fs.open_output_stream(dest) as fout:
            while chunk := fin.read(_CHUNK):
                fout.write(chunk)

    def _move_dir(self, tmp: str, final: str) -> None:
        if self._local:
            try:
                os.rename(tmp, final)  # atomic; fails if `final` exists and is not empty
            except OSError as exc:
                if Path(final).exists():
                    raise _Taken from exc
                raise
            _fsync_dir(str(Path(final).parent))
            return
        if self._fs.get_file_info(final).type != pafs.FileType.NotFound:
            raise _Taken
        # object stores have no atomic directory rename: the manifest written after
        # the move is what makes the version visible
        self._fs.move(tmp, final)


class _Taken(Exception):
    pass


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _write_local(path: str, data: bytes | Any) -> None:
    """Write bytes (or copy a binary file object) to ``path`` and flush it to disk."""
    with open(path, "wb") as fh:
        if isinstance(data, bytes):
            fh.write(data)
        else:
            while chunk := data.read(_CHUNK):
                fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())


def _as_version(version: int | str) -> int:
    text = str(version).strip().lower().removeprefix("v")
    if not text.isdigit() or int(text) < 1:
        raise RegistryError(f"invalid version {version!r}: a positive number such as 3 or v3")
    return int(text)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verify(folder: Path, sums: dict[str, str]) -> None:
    for name, digest in sums.items():
        file = folder / name
        if not file.is_file():
            raise RegistryError(f"registry version {folder} is missing {name}")
        if _sha256(file) != digest:
            raise RegistryError(f"registry file {file} does not match its manifest checksum")


def _threshold_of(model_dir: Path) -> float | None:
    """The stored threshold, when the model keeps it in threshold.json or training.json."""
    candidates = (
        ("state.json", ("threshold",)),
        ("threshold.json", ("threshold",)),
        ("training.json", ("fit", "threshold")),
    )
    for name, keys in candidates:
        file = model_dir / name
        if not file.is_file():
            continue
        try:
            data: Any = json.loads(file.read_text())
            for key in keys:
                data = data[key]
            return float(data)
        except (KeyError, TypeError, ValueError):
            continue
    return None


def iter_tree(registry: ModelRegistry) -> Iterator[tuple[str, str, list[ModelVersion]]]:
    """(source, method, versions) for everything in the registry."""
    for s in registry.sources():
        for m in registry.methods(s):
            yield s, m, registry.versions(s, m)
