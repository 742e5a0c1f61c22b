"""Keyword labels: the rule CoLog's authors used to label syslog-family logs.

A line is anomalous (1) when its lower-cased message contains any term of the
keyword list for its file's type, normal (0) otherwise. The type is the first
match of ``labels.file_type_regex`` in the file's name (``auth.log.1`` → ``auth``,
``kern.log`` → ``kern``, ``dmesg.0`` → ``dmesg``). Lines of a file whose type has
no list get no label (null) and are counted, rather than called normal.

Such labels are a heuristic, not ground truth: they say which lines mention a
term someone chose, and reports made from them say so. The lists bundled with
logad (``logad/data/wordlists``, MIT, from the CoLog repository) cover auth,
daemon, debug, dmesg, kern, messages and syslog files.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logad.errors import ConfigError
from logad.sources.config import SourceConfig

__all__ = ["KeywordLabeller", "bundled_wordlists", "read_wordlists"]


def bundled_wordlists() -> Path:
    """The folder of the keyword lists shipped with logad."""
    return Path(str(resources.files("logad") / "data" / "wordlists"))


def read_wordlists(folder: str | Path) -> dict[str, list[str]]:
    """``TYPE.txt`` files of ``folder`` → type → terms (stripped, lower-cased; blank lines
    skipped: an empty term would match every message).

    Raises:
        ConfigError: the folder is missing or holds no ``.txt`` list.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"labels.wordlists: no folder {root}")
    out: dict[str, list[str]] = {}
    for f in sorted(root.glob("*.txt")):
        terms = [t.strip().lower() for t in f.read_text(encoding="utf-8", errors="replace").splitlines()]
        out[f.stem.lower()] = [t for t in terms if t]
    if not out:
        raise ConfigError(f"labels.wordlists: {root} holds no TYPE.txt keyword list")
    return out


class KeywordLabeller:
    """Labels lines of a ``labels: {kind: keywords}`` source (built once per parser).

    Args:
        config: the source config.
        file_names: the input files' names, by file index.
    """

    def __init__(self, config: SourceConfig, file_names: list[str]) -> None:
        lc = config.labels
        folder = config.wordlist_dir()
        lists = read_wordlists(folder) if folder else read_wordlists(bundled_wordlists())
        for kind, extra in lc.terms.items():
            lists[kind.lower()] = lists.get(kind.lower(), []) + [t.strip().lower() for t in extra if t.strip()]
        self.lists = lists
        rx = re.compile(lc.file_type_regex)
        types: list[str | None] = []
        for name in file_names:
            base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
            m = rx.search(base)
            types.append(m.group(0).lower() if m else None)
        self.file_types = types
        # file index → position in self.kinds (-1: no list for its type)
        self.kinds = sorted({t for t in types if t is not None and t in lists})
        self._kind_of = np.array([self.kinds.index(t) if t in self.kinds else -1 for t in types], np.int64)

    def __call__(self, content: pa.Array, file_idx: pa.Array) -> pa.Array:
        """int8 labels of ``content`` (the messages) read from files ``file_idx``; null
        where the file's type has no keyword list."""
        n = len(content)
        kind = self._kind_of[np.asarray(file_idx.to_numpy(zero_copy_only=False), np.int64)] if n else \
            np.zeros(0, np.int64)
        out = np.zeros(n, np.int8)
        lowered = None
        for k, name in enumerate(self.kinds):
            rows = np.flatnonzero(kind == k)
            if not len(rows):
                continue
            if lowered is None:
                lowered = pc.utf8_lower(content)
            sub = lowered.take(pa.array(rows))
            hit = np.zeros(len(rows), bool)
            for term in self.lists[name]:
                hit |= pc.fill_null(pc.match_substring(sub, term), False).to_numpy(zero_copy_only=False)
            out[rows] = hit
        return pa.array(out, pa.int8(), mask=kind < 0)
