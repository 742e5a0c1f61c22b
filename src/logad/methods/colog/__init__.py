"""CoLog: point and collective anomalies from message semantics and event context.

After Nasirzadeh et al., "A unified framework for detecting point and collective
anomalies in operating system logs via collaborative transformers". Every input
line is judged with its context, the ``context`` lines before and after it in its
file (:mod:`logad.methods._lines`), through two modalities:

* **semantic**: the SBERT vector (all-MiniLM-L6-v2, 384-d) of the line's message,
  from a cache keyed by message content (:mod:`logad.embeddings`): a message is
  embedded once, however often it repeats, and the vectors travel with the model,
  so a service embeds only messages it has never seen;
* **sequence**: the vectors of the line's context, in file order, padded at the
  file's edges.

The collaborative transformer (:mod:`.model`) encodes each modality with
multi-head impressed attention over the other, adapts, balances and fuses them,
and classifies the fused vector.

Modes (``mode``):

* **point**: two classes per line; a line's score is P(anomalous), a window's the
  max over its lines (a window is flagged exactly when one of its lines is).
* **collective**: the authors' four classes per line: normal, message anomaly
  (the line is anomalous), context anomaly (a line of its context is, the line is
  not), both. A line's score is P(message anomaly) + P(both); a window's the max
  over its lines of 1 − P(normal), with a window threshold of its own.

Where the training windows carry no line labels (HDFS blocks), the model learns
from window labels instead (multiple-instance learning): a window's logit is the
max of its lines' logits, so it still scores every line.

Imbalance: the training lines are under-sampled with Tomek links (``sampler``;
the other imbalanced-learn samplers are there too) over their distinct
(message, context, label) rows, in the space of their concatenated vectors; the
validation and test parts are never resampled. Early stopping and the
threshold (best F1, or the lowest cut reaching ``target_precision``) come from
the validation part's labels, fair for a supervised method; test labels are never
read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from logad.embeddings import DIMENSION, EmbeddingCache, piece_table, texts_to_embed, word_pieces
from logad.errors import DataError
from logad.methods._lines import (
    WORD_PATTERN,
    LineBatch,
    context_index,
    file_types,
    flatten_lines,
    has_line_labels,
    window_max,
)
from logad.methods._sampling import SAMPLERS, make_sampler
from logad.methods._thresholds import best_f1_cut
from logad.methods.base import (
    ContextEvidence,
    Detector,
    EpochCallback,
    FitReport,
    LineEvidence,
    WindowExplanation,
    as_windows_frame,
    read_artifact_header,
    read_fitted_state,
    register_method,
    window_labels,
    write_artifact_header,
    write_fitted_state,
)

__all__ = ["CoLog", "CoLogConfig", "collective_classes"]

WEIGHTS_FILE = "model.safetensors"
_SYNTHESISERS = ("smote", "borderline-smote", "adasyn")


class CoLogConfig(BaseModel):
    """Settings of :class:`CoLog` (defaults: the authors' w = 1 and a mid-sized network)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["point", "collective"] = Field(
        "point", description="point: a line is anomalous or not; collective: the four classes (normal, message "
        "anomaly, context anomaly, both), with window verdicts from the collective head")
    text: Literal["message", "masked"] = Field(
        "message", description="what is embedded: the message as logged, or with runs of digits (and hex) "
        "masked to 0, one vector per message shape (pids, ports and addresses differ from host to host)")
    context: int = Field(1, ge=0, le=60, description="context lines on each side of a line (the authors' w)")
    file_type: bool = Field(
        True, description="add a learned embedding of the line's file type (the leading letters of its file name: "
        "auth, syslog, kern, ...) to its message vector; types not seen in training share one. Keyword labels "
        "are a list per file type, so the same message can be normal in one file and anomalous in another")
    words: bool = Field(
        False, description="add a learned bag of the message's words and word pairs (runs of letters, lower-cased; "
        "the training messages' most common words_vocabulary n-grams) to its message vector. Keyword labels hang "
        "on exact words, which a sentence vector blurs; a word learnt in one file type carries to the others")
    words_vocabulary: int = Field(16384, ge=16, description="n-grams in the word vocabulary at most")
    pieces: bool = Field(
        True, description="add the element-wise max over the message's word pieces, each the SBERT model's own "
        "(frozen) input vector through a learned MLP, to its message vector: an 'any of these words' detector "
        "that, unlike the word bag, also reads pieces no training message held. What carries CoLog to a host "
        "it never saw (forensic hosts held out: line F1 0.895 against 0.722 without)")
    pieces_learning_rate: float = Field(
        1e-3, gt=0, description="peak learning rate of the word-piece MLP (a shallow path, which the transformer's "
        "rate leaves under-fitted); the schedule scales it like the rest")
    context_by: Literal["file", "window"] = Field(
        "file", description="file: a line's context is its neighbours in its file (syslog-family logs); window: "
        "its neighbours in its window (sessions such as HDFS blocks, whose lines interleave in a file)")
    hidden: int = Field(256, ge=8, description="model width")
    layers: int = Field(2, ge=1, le=12, description="collaborative encoder layers")
    heads: int = Field(4, ge=1, description="impressed-attention heads (must divide hidden)")
    ff: int | None = Field(None, ge=8, description="MLP width (default 2 × hidden)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout in the encoders and the classifier")
    adaptation_heads: int = Field(2, ge=1, le=16, description="soft-attention heads of the modality adaptation layer")
    batch_size: int = Field(64, ge=1, description="lines (or windows, when learning from window labels) per step")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW peak learning rate (5e-4 diverged on the forensic logs)")
    schedule: Literal["constant", "warmup-linear"] = Field(
        "warmup-linear", description="learning rate: constant, or a linear warm-up over the first epoch (at most a "
        "tenth of all steps) then a linear decay to a tenth of the peak at the last epoch")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    epochs: int = Field(20, ge=1, description="epochs at most (the authors' 20)")
    patience: int = Field(5, ge=1, description="stop after this many epochs without a better validation F1 "
                          "(or, at an equal F1, a lower validation loss)")
    sampler: str = Field("tomek-links", description=f"imbalance sampler of the training lines, one of {list(SAMPLERS)}")
    sampling_ratio: float = Field(0.5, gt=0, le=1, description="over-samplers raise the minority to this share "
                                  "of the majority (random under-sampling lowers the majority to minority / ratio)")
    class_weight: bool = Field(False, description="weigh the classes by inverse frequency in the loss")
    threshold: Literal["best-f1", "precision"] = Field(
        "best-f1", description="threshold on validation: best F1, or the lowest cut reaching target_precision")
    target_precision: float = Field(0.9, gt=0, le=1, description="validation precision for threshold=precision")
    explain_lines: int = Field(5, ge=1, le=100, description="lines named per window in explanations")
    embed_batch_size: int = Field(128, ge=1, description="messages per SBERT batch")
    ray_embed_above: int = Field(50_000, ge=0, description="embed through Ray Data actors when more distinct "
                                 "messages than this are new (else in this process)")
    score_batch_size: int = Field(4096, ge=1, description="lines per forward pass when scoring")
    scoring_cache_size: int = Field(100_000, ge=0, description="vectors of messages met while scoring (beyond the "
                                    "model's own) kept for later requests; past it they are forgotten")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' = cuda when available, else cpu")
    seed: int = Field(0, description="random seed (initialisation, batches, samplers)")
    show_progress: bool = Field(True, description="tqdm bars for epochs")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v: str) -> str:
        if v == "auto" or v not in SAMPLERS:
            raise ValueError(f"unknown sampler {v!r}; known: {[s for s in SAMPLERS if s != 'auto']}")
        return v

    @model_validator(mode="after")
    def _heads_divide(self) -> CoLogConfig:
        if self.hidden % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden})")
        return self


def collective_classes(labels: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """The authors' four classes of every line from its own label and its context's:
    0 normal, 1 message anomaly (the line), 2 context anomaly (a neighbour, not the
    line), 3 both; -1 where the line's own label is unknown. ``ctx`` is
    :func:`~logad.methods._lines.context_index` output (centre column: the line)."""
    y = np.asarray(labels, dtype=np.float64)
    own = y == 1
    w = ctx.shape[1] // 2
    others = np.delete(ctx, w, axis=1)
    neighbour = np.zeros(len(y), dtype=bool)
    if others.shape[1]:
        valid = others >= 0
        neighbour = (valid & (y[np.where(valid, others, 0)] == 1)).any(axis=1)
    out = own.astype(np.int64) + 2 * neighbour.astype(np.int64)
    return np.where(np.isnan(y), -1, out)


class _Lines:
    """One part's input lines ready for the network: cache rows of the messages and of
    each line's context (``-1``: padding), file types, word bags and word pieces."""

    def __init__(self, batch: LineBatch, texts: list[str], rows: np.ndarray, width: int, types: list[str],
                 bags: sp.csr_matrix, pieces: sp.csr_matrix, bag_rows: np.ndarray) -> None:
        self.batch = batch
        self.texts = texts                                    # (U,) what was embedded of each message
        self.ctx = context_index(batch.u_group, width)        # (U, 2w+1) input-line indices
        self.rows = rows                                      # (U,) cache row of each message
        self.ctx_rows = np.where(self.ctx >= 0, rows[np.maximum(self.ctx, 0)], -1)
        self.types = type_index(batch, types)                 # (U,) file type of each line (0: unknown)
        self.bags = bags                                      # word bags of the part's distinct messages
        self.pieces = pieces                                  # and their word pieces, row for row
        self.bag_rows = bag_rows                              # (U,) row of each line's bag and pieces (-1: none)


def type_index(batch: LineBatch, types: list[str]) -> np.ndarray:
    """Each input line's file type as an index into ``types``, plus one (0: a type not there)."""
    if not types or not batch.num_unique:
        return np.zeros(batch.num_unique, dtype=np.int64)
    found = pc.index_in(pa.array(file_types(batch.u_file), pa.string()), value_set=pa.array(types, pa.string()))
    return pc.fill_null(found, -1).to_numpy().astype(np.int64) + 1


@register_method
class CoLog(Detector):
    """Collaborative transformers over message semantics and line context."""

    name = "colog"
    supervised = True
    line_level = True
    config_class = CoLogConfig
    scoring_columns = ("lines", "line_files", "line_numbers", "message_offsets")

    def __init__(self, config: CoLogConfig | Mapping[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.cache = EmbeddingCache(batch_size=self.config.embed_batch_size)
        self._own_vectors = 0  # the first vectors of the cache are the model's own (saved with it)
        self.net: Any = None
        self.level: str | None = None        # "line" (line labels) or "window" (window labels only)
        self.window_threshold: float | None = None
        self.file_types: list[str] = []      # the file types seen in training (embedding rows 1..n)
        self.word_vocabulary: list[str] = []  # the word n-grams of the bag input (its rows, in order)
        self._words: Any = None              # their vectoriser, built on first use
        self.threshold_strategy = ""
        self.fit_report: FitReport | None = None

    # -- set-up ---------------------------------------------------------------------------------

    @property
    def device(self) -> str:
        from logad.methods._torch import resolve_device

        return resolve_device(self.config.device)

    @property
    def classes(self) -> int:
        return 4 if self.config.mode == "collective" else 2

    def _build(self) -> Any:
        from logad.methods.colog.model import CollaborativeTransformer

        c = self.config
        return CollaborativeTransformer(input_dim=DIMENSION, context=c.context, hidden=c.hidden, layers=c.layers,
                                        heads=c.heads, ff=c.ff or 2 * c.hidden, dropout=c.dropout,
                                        adaptation_heads=c.adaptation_heads, classes=self.classes,
                                        file_types=len(self.file_types), words=len(self.word_vocabulary),
                                        piece_table=piece_table() if c.pieces else None)

    def _texts(self, batch: LineBatch) -> list[str]:
        return texts_to_embed(batch.u_message, self.config.text).to_pylist()

    def _flatten(self, frame: pd.DataFrame) -> LineBatch:
        if self.config.context_by == "window":  # keyed by window and position: the window is the context
            frame = frame.drop(columns=[c for c in ("line_files", "line_numbers") if c in frame])
        return flatten_lines(frame)

    def _lines(self, frame: pd.DataFrame, batch: LineBatch | None = None, texts: list[str] | None = None) -> _Lines:
        batch = self._flatten(frame) if batch is None else batch
        texts = self._texts(batch) if texts is None else texts
        if self.is_fitted and len(self.cache) > self._own_vectors + self.config.scoring_cache_size:
            self.cache.truncate(self._own_vectors)  # bounded: a service meets endless new messages
        self.cache.ensure(texts, ray_above=self.config.ray_embed_above)
        rows = self.cache.rows(texts)
        return _Lines(batch, texts, rows, self.config.context, self.file_types, *self._bags(texts, rows))

    def _vectoriser(self, vocabulary: list[str] | None = None) -> Any:
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(lowercase=True, token_pattern=WORD_PATTERN, ngram_range=(1, 2), binary=True,
                               dtype=np.float32, max_features=self.config.words_vocabulary, vocabulary=vocabulary)

    def _fit_words(self, texts: list[str]) -> None:
        """The word vocabulary: the most common n-grams of the distinct training messages."""
        self._words = None
        self.word_vocabulary = []
        if not self.config.words:
            return
        vec = self._vectoriser()
        try:
            vec.fit(sorted(set(texts)))
        except ValueError:  # no message holds a word
            return
        self.word_vocabulary = [str(t) for t in vec.get_feature_names_out()]

    def _bags(self, texts: list[str], rows: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
        """The word bags and the word pieces of the distinct messages among ``texts`` (their
        cache ``rows``), each with an empty last row, and the row of every text in both.
        A network that reads neither gets empty matrices."""
        def empty(width: int) -> sp.csr_matrix:
            return sp.csr_matrix((1, max(width, 1)), dtype=np.float32)

        if not (self.word_vocabulary or self.config.pieces) or not len(rows):
            return empty(len(self.word_vocabulary)), empty(1), np.full(len(rows), -1)
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        distinct = [texts[i] for i in first]
        bags = pieces = empty(1)
        if self.word_vocabulary:
            if self._words is None:
                self._words = self._vectoriser(self.word_vocabulary)
            bags = self._words.transform(distinct)
            bags = sp.vstack([bags, empty(bags.shape[1])], format="csr")
        if self.config.pieces:
            pieces = word_pieces(distinct)
            pieces = sp.vstack([pieces, empty(pieces.shape[1])], format="csr")
        return bags, pieces, inverse.ravel().astype(np.int64)

    @classmethod
    def sweep_state(cls, train: pd.DataFrame, val: pd.DataFrame, config: Mapping[str, Any]) -> EmbeddingCache:
        """The SBERT vectors of every distinct message of the sweep's training and validation
        parts, embedded once (Ray Data actors for large tables) for every trial."""
        c = cls.make_config(config)
        cache = EmbeddingCache(batch_size=c.embed_batch_size)
        det = cls(c)
        for part in (train, val):
            if len(part):
                cache.ensure(det._texts(det._flatten(as_windows_frame(part))), ray_above=c.ray_embed_above)
        cache.hits = cache.misses = 0
        return cache

    def adopt_sweep_state(self, state: Any) -> None:
        if isinstance(state, EmbeddingCache):
            self.cache.merge(state)

    # -- tensors --------------------------------------------------------------------------------

    def _inputs(self, matrix: Any, rows: np.ndarray, ctx_rows: np.ndarray, types: np.ndarray,
                lines: _Lines, bag_rows: np.ndarray) -> tuple[Any, ...]:
        """(own, ctx, pad, file type, word bags, word pieces) tensors of some lines from cache rows
        (``-1``: padding) and rows of the part's bags and pieces (``-1``: none)."""
        import torch

        dev = matrix.device
        own = matrix[torch.as_tensor(rows, device=dev)]
        pad = torch.as_tensor(ctx_rows < 0, device=dev)
        ctx = matrix[torch.as_tensor(np.maximum(ctx_rows, 0), device=dev)]

        def ragged(m: sp.csr_matrix) -> tuple[Any, Any]:  # (indices, offsets), as EmbeddingBag takes them
            picked = m[np.where(bag_rows >= 0, bag_rows, m.shape[0] - 1)]
            return (torch.as_tensor(picked.indices.astype(np.int64), device=dev),
                    torch.as_tensor(picked.indptr[:-1].astype(np.int64), device=dev))

        words = ragged(lines.bags) if self.word_vocabulary else None
        pieces = ragged(lines.pieces) if self.config.pieces else None
        return own, ctx.masked_fill(pad[..., None], 0.0), pad, torch.as_tensor(types, device=dev), words, pieces

    def _line_inputs(self, matrix: Any, lines: _Lines, sel: Any) -> tuple[Any, ...]:
        """:meth:`_inputs` of the lines ``sel`` of a part."""
        return self._inputs(matrix, lines.rows[sel], lines.ctx_rows[sel], lines.types[sel], lines,
                            lines.bag_rows[sel])

    def _matrix(self, extra: np.ndarray | None = None) -> Any:
        import torch

        m = self.cache.matrix if extra is None or not len(extra) else np.concatenate([self.cache.matrix, extra])
        return torch.as_tensor(np.ascontiguousarray(m), dtype=torch.float32, device=self.device)

    def _probabilities(self, lines: _Lines, matrix: Any | None = None) -> np.ndarray:
        """Per input line, the class probabilities (U, classes)."""
        import torch

        assert self.net is not None
        matrix = self._matrix() if matrix is None else matrix
        self.net.eval()
        out = []
        n = len(lines.rows)
        with torch.no_grad():
            for a in range(0, n, self.config.score_batch_size):
                b = min(n, a + self.config.score_batch_size)
                logits, _, _ = self.net(*self._line_inputs(matrix, lines, slice(a, b)))
                out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, self.classes))

    def _line_and_window_scores(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per input line: its line score and its contribution to a window's score."""
        if self.config.mode == "collective":
            return probs[:, 1] + probs[:, 3], 1.0 - probs[:, 0]
        return probs[:, 1], probs[:, 1]

    # -- training -------------------------------------------------------------------------------

    def _resample(self, lines: _Lines, idx: np.ndarray,
                  y: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray, dict]:
        """Resample the labelled training lines ``idx`` (classes ``y``) over their distinct
        (message, context, file type, class) rows, in the space of the message and context
        vectors and the file type one-hot. Returns the kept lines' (rows, ctx_rows, types,
        bag_rows) and classes, synthetic vectors to append to the matrix, and what was done.
        Synthetic lines have no word bag or pieces."""
        c = self.config
        cols = (lines.rows[idx], lines.ctx_rows[idx], lines.types[idx], lines.bag_rows[idx])
        rows, ctx_rows, types, _ = cols
        binary = (y > 0).astype(np.int64) if self.classes == 4 else y
        info: dict[str, Any] = {"sampler": c.sampler, "lines_before": int(len(idx))}
        none = np.zeros((0, DIMENSION), np.float32)
        if c.sampler == "none" or len(np.unique(binary)) < 2:
            info["lines_after"] = int(len(idx))
            return cols, y, none, info
        key = np.column_stack([rows, ctx_rows, types, y])
        distinct, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        m = self.cache.matrix
        n_types = len(self.file_types) + 1 if self.file_types else 0
        onehot = np.eye(n_types, dtype=np.float32)[distinct[:, -2]] if n_types else np.zeros((len(distinct), 0))
        x = np.concatenate([m[distinct[:, 0]], np.where(distinct[:, 1:-2, None] >= 0,
                            m[np.maximum(distinct[:, 1:-2], 0)], 0.0).reshape(len(distinct), -1), onehot], axis=1)
        yd = (distinct[:, -1] > 0).astype(np.int64) if self.classes == 4 else distinct[:, -1]
        sampler = make_sampler(c.sampler, yd, c.sampling_ratio, c.seed)
        info["distinct_rows"] = int(len(distinct))
        if sampler is None:
            info["lines_after"] = int(len(idx))
            return cols, y, none, info
        x_res, y_res = sampler.fit_resample(x, yd)
        synth = np.zeros((0, DIMENSION), np.float32)
        if hasattr(sampler, "sample_indices_"):
            kept_distinct = np.zeros(len(distinct), dtype=bool)
            kept_distinct[sampler.sample_indices_[sampler.sample_indices_ < len(distinct)]] = True
            keep = np.flatnonzero(kept_distinct[inverse])
            # random over-sampling lists every distinct row, then the repeats: one line of each
            if c.sampler == "random-over":
                keep = np.concatenate([keep, first[sampler.sample_indices_[len(distinct):]]])
            out = tuple(col[keep] for col in cols)
            out_y = y[keep]
            info["distinct_removed"] = int((~kept_distinct).sum())
        else:  # a synthesiser: new vectors, each split back into a message, its context and a file type
            new = x_res[len(distinct):].astype(np.float32)
            width = ctx_rows.shape[1]
            base = len(self.cache.matrix)
            types_new = (np.argmax(new[:, new.shape[1] - n_types:], axis=1) if n_types
                         else np.zeros(len(new), dtype=np.int64))
            parts = new[:, : new.shape[1] - n_types].reshape(len(new), width + 1, DIMENSION)
            synth = parts.reshape(-1, DIMENSION)
            rows_new = base + np.arange(len(new)) * (width + 1)
            ctx_new = rows_new[:, None] + 1 + np.arange(width)[None, :]
            ctx_new = np.where(np.linalg.norm(parts[:, 1:], axis=-1) > 1e-6, ctx_new, -1)
            y_new = y_res[len(distinct):].astype(np.int64)
            if self.classes == 4:
                y_new = np.where(y_new > 0, 1, 0)  # synthetic anomalies are message anomalies
            added = (rows_new, ctx_new, types_new, np.full(len(new), -1, dtype=np.int64))
            out = tuple(np.concatenate([col, more]) for col, more in zip(cols, added, strict=True))
            out_y = np.concatenate([y, y_new])
            info["synthetic_rows"] = int(len(new))
        info["lines_after"] = int(len(out[0]))
        return out, out_y, synth, info

    def _window_labels(self, frame: pd.DataFrame, lines: _Lines) -> np.ndarray:
        """Window labels: the table's, else any labelled anomalous line (NaN: unknown)."""
        y = window_labels(frame)
        if np.isnan(y).any() and has_line_labels(frame):
            ly = lines.batch.u_label[lines.batch.unique]
            starts = np.concatenate(([0], np.cumsum(lines.batch.counts))).astype(np.int64)
            for w in np.flatnonzero(np.isnan(y)):
                seg = ly[starts[w]: starts[w + 1]]
                if (~np.isnan(seg)).any():
                    y[w] = float(np.nanmax(seg))
        return y

    def _evaluate(self, lines: _Lines, frame: pd.DataFrame, matrix: Any) -> dict[str, Any]:
        """Validation scores and labels at both levels, and the F1 early stopping watches."""
        probs = self._probabilities(lines, matrix)
        line_s, win_part = self._line_and_window_scores(probs)
        b = lines.batch
        wy = self._window_labels(frame, lines)
        ws = window_max(b, win_part[b.unique]) if b.num_lines else np.zeros(len(frame))
        out = {"line_scores": line_s, "line_y": b.u_label, "window_scores": ws, "window_y": wy}
        eps = 1e-7
        if self.level == "line":
            f1 = _best_f1(b.u_label, line_s)
            known = ~np.isnan(b.u_label)
            cls = (collective_classes(b.u_label, lines.ctx) if self.config.mode == "collective"
                   else np.nan_to_num(b.u_label).astype(np.int64))
            p = probs[np.flatnonzero(known), cls[known]]
        else:
            f1 = _best_f1(wy, ws)
            known = ~np.isnan(wy)
            p = np.where(wy[known] == 1, ws[known], 1.0 - ws[known])
        out["f1"] = f1
        out["loss"] = float(-np.log(np.clip(p, eps, 1.0)).mean()) if len(p) else float("nan")
        return out

    def fit(self, train: pd.DataFrame, val: pd.DataFrame, *, progress: bool | EpochCallback | None = None) -> FitReport:
        import torch
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        c = self.config
        train, val = as_windows_frame(train), as_windows_frame(val)
        if not len(train):
            raise DataError("colog needs training windows; got none")
        callback = progress if callable(progress) else None
        show = c.show_progress if progress is None or callable(progress) else bool(progress)
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        device = self.device
        self.level = "line" if has_line_labels(train) else "window"
        if self.level == "window" and c.mode == "collective":
            raise DataError("collective mode needs line labels (which lines are anomalous) in training; this "
                            "table labels windows only: use mode=point")
        misses_before = self.cache.misses
        tb = self._flatten(train)
        self.file_types = sorted(set(file_types(tb.u_file).tolist()) - {""}) if c.file_type else []
        texts = self._texts(tb)
        self._fit_words(texts)
        tl = self._lines(train, tb, texts)
        vl = self._lines(val) if len(val) else None
        embedded = self.cache.misses - misses_before
        synth = np.zeros((0, DIMENSION), np.float32)
        sampling: dict[str, Any] = {"sampler": "none (window labels)"}
        if self.level == "line":
            y = tl.batch.u_label
            known = np.flatnonzero(~np.isnan(y))
            cls_y = (collective_classes(y, tl.ctx) if c.mode == "collective" else np.nan_to_num(y).astype(np.int64))
            binary = (cls_y[known] > 0) if c.mode == "collective" else cls_y[known] == 1
            if binary.all() or not binary.any():
                raise DataError(f"colog is supervised: its training lines need both normal and anomalous labels "
                                f"(got {int(binary.sum())} anomalous of {len(known)})")
            (rows, ctx_rows, types, bag_rows), ys, synth, sampling = self._resample(tl, known, cls_y[known])
            n_samples = len(rows)
        else:
            wy = window_labels(train)
            windows_known = np.flatnonzero(~np.isnan(wy) & (tl.batch.counts > 0))
            if len(np.unique(wy[windows_known])) < 2:
                raise DataError("colog is supervised: its training windows need both normal and anomalous labels")
            starts = np.concatenate(([0], np.cumsum(tl.batch.counts))).astype(np.int64)
            n_samples = len(windows_known)
        matrix = self._matrix(synth)
        self.net = self._build().to(device)
        # one fused kernel for every parameter: the per-tensor loop took a third of a step on CPU
        pieces = list(self.net.piece_mlp.parameters()) if self.net.piece_mlp is not None else []
        piece_ids = {id(p) for p in pieces}
        rest = [p for p in self.net.parameters() if id(p) not in piece_ids]
        groups = [{"params": rest}] + ([{"params": pieces, "lr": c.pieces_learning_rate}] if pieces else [])
        opt = torch.optim.AdamW(groups, lr=c.learning_rate, weight_decay=c.weight_decay, fused=True)
        steps_per_epoch = -(-n_samples // c.batch_size)
        total_steps = c.epochs * steps_per_epoch
        warmup = max(1, min(steps_per_epoch, total_steps // 10))

        def lr_factor(step: int) -> float:
            if c.schedule == "constant":
                return 1.0
            if step < warmup:
                return (step + 1) / warmup
            return 1.0 - 0.9 * min(1.0, (step - warmup) / max(1, total_steps - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        weight = None
        if c.class_weight:
            counts = np.bincount(ys if self.level == "line" else wy[windows_known].astype(np.int64),
                                 minlength=self.classes if self.level == "line" else 2).astype(np.float64)
            weight = torch.as_tensor(counts.sum() / np.maximum(counts, 1) / len(counts), dtype=torch.float32,
                                     device=device)
        self._threshold = 0.0  # lets the scoring helpers run; replaced below
        report = FitReport(method=self.name, num_train_windows=len(train), num_val_windows=len(val))
        best_f1, best_loss, best_state, best_epoch, stale = -1.0, np.inf, None, -1, 0
        bar = tqdm(total=c.epochs, desc="colog", unit="epoch", disable=not show)
        for epoch in range(c.epochs):
            self.net.train()
            perm = rng.permutation(n_samples)
            total, steps = 0.0, 0
            for a in range(0, n_samples, c.batch_size):
                sel = perm[a: a + c.batch_size]
                if self.level == "line":
                    logits, _, _ = self.net(*self._inputs(matrix, rows[sel], ctx_rows[sel], types[sel], tl,
                                                          bag_rows[sel]))
                    target = torch.as_tensor(ys[sel], device=device)
                    loss = torch.nn.functional.cross_entropy(logits, target, weight=weight)
                else:
                    wins = windows_known[sel]
                    parts = [tl.batch.unique[starts[w]: starts[w + 1]] for w in wins]
                    u = np.concatenate(parts)
                    seg = torch.as_tensor(np.repeat(np.arange(len(wins)), [len(p) for p in parts]), device=device)
                    logits, _, _ = self.net(*self._line_inputs(matrix, tl, u))
                    line_logit = logits[:, 1] - logits[:, 0]
                    win_logit = torch.full((len(wins),), -torch.inf, device=device).scatter_reduce(
                        0, seg, line_logit, reduce="amax")
                    target = torch.as_tensor(wy[wins], dtype=torch.float32, device=device)
                    pos_weight = weight[1] / weight[0] if weight is not None else None
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(win_logit, target,
                                                                                pos_weight=pos_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0, foreach=True)
                opt.step()
                scheduler.step()
                total += float(loss.detach())
                steps += 1
            entry: dict[str, Any] = {"phase": "train", "epoch": epoch, "train_loss": total / max(steps, 1)}
            if vl is not None:
                ev = self._evaluate(vl, val, matrix)
                if np.isfinite(ev["f1"]):
                    entry["val_f1"] = ev["f1"]
                if np.isfinite(ev["loss"]):
                    entry["val_loss"] = ev["loss"]
            # the best validation F1; among equal ones (a small validation part saturates),
            # the lowest validation loss
            f1 = entry.get("val_f1", -entry["train_loss"])
            loss = entry.get("val_loss", entry["train_loss"])
            if f1 > best_f1 + 1e-9 or (f1 >= best_f1 - 1e-9 and loss < best_loss):
                best_f1, best_loss, best_epoch, stale = f1, loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            else:
                stale += 1
            report.history.append(entry)
            if callback is not None:
                callback({k: v for k, v in entry.items() if isinstance(v, int | float)})
            bar.update(1)
            bar.set_postfix(loss=f"{entry['train_loss']:.4f}", val_f1=f"{entry.get('val_f1', float('nan')):.4f}")
            if stale >= c.patience:
                report.stopped_early = True
                break
        bar.close()
        assert best_state is not None
        self.net.load_state_dict(best_state)
        self.net.eval()
        report.best_epoch = best_epoch

        # thresholds from the validation labels (fair for a supervised method)
        notes = []
        base = self._matrix()
        ev = self._evaluate(vl, val, base) if vl is not None else None
        line_cut: float | None = None
        if self.level == "line":
            ly, ls = (ev["line_y"], ev["line_scores"]) if ev is not None else (np.zeros(0), np.zeros(0))
            line_cut, note = self._cut(ly, ls, "line")
            notes.append(note)
        wy_v, ws_v = (ev["window_y"], ev["window_scores"]) if ev is not None else (np.zeros(0), np.zeros(0))
        if self.level == "line" and c.mode == "point":
            window_cut = line_cut
        else:
            window_cut, note = self._cut(wy_v, ws_v, "window")
            notes.append(note)
        self._threshold = float(window_cut)
        self._line_threshold = float(line_cut) if line_cut is not None else None
        self.threshold_strategy = "; ".join(notes)
        # the model keeps the vectors of the messages it trained and validated on
        kept = tl.texts + (vl.texts if vl is not None else [])
        hits = self.cache.hits
        self.cache = self.cache.subset(kept)
        self._own_vectors = len(self.cache)
        report.threshold = self._threshold
        report.train_time_s = time.perf_counter() - t0
        params = sum(p.numel() for p in self.net.parameters())
        report.extra = {"level": self.level, "mode": c.mode, "context": c.context, "parameters": int(params),
                        "train_samples": int(n_samples), "sampling": sampling, "file_types": list(self.file_types),
                        "word_vocabulary": len(self.word_vocabulary),
                        "messages_embedded": int(embedded), "embedding_cache_hits": int(hits),
                        "distinct_messages": len(self.cache), "threshold_strategy": self.threshold_strategy,
                        "line_threshold": self._line_threshold, "best_val_f1": best_f1 if vl is not None else None}
        self.fit_report = report
        return report

    def _cut(self, y: np.ndarray, s: np.ndarray, what: str) -> tuple[float, str]:
        c = self.config
        known = ~np.isnan(np.asarray(y, dtype=np.float64))
        y, s = np.asarray(y)[known].astype(np.int64), np.asarray(s)[known]
        if len(y) and 0 < y.sum() < len(y):
            cut, note = best_f1_cut(y, s, c.threshold, c.target_precision)
            return cut, f"{what}s: validation-tuned ({c.threshold}): {note} on {len(y)} validation {what}s"
        normal = s[y == 0] if len(y) else np.zeros(0)
        cut = float(np.max(normal)) if len(normal) else 0.5
        return cut, f"{what}s: the highest normal validation score (no labelled anomalies to tune on)"

    @property
    def threshold_kind(self) -> str:
        return "validation-tuned" if "validation-tuned" in self.threshold_strategy else "label-free"

    # -- scoring --------------------------------------------------------------------------------

    def _check_model(self) -> None:
        self._check_fitted()
        if self.net is None:
            raise DataError("this colog model has no network; load it with CoLog.load")

    def _scored(self, frame: pd.DataFrame) -> tuple[_Lines, np.ndarray, np.ndarray, np.ndarray]:
        lines = self._lines(frame)
        probs = self._probabilities(lines)
        line_u, win_u = self._line_and_window_scores(probs)
        return lines, probs, line_u, win_u

    def score_with_lines(self, windows: pd.DataFrame | pa.Table) -> tuple[np.ndarray, np.ndarray]:
        self._check_model()
        frame = as_windows_frame(windows)
        if not len(frame):
            return np.zeros(0), np.zeros(0)
        lines, _, line_u, win_u = self._scored(frame)
        b = lines.batch
        return window_max(b, win_u[b.unique]), line_u[b.unique].astype(np.float64)

    def score(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        return self.score_with_lines(windows)[0]

    def score_lines(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        return self.score_with_lines(windows)[1]

    def explain(self, windows: pd.DataFrame | pa.Table) -> list[WindowExplanation]:
        import torch

        self._check_model()
        frame = as_windows_frame(windows)
        if not len(frame):
            return []
        lines, _, line_u, win_u = self._scored(frame)
        b = lines.batch
        line_s = line_u[b.unique]
        scores = window_max(b, win_u[b.unique])
        starts = np.concatenate(([0], np.cumsum(b.counts))).astype(np.int64)
        k = self.config.explain_lines
        picks = [starts[w] + np.argsort(-(win_u[b.unique][starts[w]: starts[w + 1]]), kind="stable")[:k]
                 for w in range(len(frame))]
        chosen = np.unique(b.unique[np.concatenate(picks)]) if len(picks) else np.zeros(0, np.int64)
        attention: dict[int, np.ndarray] = {}
        if len(chosen):
            with torch.no_grad():
                _, w, _ = self.net(*self._line_inputs(self._matrix(), lines, chosen), need_attention=True)
            attention = dict(zip(chosen.tolist(), w.float().cpu().numpy(), strict=True))
        raw = b.u_line.to_pylist()
        ids = [str(v) for v in frame["window_id"]] if "window_id" in frame else [""] * len(frame)
        width = self.config.context
        out = []
        for wi in range(len(frame)):
            text = list(frame["lines"].iloc[wi]) if "lines" in frame else [""] * int(b.counts[wi])
            ev_ids = list(frame["event_ids"].iloc[wi])
            evidence = []
            for j in picks[wi]:
                u = int(b.unique[j])
                weights = attention.get(u)
                context = []
                if weights is not None:
                    for pos in np.argsort(-weights, kind="stable"):
                        n = int(lines.ctx[u, pos])
                        if n >= 0 and weights[pos] > 0:
                            context.append(ContextEvidence(offset=int(pos) - width, line=raw[n] or "",
                                                           weight=float(weights[pos])))
                i = int(j - starts[wi])
                evidence.append(LineEvidence(index=i, line=text[i] if i < len(text) else "", event_id=int(ev_ids[i]),
                                             probability=float(line_s[j]), context=context))
            out.append(WindowExplanation(window_id=ids[wi], score=float(scores[wi]), lines=evidence))
        return out

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        self._check_model()
        out = write_artifact_header(path, self.name, self.config)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                  str(out / WEIGHTS_FILE))
        self.cache.head(self._own_vectors).save(out)
        write_fitted_state(out, self, level=self.level, file_types=self.file_types, words=self.word_vocabulary)

    @classmethod
    def load(cls, path: str | Path) -> CoLog:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        root = Path(path)
        header = read_artifact_header(root, cls.name)
        # a model saved before word pieces existed never read them (they are on by default now)
        det = cls({"pieces": False} | header["config"])
        state = read_fitted_state(root, det, levels=("line", "window"))
        for key in ("file_types", "words"):
            value = state.get(key, [])
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise DataError(f"{root / 'state.json'}: '{key}' must be a list of strings")
        det.file_types = state.get("file_types", [])
        det.word_vocabulary = state.get("words", [])
        det.cache = EmbeddingCache.load(root, batch_size=det.config.embed_batch_size)
        det._own_vectors = len(det.cache)
        det.net = det._build()
        try:
            weights = load_file(str(root / WEIGHTS_FILE))
            det.net.load_state_dict(weights)
        except (OSError, SafetensorError, RuntimeError) as exc:
            raise DataError(f"cannot read the colog weights in {root / WEIGHTS_FILE}: {exc}") from exc
        det.net.to(det.device).eval()
        det.level = state["level"]
        return det


def _best_f1(y: np.ndarray, s: np.ndarray) -> float:
    """The best F1 over all cuts of scores ``s`` on the known labels of ``y`` (NaN: unknown)."""
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y, dtype=np.float64)
    known = ~np.isnan(y)
    yk, sk = y[known].astype(np.int64), np.asarray(s)[known]
    if not len(yk) or not (0 < yk.sum() < len(yk)):
        return float("nan")
    p, r, _ = precision_recall_curve(yk, sk)
    return float((2 * p * r / np.maximum(p + r, 1e-12))[:-1].max())
