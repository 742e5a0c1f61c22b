"""The Drain3 template store: mine, freeze, persist, match.

Mining is sequential (Drain3's tree is stateful), so it runs in one place and
sees each distinct *masked* message once, in order of first appearance. That is
exactly what Drain3 would build from the full stream: a repeated message
that matches a cluster whose template it already equals changes nothing but
the cluster's size. Matching against the frozen store is read-only and runs in
parallel everywhere, with a per-worker cache of masked message → template id.

Template ids are stable content hashes of the template text, so the same
template gets the same id on every shard, run and machine. Id 0 means "no
template matched" (an unknown line).

The store persists as plain JSON (no pickle): the masking rules, the Drain3
settings and the templates. Loading rebuilds Drain3's prefix tree from them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from drain3.drain import Drain, LogCluster

from logad.errors import DataError
from logad.sources.config import ParsingConfig
from logad.sources.lines import _re2_compiles, regex_replace

__all__ = ["UNKNOWN_ID", "Template", "TemplateMiner", "TemplateStore", "mask_contents", "template_id"]

UNKNOWN_ID = 0
FORMAT_VERSION = 1
_ID_MASK = (1 << 63) - 1


def template_id(text: str) -> int:
    """A stable, positive 63-bit id for a template's text (never 0)."""
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return (h & _ID_MASK) or 1


def mask_contents(contents: pa.Array, parsing: ParsingConfig) -> pa.Array:
    """Apply the masking rules in order: each match becomes ``<NAME>``."""
    out = contents.cast(pa.string())
    for rule in parsing.masking:
        out = regex_replace(out, rule.pattern, f"<{rule.mask_with}>", re2=_re2_cached(rule.pattern))
    return out


_RE2: dict[str, bool] = {}


def _re2_cached(pattern: str) -> bool:
    if pattern not in _RE2:
        _RE2[pattern] = _re2_compiles(pattern)
    return _RE2[pattern]


@dataclass(frozen=True)
class Template:
    id: int
    text: str
    count: int


def _new_drain(parsing: ParsingConfig) -> Drain:
    return Drain(
        depth=parsing.depth,
        sim_th=parsing.sim_th,
        max_children=parsing.max_children,
        extra_delimiters=tuple(parsing.extra_delimiters),
        parametrize_numeric_tokens=parsing.parametrize_numeric_tokens,
    )


class TemplateMiner:
    """Mines templates from masked messages with Drain3 (one instance, sequential)."""

    def __init__(self, parsing: ParsingConfig) -> None:
        self.parsing = parsing
        self.drain = _new_drain(parsing)
        self._cluster_of: dict[str, LogCluster] = {}  # Drain never merges clusters
        self.num_messages = 0

    def add(self, masked: Iterable[str], counts: Iterable[int] | None = None) -> None:
        """Feed masked messages in order; repeats are skipped (they change nothing)."""
        counts_it = iter(counts) if counts is not None else None
        for msg in masked:
            c = next(counts_it) if counts_it is not None else 1
            self.num_messages += c
            cluster = self._cluster_of.get(msg)
            if cluster is not None:
                cluster.size += c
                continue
            cluster, _ = self.drain.add_log_message(msg)
            cluster.size += c - 1
            self._cluster_of[msg] = cluster

    def freeze(self) -> TemplateStore:
        by_id: dict[int, Template] = {}
        for cluster in self.drain.clusters:
            text = cluster.get_template()
            tid = template_id(text)
            prev = by_id.get(tid)
            by_id[tid] = Template(tid, text, cluster.size + (prev.count if prev else 0))
        return TemplateStore(self.parsing, list(by_id.values()))


class TemplateStore:
    """A frozen set of templates that matches masked messages to template ids."""

    def __init__(self, parsing: ParsingConfig, templates: Sequence[Template]) -> None:
        self.parsing = parsing
        self.templates = sorted(templates, key=lambda t: (-t.count, t.text))
        self._drain = _new_drain(parsing)
        self._internal_to_id: dict[int, int] = {}
        for i, t in enumerate(self.templates, start=1):
            cluster = LogCluster(self._drain.get_content_as_tokens(t.text), i)
            cluster.size = t.count
            self._drain.id_to_cluster[i] = cluster
            self._drain.add_seq_to_prefix_tree(self._drain.root_node, cluster)
            self._internal_to_id[i] = t.id
        self._cache: dict[str, int] = {}
        self._cache_limit = 1_000_000

    def __len__(self) -> int:
        return len(self.templates)

    def text_of(self, tid: int) -> str | None:
        for t in self.templates:
            if t.id == tid:
                return t.text
        return None

    def mask(self, contents: pa.Array) -> pa.Array:
        return mask_contents(contents, self.parsing)

    def match_one(self, masked: str) -> int:
        tid = self._cache.get(masked)
        if tid is None:
            cluster = self._drain.match(masked, full_search_strategy="fallback")
            tid = UNKNOWN_ID if cluster is None else self._internal_to_id[cluster.cluster_id]
            if len(self._cache) >= self._cache_limit:
                self._cache.clear()
            self._cache[masked] = tid
        return tid

    def match(self, masked: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Template id per masked message (0 where none matches).

        An Arrow array is dictionary-encoded first, so each distinct message is
        matched once (a log repeats few messages many times) and no Python
        string is made per line.
        """
        if isinstance(masked, pa.ChunkedArray):  # chunk by chunk: their dictionaries differ
            parts = [self.match(c) for c in masked.chunks]
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if isinstance(masked, pa.Array):
            if isinstance(masked.type, pa.DictionaryType):
                enc = masked
            else:
                enc = pc.dictionary_encode(masked, null_encoding="encode")
            ids = self.match(enc.dictionary.to_pylist())
            return ids[enc.indices.to_numpy(zero_copy_only=False)] if len(enc) else ids[:0]
        m = self.match_one
        return np.fromiter((UNKNOWN_ID if s is None else m(s) for s in masked), dtype=np.int64, count=len(masked))

    def match_contents(self, contents: pa.Array) -> np.ndarray:
        return self.match(self.mask(contents))

    # -- persistence -------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "parsing": self.parsing.model_dump(),
            "templates": [{"id": t.id, "template": t.text, "count": t.count} for t in self.templates],
        }

    def save(self, path: str | Path) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(p)

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "template store") -> TemplateStore:
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{where} is not a logad template store (format_version {FORMAT_VERSION}); "
                "make one with `logad ingest`"
            )
        try:
            parsing = ParsingConfig.model_validate(data["parsing"])
            templates = [Template(int(t["id"]), str(t["template"]), int(t["count"])) for t in data["templates"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where} is malformed: {exc}") from exc
        return cls(parsing, templates)

    @classmethod
    def load(cls, path: str | Path) -> TemplateStore:
        p = Path(path)
        if p.is_dir():
            p = p / "templates.json"
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as exc:
            raise DataError(f"no template store at {p}: pass the templates.json of an ingest run") from exc
        except json.JSONDecodeError as exc:
            raise DataError(f"{p} is not JSON: {exc}") from exc
        return cls.from_dict(data, where=str(p))
