"""Engineered features of the classical pipeline, per line and per window.

Everything is computed over whole batches with Arrow compute kernels and numpy
(cumulative sums for the rolling statistics, one sort for distinct counts, one
``bincount`` for character entropy), never a Python loop per line.

A batch of windows is first flattened into its lines (:class:`LineBatch`). A line
that sits in several windows (sliding or overlapping fixed windows) is one input
line: lines are keyed by ``(line_files[i], line_numbers[i])`` and their context
(the preceding lines) is taken in file order, so every copy of a line gets the
same features. Lines without references (a hand-made table) are keyed by window
and position, and their context is their window.

Feature groups (``groups`` in :class:`FeatureConfig`):

* ``template``: the line's template id frequency in training (log count), its
  rarity (-log10 share), unseen flag, wildcard count (tokens with a digit),
  constant-token count, and its own ERROR / WARN / FATAL flags (a word of the
  level anywhere in the line, header included).
* ``context``: over the preceding 5, 10, 20 and 50 lines (configurable): distinct
  templates, rare and unseen shares, ERROR / WARN / FATAL shares, the line rate and
  mean time gap.
* ``text``: message length, token count, digit / upper-case / special-character
  shares, character entropy (bits).
* ``temporal``: hour, weekday, gap to the previous line (log seconds), burstiness
  of the last gaps (``1 + (σ - μ) / (σ + μ)``: 0 perfectly regular, 1 random, 2 bursty).
* ``file``: the line's file type, one-hot over the types seen in training: the
  leading letters of its file name (``auth.log.1`` → ``auth``, ``syslog.2.gz`` →
  ``syslog``), as syslog-family folders name their files. Lines of another or no
  type get none.
* ``tfidf``: TF-IDF of the lower-cased message's words (letters only, so numbers
  and ids never become terms), uni- and bigrams, fitted on training lines.
* ``sbert`` (optional, not a default group): the all-MiniLM-L6-v2 sentence vector of
  the line's message (384-d, :mod:`logad.embeddings`), by default with its numbers
  and hex ids masked (``sbert_text: masked``: one vector per message shape, not one
  per block id or PID), optionally projected on the first ``sbert_components``
  principal axes of the training messages' vectors. Each distinct text of a batch
  is looked up once in the featurizer's :class:`~logad.embeddings.EmbeddingCache`;
  the vectors of the training and validation messages are kept with the model
  (``embeddings.safetensors``), so scoring embeds only messages it has never seen.

Window features (for tables labelled per window only) are the template count
vector, the mean and max of every dense line feature over the window's lines, the
window's line count and span, the mean TF-IDF row, and the mean and max of the
lines' SBERT vectors. The fitted state (template counts, TF-IDF vocabulary and idf,
the SBERT projection) is JSON arrays. A value that cannot be computed
(the gap of a line without a time, the rate of a line with no predecessor) is
:data:`MISSING` (-1; every feature is otherwise ≥ 0), so samplers and linear models
see finite numbers and the trees can still split it off.
"""

from __future__ import annotations

import re
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from logad.embeddings import DIMENSION, VECTORS_FILE, EmbeddingCache, texts_to_embed
from logad.errors import DataError
from logad.methods._lines import WORD_PATTERN, LineBatch, file_types, flatten_lines

__all__ = ["FEATURE_GROUPS", "MISSING", "FeatureConfig", "Featurizer", "LineBatch", "file_types", "flatten_lines"]

MISSING = -1.0
"""The value of a feature that cannot be computed for a line or window."""

FEATURE_GROUPS = ("template", "context", "text", "temporal", "tfidf", "file", "sbert")
DEFAULT_GROUPS = ("template", "context", "text", "temporal", "tfidf", "file")
"""The groups used unless ``groups`` says otherwise (``sbert`` is opt-in)."""
_ERROR = r"(?i)\b(error|err|errors)\b"
_WARN = r"(?i)\b(warn|warning|warnings)\b"
_FATAL = r"(?i)\b(fatal|crit|critical|panic|emerg|emergency|alert|severe|failure)\b"
_NON_LETTERS = re.compile(r"[^a-z]+")
UNSEEN_CACHE_LIMIT = 50_000
"""Vectors of messages first met after fitting that a featurizer keeps at most (then starts afresh)."""


class FeatureConfig(BaseModel):
    """Which features to compute, and their few settings."""

    model_config = ConfigDict(extra="forbid")

    groups: list[str] = Field(list(DEFAULT_GROUPS), description=f"feature groups to use, of {list(FEATURE_GROUPS)}")
    context_sizes: list[int] = Field([5, 10, 20, 50], description="preceding-line counts of the context features")
    rare_count: int = Field(5, ge=0, description="a template seen at most this often in training is rare")
    tfidf_max_features: int = Field(4096, ge=16, description="TF-IDF vocabulary size (most frequent terms)")
    tfidf_min_df: int = Field(2, ge=1, description="a TF-IDF term must occur in at least this many training lines")
    tfidf_ngrams: int = Field(2, ge=1, le=3, description="TF-IDF word n-grams up to this length")
    tfidf_analyzer: str = Field("word", pattern="^(word|char)$",
                                description="TF-IDF terms: words (letters only), or character 3-5-grams within words")
    max_templates: int = Field(2000, ge=1, description="window features: template count columns (most frequent)")
    sbert_text: Literal["masked", "message"] = Field(
        "masked", description="sbert: embed the message with every run of digits (and the hex letters around "
        "it) replaced by 0, or the message as it is")
    sbert_components: int = Field(0, ge=0, le=DIMENSION, description="sbert: project the vectors on this many "
                                  "principal axes of the training messages' vectors (0: all 384 dimensions)")

    @field_validator("groups")
    @classmethod
    def _known_groups(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(FEATURE_GROUPS))
        if bad:
            raise ValueError(f"unknown feature group(s) {bad}; known: {list(FEATURE_GROUPS)}")
        if not v:
            raise ValueError("at least one feature group is needed")
        return list(dict.fromkeys(v))

    @field_validator("context_sizes")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError("context sizes must be positive")
        return sorted(set(v))


def _letters_only(text: str) -> str:
    return _NON_LETTERS.sub(" ", text.lower())


def _principal_axes(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and first ``k`` principal axes (rows, unit length, largest entry positive) of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    xc = x - mean
    values, vectors = np.linalg.eigh(xc.T @ xc)
    axes = vectors[:, np.argsort(-values, kind="stable")[:k]].T
    signs = np.sign(axes[np.arange(len(axes)), np.argmax(np.abs(axes), axis=1)])
    return mean, axes * np.where(signs == 0, 1.0, signs)[:, None]


# -- the rolling helpers (over input lines in file order, within a group) -----------------------

def _group_positions(group: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal ``group`` values."""
    n = len(group)
    if not n:
        return np.zeros(0, np.int64)
    start = np.ones(n, dtype=bool)
    start[1:] = group[1:] != group[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    return np.arange(n) - first


def _preceding_sum(x: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``x`` over each row's preceding ``min(k, pos)`` rows, and that count."""
    cs = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    n_prev = np.minimum(pos, k)
    i = np.arange(len(x))
    return cs[i] - cs[i - n_prev], n_prev


def _preceding_distinct(ids: np.ndarray, pos: np.ndarray, k: int, chunk: int = 100_000) -> np.ndarray:
    """Distinct ``ids`` among each row's preceding ``min(k, pos)`` rows."""
    out = np.zeros(len(ids), dtype=np.float64)
    lag = np.arange(1, k + 1)
    for s in range(0, len(ids), chunk):
        rows = np.arange(s, min(s + chunk, len(ids)))
        src = rows[:, None] - lag[None, :]
        valid = lag[None, :] <= pos[rows][:, None]
        m = np.where(valid, ids[np.maximum(src, 0)], np.iinfo(np.int64).min)
        m.sort(axis=1)
        change = (m[:, 1:] != m[:, :-1]) & (m[:, 1:] != np.iinfo(np.int64).min)
        out[rows] = change.sum(axis=1) + (m[:, 0] != np.iinfo(np.int64).min)
    return out


def _entropy(text: pa.Array, chunk: int = 50_000) -> np.ndarray:
    """Shannon entropy (bits) of each string's bytes."""
    out = np.zeros(len(text), dtype=np.float64)
    for s in range(0, len(text), chunk):
        part = text.slice(s, chunk).cast(pa.binary())
        n = len(part)
        lens = pc.binary_length(part).to_numpy(zero_copy_only=False).astype(np.int64)
        if not lens.sum():
            continue
        offs = np.frombuffer(part.buffers()[1], dtype=np.int32)[part.offset: part.offset + n + 1]
        data = np.frombuffer(part.buffers()[2], dtype=np.uint8)[offs[0]: offs[-1]]
        row = np.repeat(np.arange(n), np.diff(offs))
        c = np.bincount(row * 256 + data.astype(np.int64), minlength=n * 256).reshape(n, 256).astype(np.float64)
        total = lens[:, None].astype(np.float64)
        p = np.divide(c, total, out=np.zeros_like(c), where=total > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -(np.where(p > 0, p * np.log2(p), 0.0)).sum(axis=1)
        out[s: s + n] = h
    return out


def _share(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def _count(arr: pa.Array, pattern: str) -> np.ndarray:
    return pc.count_substring_regex(arr, pattern).to_numpy(zero_copy_only=False).astype(np.float64)


def _flag(arr: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(arr, pattern).to_numpy(zero_copy_only=False).astype(np.float64)


# -- the featurizer -----------------------------------------------------------------------------

class Featurizer:
    """Fits the feature state on training lines; makes line and window matrices.

    ``line_matrix`` / ``window_matrix`` return a CSR matrix (float32) and the
    column names; the dense columns come first, then the SBERT columns, the TF-IDF
    terms last.

    With the ``sbert`` group, :attr:`embeddings` holds the vectors of the training and
    validation messages (filled by :meth:`fit`, saved with the model); messages met
    later are embedded once into a second, bounded cache that is never saved.
    ``device`` is where SBERT runs.
    """

    def __init__(self, config: FeatureConfig, device: str = "cpu") -> None:
        self.config = config
        self.device = device
        self.embeddings = EmbeddingCache(device)
        self._unseen = EmbeddingCache(device)
        self._frozen = False
        self.sbert_mean = np.zeros(0, np.float64)
        self.sbert_axes = np.zeros((0, DIMENSION), np.float64)
        self.template_ids = np.zeros(0, np.int64)
        self.template_counts = np.zeros(0, np.int64)
        self.total_lines = 0
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0, np.float64)
        self.window_templates = np.zeros(0, np.int64)
        self.file_types: list[str] = []
        self._tfidf = None

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, batch: LineBatch, keep: LineBatch | None = None) -> Featurizer:
        """Fit the feature state on training lines ``batch``; with the ``sbert`` group, also embed
        the messages of ``keep`` (the validation lines), whose vectors the model keeps as well."""
        ids, counts = np.unique(batch.u_event[batch.u_event != 0], return_counts=True)
        self.template_ids, self.template_counts = ids.astype(np.int64), counts.astype(np.int64)
        self.total_lines = batch.num_unique
        by_count = np.argsort(-self.template_counts, kind="stable")[: self.config.max_templates]
        self.window_templates = np.sort(self.template_ids[by_count])
        if "file" in self.config.groups:
            types = file_types(batch.u_file)
            self.file_types = sorted(set(types.tolist()) - {""})
        if "tfidf" in self.config.groups:
            from sklearn.feature_extraction.text import TfidfVectorizer

            vec = self._vectorizer(TfidfVectorizer, vocabulary=None)
            try:
                vec.fit(self._documents(batch.u_message))
            except ValueError:  # no term reaches min_df (a tiny or term-less training part)
                vec = self._vectorizer(TfidfVectorizer, vocabulary=None, min_df=1)
                try:
                    vec.fit(self._documents(batch.u_message))
                except ValueError:
                    vec = None
            if vec is not None:
                self.vocabulary = {str(k): int(v) for k, v in vec.vocabulary_.items()}
                self.idf = np.asarray(vec.idf_, dtype=np.float64)
        self._tfidf = None
        if "sbert" in self.config.groups:
            self.embeddings, self._unseen, self._frozen = EmbeddingCache(self.device), EmbeddingCache(self.device), False
            train = self._distinct_texts(batch.u_message)[0]
            vectors = self._vectors(train)
            if keep is not None:
                self._vectors(self._distinct_texts(keep.u_message)[0])
            self._frozen = True
            k = self.config.sbert_components
            if k:
                self.sbert_mean, self.sbert_axes = _principal_axes(vectors, k)
        return self

    def _vectorizer(self, cls: Any, vocabulary: dict[str, int] | None, min_df: int | None = None) -> Any:
        if self.config.tfidf_analyzer == "char":
            return cls(lowercase=True, analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, dtype=np.float32,
                       min_df=self.config.tfidf_min_df if min_df is None else min_df,
                       max_features=self.config.tfidf_max_features, vocabulary=vocabulary,
                       preprocessor=_letters_only)
        return cls(lowercase=True, token_pattern=WORD_PATTERN,
                   ngram_range=(1, self.config.tfidf_ngrams), sublinear_tf=True, dtype=np.float32,
                   min_df=self.config.tfidf_min_df if min_df is None else min_df,
                   max_features=self.config.tfidf_max_features, vocabulary=vocabulary)

    @staticmethod
    def _documents(messages: pa.Array) -> list[str]:
        return pc.fill_null(messages, "").to_pylist()

    def _transformer(self) -> Any:
        if self._tfidf is None and self.vocabulary:
            from sklearn.feature_extraction.text import TfidfVectorizer

            vec = self._vectorizer(TfidfVectorizer, vocabulary=self.vocabulary)
            vec.idf_ = self.idf
            self._tfidf = vec
        return self._tfidf

    # -- state -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        return {"template_ids": self.template_ids.tolist(), "template_counts": self.template_counts.tolist(),
                "total_lines": self.total_lines, "window_templates": self.window_templates.tolist(),
                "tfidf_terms": terms, "tfidf_idf": self.idf.tolist(), "file_types": self.file_types,
                "sbert_mean": self.sbert_mean.tolist(), "sbert_axes": self.sbert_axes.tolist()}

    @classmethod
    def from_json(cls, config: FeatureConfig, data: dict[str, Any], device: str = "cpu") -> Featurizer:
        try:
            f = cls(config, device)
            f.template_ids = np.asarray(data["template_ids"], dtype=np.int64)
            f.template_counts = np.asarray(data["template_counts"], dtype=np.int64)
            f.total_lines = int(data["total_lines"])
            f.window_templates = np.asarray(data["window_templates"], dtype=np.int64)
            f.vocabulary = {str(t): i for i, t in enumerate(data["tfidf_terms"])}
            f.idf = np.asarray(data["tfidf_idf"], dtype=np.float64)
            f.file_types = [str(t) for t in data.get("file_types", [])]
            f.sbert_mean = np.asarray(data.get("sbert_mean", []), dtype=np.float64)
            f.sbert_axes = np.asarray(data.get("sbert_axes", []), dtype=np.float64).reshape(-1, DIMENSION)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"feature state is incomplete or malformed: {exc}") from exc
        if len(f.template_ids) != len(f.template_counts) or len(f.vocabulary) != len(f.idf):
            raise DataError("feature state arrays disagree in length")
        if len(f.sbert_axes) != config.sbert_components or (len(f.sbert_axes) and len(f.sbert_mean) != DIMENSION):
            raise DataError(f"the SBERT projection holds {len(f.sbert_axes)} axes; the config asks for "
                            f"{config.sbert_components}")
        f._frozen = True
        return f

    def save_embeddings(self, directory: str | Path) -> None:
        """With the ``sbert`` group: write the kept vectors (those of the training and validation
        messages) beside the model, as :meth:`EmbeddingCache.save` does; else nothing."""
        if "sbert" in self.config.groups:
            self.embeddings.save(directory)

    def load_embeddings(self, directory: str | Path) -> None:
        """With the ``sbert`` group: read the vectors :meth:`save_embeddings` wrote.

        Raises:
            DataError: they are missing or unreadable.
        """
        if "sbert" not in self.config.groups:
            return
        if not (Path(directory) / VECTORS_FILE).is_file():
            raise DataError(f"{directory} has the sbert feature group but no {VECTORS_FILE}")
        self.embeddings = EmbeddingCache.load(directory, self.device)
        self._unseen = EmbeddingCache(self.device)
        self._frozen = True

    # -- SBERT vectors -----------------------------------------------------------------------

    @property
    def embedding_counts(self) -> dict[str, int]:
        """Distinct texts looked up and found (``hits``) or embedded (``misses``), over the kept
        vectors and those of messages met after fitting; and how many vectors are kept."""
        return {"hits": self.embeddings.hits + self._unseen.hits,
                "misses": self.embeddings.misses + self._unseen.misses, "kept": len(self.embeddings)}

    def _distinct_texts(self, messages: pa.Array) -> tuple[list[str], np.ndarray]:
        """The distinct SBERT texts of ``messages`` and, per message, the index of its text."""
        enc = pc.dictionary_encode(texts_to_embed(messages, self.config.sbert_text))
        return enc.dictionary.to_pylist(), enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)

    def _vectors(self, texts: list[str]) -> np.ndarray:
        """One vector per (distinct) text: from the kept vectors, else from (or into) the cache
        of messages met after fitting, which starts afresh when it would pass
        :data:`UNSEEN_CACHE_LIMIT`."""
        if not self._frozen:
            return self.embeddings.lookup(texts)
        kept = np.fromiter((t in self.embeddings for t in texts), dtype=bool, count=len(texts))
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        if kept.any():
            out[kept] = self.embeddings.lookup([t for t, k in zip(texts, kept, strict=True) if k])
        if not kept.all():
            new = [t for t, k in zip(texts, kept, strict=True) if not k]
            if len(self._unseen) + len(new) > UNSEEN_CACHE_LIMIT:
                fresh = EmbeddingCache(self.device)
                fresh.hits, fresh.misses = self._unseen.hits, self._unseen.misses
                self._unseen = fresh
            out[~kept] = self._unseen.lookup(new)
        return out

    def sbert_rows(self, messages: pa.Array) -> np.ndarray:
        """The ``sbert`` columns of every message (float64, rows as ``messages``): its vector, or
        its projection on the fitted principal axes. Each distinct text is looked up once."""
        texts, index = self._distinct_texts(messages)
        vectors = self._vectors(texts).astype(np.float64)
        if len(self.sbert_axes):
            vectors = (vectors - self.sbert_mean) @ self.sbert_axes.T
        return vectors[index]

    def sbert_names(self) -> list[str]:
        if "sbert" not in self.config.groups:
            return []
        if len(self.sbert_axes):
            return [f"sbert_pc_{i}" for i in range(len(self.sbert_axes))]
        return [f"sbert_{i}" for i in range(DIMENSION)]

    # -- line features -----------------------------------------------------------------------

    def _train_counts(self, events: np.ndarray) -> np.ndarray:
        if not len(self.template_ids):
            return np.zeros(len(events), dtype=np.float64)
        pos = np.minimum(np.searchsorted(self.template_ids, events), len(self.template_ids) - 1)
        known = (self.template_ids[pos] == events) & (events != 0)
        return np.where(known, self.template_counts[pos], 0).astype(np.float64)

    def dense_line_features(self, batch: LineBatch) -> tuple[np.ndarray, list[str]]:
        """Dense features per input line (rows as ``batch.u_*``) and their names."""
        cfg, cols, names = self.config, [], []

        def add(name: str, values: np.ndarray) -> None:
            names.append(name)
            cols.append(np.asarray(values, dtype=np.float64))

        msg = pc.fill_null(batch.u_message, "")
        line = pc.fill_null(batch.u_line, "")
        count = self._train_counts(batch.u_event)
        unseen = (count == 0).astype(np.float64)
        rare = (count <= cfg.rare_count).astype(np.float64)
        tokens = _count(msg, r"\S+")
        if "template" in cfg.groups:
            wild = _count(msg, r"\S*\d\S*")
            add("template_log_count", np.log1p(count))
            add("template_rarity", -np.log10((count + 1.0) / (self.total_lines + 1.0)))
            add("template_unseen", unseen)
            add("template_wildcards", wild)
            add("template_constant_tokens", tokens - wild)
        levels = {"error": _flag(line, _ERROR), "warn": _flag(line, _WARN), "fatal": _flag(line, _FATAL)}
        if "template" in cfg.groups or "context" in cfg.groups:
            for lv, flags in levels.items():
                add(f"line_{lv}", flags)
        pos = _group_positions(batch.u_group)
        t = batch.u_time
        prev_t = np.concatenate(([np.nan], t[:-1]))
        gap = np.where(pos > 0, t - prev_t, np.nan)
        if "context" in cfg.groups:
            tcs = np.concatenate(([0.0], np.cumsum(np.nan_to_num(gap), dtype=np.float64)))
            has_t = np.concatenate(([0.0], np.cumsum(~np.isnan(gap), dtype=np.float64)))
            i = np.arange(len(t))
            for k in cfg.context_sizes:
                add(f"ctx{k}_distinct_templates", _preceding_distinct(batch.u_event, pos, k))
                s, n = _preceding_sum(rare, pos, k)
                add(f"ctx{k}_rare_share", _share(s, n))
                s, n = _preceding_sum(unseen, pos, k)
                add(f"ctx{k}_unseen_share", _share(s, n))
                for lv, flags in levels.items():
                    s, n = _preceding_sum(flags, pos, k)
                    add(f"ctx{k}_{lv}_share", _share(s, n))
                # the span of the last k gaps (the gaps between the preceding lines and this one)
                n_gap = np.minimum(pos, k)
                span = tcs[i + 1] - tcs[i + 1 - n_gap]
                timed = has_t[i + 1] - has_t[i + 1 - n_gap]
                with np.errstate(divide="ignore", invalid="ignore"):
                    add(f"ctx{k}_lines_per_s", np.where(timed > 0, timed / np.maximum(span, 1e-3), np.nan))
                    add(f"ctx{k}_mean_gap_s", np.where(timed > 0, span / timed, np.nan))
        if "text" in cfg.groups:
            length = pc.utf8_length(msg).to_numpy(zero_copy_only=False).astype(np.float64)
            add("text_length", length)
            add("text_tokens", tokens)
            add("text_digit_share", _share(_count(msg, r"\d"), length))
            add("text_upper_share", _share(_count(msg, r"[A-Z]"), length))
            add("text_special_share", _share(_count(msg, r"[^\w\s]"), length))
            add("text_entropy_bits", _entropy(msg))
        if "temporal" in cfg.groups:
            ts = pd.to_datetime(pd.Series(t), unit="s", errors="coerce")
            add("time_hour", ts.dt.hour.to_numpy(dtype=np.float64, na_value=np.nan))
            add("time_weekday", ts.dt.weekday.to_numpy(dtype=np.float64, na_value=np.nan))
            add("time_gap_log_s", np.log1p(np.maximum(gap, 0.0)))
            k = max(cfg.context_sizes)
            g0 = np.nan_to_num(np.maximum(gap, 0.0))
            valid = (~np.isnan(gap)).astype(np.float64)
            s1, _ = _preceding_sum(g0, pos + 1, k)     # the last k gaps, this line's included
            s2, _ = _preceding_sum(g0 * g0, pos + 1, k)
            nv, _ = _preceding_sum(valid, pos + 1, k)
            s1, s2, nv = np.roll(s1, -1), np.roll(s2, -1), np.roll(nv, -1)  # shift: windows end at this line
            with np.errstate(divide="ignore", invalid="ignore"):
                mu = np.where(nv > 0, s1 / nv, np.nan)
                sd = np.sqrt(np.maximum(np.where(nv > 0, s2 / nv, np.nan) - mu * mu, 0.0))
                add("time_burstiness", np.where((nv > 1) & (mu + sd > 0), 1.0 + (sd - mu) / (sd + mu), np.nan))
        if "file" in cfg.groups and self.file_types:
            types = file_types(batch.u_file)
            for ft in self.file_types:
                add(f"file_type[{ft}]", (types == ft).astype(np.float64))
        if not cols:
            return np.zeros((batch.num_unique, 0)), names
        return np.nan_to_num(np.column_stack(cols), nan=MISSING, posinf=MISSING, neginf=MISSING), names

    def _tfidf_rows(self, messages: pa.Array) -> sp.csr_matrix | None:
        if "tfidf" not in self.config.groups:
            return None
        vec = self._transformer()
        if vec is None:
            return sp.csr_matrix((len(messages), 0), dtype=np.float32)
        return vec.transform(self._documents(messages)).astype(np.float32).tocsr()

    def tfidf_names(self) -> list[str]:
        if "tfidf" not in self.config.groups:
            return []
        return [f"tfidf[{t}]" for t in sorted(self.vocabulary, key=self.vocabulary.__getitem__)]

    def line_matrix(self, batch: LineBatch) -> tuple[sp.csr_matrix, list[str]]:
        """Features of every input line of ``batch`` (rows as ``batch.u_*``)."""
        dense, names = self.dense_line_features(batch)
        parts = [sp.csr_matrix(dense.astype(np.float32))]
        if "sbert" in self.config.groups:
            parts.append(sp.csr_matrix(self.sbert_rows(batch.u_message).astype(np.float32)))
            names = names + self.sbert_names()
        tf = self._tfidf_rows(batch.u_message)
        if tf is not None:
            parts.append(tf)
            names = names + self.tfidf_names()
        return sp.hstack(parts, format="csr", dtype=np.float32), names

    # -- window features ---------------------------------------------------------------------

    def window_matrix(self, frame: pd.DataFrame, batch: LineBatch) -> tuple[sp.csr_matrix, list[str]]:
        """Features of every window of ``frame`` (``batch = flatten_lines(frame)``)."""
        nw = len(batch.counts)
        dense, dnames = self.dense_line_features(batch)
        per_line = dense[batch.unique] if len(dense) else np.zeros((batch.num_lines, 0))
        # window × line indicator, for means; maxima by reduceat over each window's run of lines
        ones = np.ones(batch.num_lines, dtype=np.float64)
        member = sp.csr_matrix((ones, (batch.window, np.arange(batch.num_lines))), shape=(nw, batch.num_lines))
        sizes = np.maximum(batch.counts, 1).astype(np.float64)
        filled = np.nan_to_num(per_line, nan=0.0)
        mean = (member @ filled) / sizes[:, None]
        starts = np.concatenate(([0], np.cumsum(batch.counts)[:-1])).astype(np.int64)
        mx = np.zeros((nw, per_line.shape[1]))
        nonempty = batch.counts > 0
        if per_line.shape[1] and nonempty.any():
            mx[nonempty] = np.maximum.reduceat(np.where(np.isnan(per_line), -np.inf, per_line),
                                               starts[nonempty], axis=0)
            mx[np.isinf(mx)] = np.nan
        # template counts over the most frequent training templates, plus the unseen column
        ids = self.window_templates
        col = np.full(batch.num_lines, len(ids), dtype=np.int64)
        ev = np.fromiter(chain.from_iterable(frame["event_ids"]), np.int64, batch.num_lines)
        if len(ids):
            pos = np.minimum(np.searchsorted(ids, ev), len(ids) - 1)
            col = np.where((ids[pos] == ev) & (ev != 0), pos, len(ids))
        known = self._train_counts(ev) > 0
        tcount = sp.csr_matrix((ones, (batch.window, col)), shape=(nw, len(ids) + 1))
        unseen = np.bincount(batch.window, weights=(~known).astype(np.float64), minlength=nw)
        span = (pd.to_datetime(frame["end"]) - pd.to_datetime(frame["start"])).dt.total_seconds() \
            if "start" in frame and "end" in frame else pd.Series(np.nan, index=frame.index)
        head = np.column_stack([batch.counts.astype(np.float64), span.to_numpy(dtype=np.float64, na_value=np.nan),
                                unseen])
        head = np.nan_to_num(head, nan=MISSING)
        parts = [sp.csr_matrix(np.hstack([head, mean, mx]).astype(np.float32)), tcount.astype(np.float32)]
        names = (["window_lines", "window_span_s", "window_unseen_lines"] + [f"mean_{n}" for n in dnames]
                 + [f"max_{n}" for n in dnames] + [f"count[template {i}]" for i in ids.tolist()]
                 + ["count[unseen templates]"])
        if "sbert" in self.config.groups:
            vec = self.sbert_rows(batch.u_message)[batch.unique]
            vmax = np.zeros((nw, vec.shape[1]))
            if nonempty.any():
                vmax[nonempty] = np.maximum.reduceat(vec, starts[nonempty], axis=0)
            parts.append(sp.csr_matrix(np.hstack([(member @ vec) / sizes[:, None], vmax]).astype(np.float32)))
            sn = self.sbert_names()
            names += [f"mean_{n}" for n in sn] + [f"max_{n}" for n in sn]
        tf = self._tfidf_rows(batch.u_message)
        if tf is not None:
            parts.append(sp.csr_matrix(member @ tf[batch.unique] / sizes[:, None]).astype(np.float32))
            names += [f"mean_{n}" for n in self.tfidf_names()]
        return sp.hstack(parts, format="csr", dtype=np.float32), names
