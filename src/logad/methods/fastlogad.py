"""FastLogAD: mask-guided pseudo-anomaly generation and hyperspherical separation.

Lin, Deng and Li (2024), "FastLogAD: Log Anomaly Detection with Mask-Guided
Pseudo Anomaly Generation and Discrimination". An ELECTRA-style pair over
template-id tokens, built from configs alone (no pretrained weights):

* the **generator** (``ElectraForMaskedLM``, variant ``"mlm"``) learns to fill
  masked positions of normal windows; pseudo-anomalies replace the masked
  positions with tokens drawn from the *complement* of its softmax,
  ``(1 - p) / sum(1 - p)`` — unlikely tokens. Variant ``"random"`` draws them
  uniformly instead and trains no generator. Either way the original token is
  never drawn, so every masked position really changes.
* the **discriminator** (``ElectraForPreTraining``) first learns Replaced Token
  Detection (RTD warm-up, jointly with the generator's MLM loss), then
  Hyperspherical Separation Training (HST, generator frozen) on the norm of its
  last-layer ``[CLS]`` hidden state ``n = ||h_CLS||``::

      L_HST = mean[(1 - y) * n - lambda * y * log(1 - exp(-n))]

  which pulls normal windows (y = 0) to the origin and pushes pseudo-anomalies
  (y = 1) away from it.

The anomaly score is ``||h_CLS||``. Windows longer than ``max_length - 1``
tokens are cut into consecutive chunks, each with its own ``[CLS]``; a window's
score is the maximum over its chunks (never truncated).

Choices beyond the paper, all label-free:

* **Order-free by default** (``positions=False``): the position embeddings are
  zeroed and frozen, so self-attention sees each window as a multiset of
  events. The lines of an HDFS block or a time window come from concurrent
  writers; on the HDFS 2% sample 1,255 of 4,060 normal test sessions are
  interleavings never seen in training, and the paper's model scores them
  just above every validation window. ``positions=True`` is the paper's model.
* **Threshold** (``threshold_rule="midpoint"``): the paper takes the 0.99
  quantile of normal validation scores. HST packs normal windows into a
  cluster so tight that the quantile sits inside noise, so the default goes
  halfway in log-norm from that quantile to ln 2, the HST classifier's own
  p = 0.5 boundary. It costs recall where real anomalies sit just above the
  normal cluster (the 2–3-event sessions of the HDFS event-id set on two of
  three seeds; docs/benchmarks.md). ``threshold_rule="quantile"`` is the
  paper's rule.
* ``[UNK]`` (templates unseen in training) is among the replacement
  candidates, so the discriminator learns that unseen templates are abnormal.
* After HST the RTD head alone is re-fitted for ``explain_head_epochs`` with
  the encoder frozen, so :meth:`FastLogAD.explain` reflects the final encoder
  without changing scores.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining
from transformers.utils import logging as hf_logging

from logad.errors import DataError
from logad.methods.base import (
    Detector,
    EpochCallback,
    FitReport,
    LineEvidence,
    WindowExplanation,
    as_windows_frame,
    read_artifact_header,
    register_method,
    write_artifact_header,
)

__all__ = ["FastLogAD", "FastLogADConfig", "Vocabulary"]

PAD, CLS, MASK, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[MASK]", "[UNK]")
NUM_SPECIAL = len(SPECIAL_TOKENS)
LN2 = math.log(2.0)  # HST's p = 0.5 boundary: 1 - exp(-score) = 0.5
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"
STATE_FILE = "state.json"


class FastLogADConfig(BaseModel):
    """Hyperparameters of :class:`FastLogAD`.

    Defaults are sized for a CPU (a 2-layer, 128-wide discriminator trains on
    HDFS-sized data in minutes); the authors' HDFS setup is ``hidden_size=256,
    num_layers=4, num_heads=4, intermediate_size=256, batch_size=32,
    learning_rate=1e-4``.
    """

    model_config = ConfigDict(extra="forbid")

    variant: Literal["mlm", "random"] = Field(
        "mlm", description="pseudo-anomaly generator: 'mlm' (complement of a trained MLM's "
        "softmax) or 'random' (uniform replacements, no generator training)")
    mask_ratio: float = Field(
        0.5, gt=0.0, le=1.0, description="fraction of each window's tokens replaced (at least one)")
    hidden_size: int = Field(128, ge=8, description="discriminator width (embedding = hidden)")
    num_layers: int = Field(2, ge=1, description="discriminator transformer layers")
    num_heads: int = Field(4, ge=1, description="discriminator attention heads")
    intermediate_size: int = Field(256, ge=8, description="discriminator feed-forward width")
    generator_hidden_size: int = Field(64, ge=8, description="MLM generator width")
    generator_num_layers: int = Field(1, ge=1, description="MLM generator transformer layers")
    generator_num_heads: int = Field(2, ge=1, description="MLM generator attention heads")
    generator_intermediate_size: int = Field(128, ge=8, description="MLM generator feed-forward width")
    positions: bool = Field(
        False, description="learned position embeddings (True = the paper's model). False "
        "zeroes and freezes them, so a window's score depends on which events it holds and how "
        "often, not on their order: the lines of a session or time window come from concurrent "
        "writers, and normal windows seen in a new interleaving must not look new")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="hidden and attention dropout")
    max_length: int = Field(
        512, ge=2, description="tokens per model input including [CLS]; longer windows are "
        "scored in chunks of max_length - 1 tokens (window score = max over chunks)")
    batch_size: int = Field(64, ge=1, description="training windows (chunks) per batch")
    score_batch_size: int = Field(256, ge=1, description="windows (chunks) per scoring batch")
    learning_rate: float = Field(3e-4, gt=0.0, description="AdamW learning rate of the RTD warm-up")
    hst_learning_rate: float = Field(
        1e-3, gt=0.0, description="AdamW learning rate of HST (the [CLS] norm starts near "
        "sqrt(hidden_size) and must travel to 0, so a larger step than warm-up pays off)")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay")
    warmup_epochs: int = Field(
        3, ge=0, description="RTD warm-up epochs (generator MLM + discriminator RTD)")
    epochs: int = Field(15, ge=1, description="maximum HST epochs (early-stopped)")
    min_hst_steps: int = Field(
        800, ge=0, description="on small training sets, raise the HST epoch cap until HST may "
        "take this many optimizer steps (early stopping still ends it): 15 epochs of a few "
        "hundred windows are too few steps to pull the normal windows together. 0 = `epochs` "
        "is the cap")
    patience: int = Field(
        3, ge=1, description="stop HST after this many epochs without a lower validation loss")
    rtd_weight: float = Field(50.0, gt=0.0, description="weight of the RTD loss in warm-up")
    mlm_weight: float = Field(20.0, gt=0.0, description="weight of the MLM loss in warm-up")
    hst_lambda: float = Field(1.0, gt=0.0, description="lambda of the HST pseudo-anomaly term")
    threshold_quantile: float = Field(
        0.99, gt=0.0, le=1.0, description="q: the quantile of normal validation scores the "
        "threshold starts from")
    threshold_rule: Literal["quantile", "midpoint"] = Field(
        "midpoint", description="'quantile' = the q quantile itself (the paper's rule); "
        "'midpoint' = halfway in log-norm from the q quantile to ln 2, the HST classifier's own "
        "p = 0.5 boundary (HST is a BCE with P(anomalous) = 1 - exp(-score)), i.e. "
        "sqrt(quantile * ln 2) when the quantile is below ln 2. HST packs normal windows into a "
        "cluster so tight that a quantile of it sits inside noise, and any normal window the "
        "validation part under-represents lands just above it")
    threshold_min: float = Field(
        0.0, ge=0.0, description="floor for the stored threshold (0 = none)")
    explain_head_epochs: int = Field(
        1, ge=0, description="epochs re-fitting the RTD head on the frozen final encoder")
    explain_min_probability: float = Field(
        0.5, ge=0.0, le=1.0, description="explain() lists lines flagged above this probability")
    seed: int = Field(0, description="seed for weights, batching, masking and sampling")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto' = cuda when available, else cpu")
    show_progress: bool = Field(True, description="tqdm bars for epochs and batches")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> FastLogADConfig:
        for width, heads, what in (
            (self.hidden_size, self.num_heads, ""),
            (self.generator_hidden_size, self.generator_num_heads, "generator_"),
        ):
            if width % heads:
                raise ValueError(
                    f"{what}hidden_size={width} must be a multiple of {what}num_heads={heads}")
        return self


class Vocabulary:
    """Template id ↔ token index; indices 0-3 are [PAD], [CLS], [MASK], [UNK].

    Built from training windows in order of frequency (ties by id). Template id
    0 (an unknown line) and every id unseen in training map to [UNK].
    """

    def __init__(self, event_ids: Sequence[int] | np.ndarray) -> None:
        self.event_ids = np.asarray(event_ids, dtype=np.int64)
        if len(np.unique(self.event_ids)) != len(self.event_ids) or (self.event_ids == 0).any():
            raise DataError("vocabulary template ids must be unique and non-zero")
        order = np.argsort(self.event_ids, kind="stable")
        self._sorted_ids = self.event_ids[order]
        self._sorted_tokens = (order + NUM_SPECIAL).astype(np.int64)

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]]) -> Vocabulary:
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or [np.zeros(0, np.int64)])
        flat = flat[flat != 0]
        ids, counts = np.unique(flat, return_counts=True)
        order = np.lexsort((ids, -counts))
        return cls(ids[order])

    def __len__(self) -> int:
        return NUM_SPECIAL + len(self.event_ids)

    def encode(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Token arrays, one per sequence (vectorised over all of them)."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        if lengths.sum() == 0:
            return [np.zeros(0, np.int64) for _ in sequences]
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
        tokens = np.full(len(flat), UNK, dtype=np.int64)
        if len(self._sorted_ids):
            pos = np.searchsorted(self._sorted_ids, flat).clip(max=len(self._sorted_ids) - 1)
            hit = self._sorted_ids[pos] == flat
            tokens[hit] = self._sorted_tokens[pos[hit]]
        return np.split(tokens, np.cumsum(lengths)[:-1])

    def to_json(self) -> dict[str, Any]:
        return {"special_tokens": list(SPECIAL_TOKENS), "event_ids": self.event_ids.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any], file: Path) -> Vocabulary:
        if data.get("special_tokens") != list(SPECIAL_TOKENS) or "event_ids" not in data:
            raise DataError(f"{file} is not a FastLogAD vocabulary (special tokens differ)")
        return cls(data["event_ids"])


# -- batching -----------------------------------------------------------------------------------


def _chunk(tokens: list[np.ndarray], size: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Cut token arrays into consecutive chunks of at most ``size``.

    Returns the chunks, the window index of each chunk and its offset (in lines).
    An empty window yields one empty chunk, so every window gets a score.
    """
    chunks: list[np.ndarray] = []
    owner: list[int] = []
    offset: list[int] = []
    for i, t in enumerate(tokens):
        starts = range(0, max(len(t), 1), size)
        for s in starts:
            chunks.append(t[s : s + size])
            owner.append(i)
            offset.append(s)
    return chunks, np.asarray(owner, dtype=np.int64), np.asarray(offset, dtype=np.int64)


def _distinct(chunks: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct chunks (first-seen order) and, per chunk, the index of its distinct copy."""
    index: dict[bytes, int] = {}
    uniq: list[np.ndarray] = []
    inverse = np.empty(len(chunks), dtype=np.int64)
    for i, c in enumerate(chunks):
        key = np.ascontiguousarray(c, dtype=np.int64).tobytes()
        j = index.get(key)
        if j is None:
            j = index[key] = len(uniq)
            uniq.append(c)
        inverse[i] = j
    return uniq, inverse


def _collate(chunks: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] + tokens, right-padded with [PAD]; returns (input_ids, attention_mask)."""
    width = 1 + max((len(c) for c in chunks), default=0)
    ids = np.full((len(chunks), width), PAD, dtype=np.int64)
    ids[:, 0] = CLS
    for row, c in enumerate(chunks):
        ids[row, 1 : 1 + len(c)] = c
    input_ids = torch.from_numpy(ids)
    return input_ids, (input_ids != PAD).long()


def _length_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Batches of similar length (little padding); shuffled when ``rng`` is given."""
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    perm = rng.permutation(len(lengths))
    pool = batch_size * 50  # sort within pools so batches stay random but tight
    batches = []
    for p in range(0, len(perm), pool):
        part = perm[p : p + pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _hst_loss(norms: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Hyperspherical separation loss (paper eq. 7), numerically safe near n = 0."""
    push = -torch.log(-torch.expm1(-norms.clamp(min=1e-6)))
    return ((1 - y) * norms + lam * y * push).mean()


@register_method
class FastLogAD(Detector):
    """FastLogAD detector (unsupervised: trains on normal windows only).

    Example:
        >>> det = FastLogAD(epochs=5, device="cpu")          # doctest: +SKIP
        >>> report = det.fit(train_normals, val_normals)      # doctest: +SKIP
        >>> scores = det.score(test)                          # doctest: +SKIP
        >>> flagged = scores > det.threshold                  # doctest: +SKIP
    """

    name: ClassVar[str] = "fastlogad"
    supervised: ClassVar[bool] = False
    config_class: ClassVar[type[BaseModel]] = FastLogADConfig
    config: FastLogADConfig

    def __init__(self, config: FastLogADConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.vocab: Vocabulary | None = None
        self.discriminator: ElectraForPreTraining | None = None
        self.fit_report: FitReport | None = None
        # (discriminator, its weights' version, inference function): see _inference()
        self._runner: tuple[Any, int, Any] | None = None

    # -- set-up ---------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        want = self.config.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want == "cuda" and not torch.cuda.is_available():
            raise DataError("device='cuda' but no CUDA GPU is visible; use device='cpu'")
        return torch.device(want)

    def _electra_config(self, vocab_size: int, generator: bool) -> ElectraConfig:
        c = self.config
        width, layers, heads, inter = (
            (c.generator_hidden_size, c.generator_num_layers, c.generator_num_heads,
             c.generator_intermediate_size)
            if generator else (c.hidden_size, c.num_layers, c.num_heads, c.intermediate_size)
        )
        return ElectraConfig(
            vocab_size=vocab_size, embedding_size=width, hidden_size=width,
            num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=inter,
            hidden_dropout_prob=c.dropout, attention_probs_dropout_prob=c.dropout,
            max_position_embeddings=c.max_length, type_vocab_size=1, pad_token_id=PAD,
        )

    def _build_discriminator(self, vocab_size: int) -> ElectraForPreTraining:
        with _quiet_transformers():
            return self._order(ElectraForPreTraining(self._electra_config(vocab_size, generator=False)))

    def _build_generator(self, vocab_size: int) -> ElectraForMaskedLM:
        with _quiet_transformers():
            return self._order(ElectraForMaskedLM(self._electra_config(vocab_size, generator=True)))

    def _order(self, model: Any) -> Any:
        """With ``positions=False``, zero and freeze the position embeddings: self-attention
        alone is order-blind, so [CLS] sees the window as a multiset of events."""
        if not self.config.positions:
            table = model.electra.embeddings.position_embeddings
            with torch.no_grad():
                table.weight.zero_()
            table.requires_grad_(False)
        return model

    def _tokens(self, windows: pd.DataFrame) -> list[np.ndarray]:
        assert self.vocab is not None
        return self.vocab.encode(list(windows["event_ids"]))

    # -- pseudo-anomalies -----------------------------------------------------------------

    def _mask(self, input_ids: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Choose max(1, round(ratio * length)) positions per row (never [CLS] or [PAD])."""
        eligible = input_ids != PAD
        eligible[:, 0] = False
        lengths = eligible.sum(1)
        k = torch.where(lengths > 0, (lengths.float() * self.config.mask_ratio).round().clamp(min=1), 0)
        noise = torch.rand(input_ids.shape, generator=gen)
        noise[~eligible] = 2.0
        rank = noise.argsort(1).argsort(1)
        return (rank < k[:, None]) & eligible

    def _replace(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        gen: torch.Generator,
        generator: ElectraForMaskedLM | None,
        vocab_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pseudo-anomalies: masked positions get a different token. Returns (ids, mlm loss)."""
        corrupted = input_ids.clone()
        originals = input_ids[mask]
        if originals.numel() == 0:
            return corrupted, None
        # Candidates are [UNK] and every template token, i.e. indices UNK..vocab_size-1.
        mlm_loss = None
        if generator is None:
            draw = UNK + torch.randint(0, vocab_size - UNK - 1, originals.shape, generator=gen)
            draw += (draw >= originals).long()  # skip the original token
        else:
            masked = input_ids.masked_fill(mask, MASK)
            labels = input_ids.masked_fill(~mask, -100)
            dev = next(generator.parameters()).device
            out = generator(
                input_ids=masked.to(dev), attention_mask=(input_ids != PAD).long().to(dev),
                labels=labels.to(dev) if generator.training else None,
            )
            mlm_loss = out.loss
            with torch.no_grad():
                probs = out.logits[mask.to(dev)].float().softmax(-1).cpu()
            weights = 1.0 - probs
            weights[:, :UNK] = 0.0
            weights.scatter_(1, originals[:, None], 0.0)
            draw = torch.multinomial(weights, 1, generator=gen).squeeze(1)
        corrupted[mask] = draw
        return corrupted, mlm_loss

    # -- training -------------------------------------------------------------------------

    def fit(
        self,
        train: pd.DataFrame,
        val: pd.DataFrame,
        *,
        progress: bool | EpochCallback | None = None,
    ) -> FitReport:
        """Train on normal ``train`` windows; early-stop and set the threshold on normal ``val``.

        Labels are not read: pass normal windows only (a split protocol does that).

        Raises:
            DataError: ``train`` or ``val`` is empty, or training has fewer than one template.
        """
        c = self.config
        train = as_windows_frame(train)
        val = as_windows_frame(val)
        if len(train) == 0 or len(val) == 0:
            raise DataError(
                f"FastLogAD needs training and validation windows; got {len(train)} and {len(val)}")
        callback = progress if callable(progress) else None
        show = c.show_progress if progress is None or callable(progress) else bool(progress)
        t0 = time.perf_counter()
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        gen = torch.Generator().manual_seed(c.seed)
        device = self.device

        self.vocab = Vocabulary.build(list(train["event_ids"]))
        vocab_size = len(self.vocab)
        if vocab_size - UNK < 2:
            raise DataError("training windows hold no template ids; FastLogAD needs at least one")
        size = c.max_length - 1
        train_chunks, _, _ = _chunk(self._tokens(train), size)
        val_chunks, _, _ = _chunk(self._tokens(val), size)
        train_lengths = np.fromiter((len(x) for x in train_chunks), np.int64, len(train_chunks))

        disc = self._build_discriminator(vocab_size).to(device)
        generator = None
        if c.variant == "mlm":
            generator = self._build_generator(vocab_size).to(device)
        report = FitReport(method=self.name, num_train_windows=len(train), num_val_windows=len(val))

        def log(entry: dict[str, Any]) -> None:
            report.history.append(entry)
            if callback is not None:
                callback({k: v for k, v in entry.items() if isinstance(v, int | float)})

        # Phase 1: RTD warm-up (+ MLM for the generator).
        params = list(disc.parameters()) + (list(generator.parameters()) if generator else [])
        opt = torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.weight_decay)
        bce = nn.BCEWithLogitsLoss(reduction="none")
        batches_per_epoch = -(-len(train_chunks) // c.batch_size)
        hst_epochs = max(c.epochs, -(-c.min_hst_steps // batches_per_epoch))
        epochs_bar = tqdm(total=c.warmup_epochs + hst_epochs, desc="fastlogad", unit="epoch", disable=not show)
        for epoch in range(c.warmup_epochs):
            disc.train()
            if generator is not None:
                generator.train()
            sums = {"rtd_loss": 0.0, "mlm_loss": 0.0}
            batches = _length_batches(train_lengths, c.batch_size, rng)
            for idx in tqdm(batches, desc=f"RTD {epoch + 1}/{c.warmup_epochs}", leave=False, disable=not show):
                ids, attn = _collate([train_chunks[i] for i in idx])
                mask = self._mask(ids, gen)
                corrupted, mlm_loss = self._replace(ids, mask, gen, generator, vocab_size)
                replaced = (corrupted != ids).float()
                logits = disc(input_ids=corrupted.to(device), attention_mask=attn.to(device)).logits
                token = attn.clone()
                token[:, 0] = 0
                token = token.to(device).float()
                rtd = (bce(logits, replaced.to(device)) * token).sum() / token.sum().clamp(min=1)
                loss = c.rtd_weight * rtd + (c.mlm_weight * mlm_loss if mlm_loss is not None else 0.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums["rtd_loss"] += rtd.item()
                sums["mlm_loss"] += mlm_loss.item() if mlm_loss is not None else 0.0
            entry: dict[str, Any] = {"phase": "rtd", "epoch": epoch, "rtd_loss": sums["rtd_loss"] / len(batches)}
            if generator is not None:
                entry["mlm_loss"] = sums["mlm_loss"] / len(batches)
            log(entry)
            epochs_bar.update()

        # Phase 2: HST on the [CLS] norm, generator frozen.
        if generator is not None:
            generator.eval()
            generator.requires_grad_(False)
        val_gen = torch.Generator().manual_seed(c.seed + 1)
        val_batches = []
        with torch.no_grad():
            for idx in _length_batches(
                np.fromiter((len(x) for x in val_chunks), np.int64, len(val_chunks)), c.score_batch_size, None
            ):
                ids, attn = _collate([val_chunks[i] for i in idx])
                corrupted, _ = self._replace(ids, self._mask(ids, val_gen), val_gen, generator, vocab_size)
                val_batches.append((ids, corrupted, attn))
        encoder_params = list(disc.electra.parameters())
        opt = torch.optim.AdamW(encoder_params, lr=c.hst_learning_rate, weight_decay=c.weight_decay)
        best_loss, best_state, best_index, bad = math.inf, None, -1, 0
        for epoch in range(hst_epochs):
            disc.train()
            total = 0.0
            batches = _length_batches(train_lengths, c.batch_size, rng)
            for idx in tqdm(batches, desc=f"HST {epoch + 1}/{hst_epochs}", leave=False, disable=not show):
                ids, attn = _collate([train_chunks[i] for i in idx])
                with torch.no_grad():
                    corrupted, _ = self._replace(ids, self._mask(ids, gen), gen, generator, vocab_size)
                both = torch.cat([ids, corrupted]).to(device)
                norms = _cls_norms(disc, both, torch.cat([attn, attn]).to(device))
                y = torch.cat([torch.zeros(len(ids)), torch.ones(len(ids))]).to(device)
                loss = _hst_loss(norms, y, c.hst_lambda)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
            val_stats = self._hst_validation(disc, val_batches)
            log({"phase": "hst", "epoch": epoch, "hst_loss": total / len(batches), **val_stats})
            epochs_bar.update()
            if val_stats["val_loss"] < best_loss - 1e-6:
                best_loss, best_index, bad = val_stats["val_loss"], len(report.history) - 1, 0
                best_state = copy.deepcopy(disc.state_dict())
            else:
                bad += 1
                if bad >= c.patience:
                    report.stopped_early = epoch < hst_epochs - 1
                    break
        epochs_bar.close()
        if best_state is not None:
            disc.load_state_dict(best_state)
        report.best_epoch = best_index

        # Re-fit the RTD head on the final (frozen) encoder so explain() stays meaningful.
        self._refit_explain_head(disc, generator, train_chunks, train_lengths, rng, gen, vocab_size, show)

        disc.eval()
        self.discriminator = disc
        self._threshold = 0.0  # marks fitted so score() runs; replaced just below
        val_scores = self.score(val)
        quantile = float(np.quantile(val_scores, c.threshold_quantile))
        self._threshold = max(_threshold_from_quantile(quantile, c.threshold_rule), c.threshold_min)
        report.threshold = self._threshold
        report.train_time_s = time.perf_counter() - t0
        report.extra = {
            "vocab_size": vocab_size,
            "hst_epoch_cap": hst_epochs,
            "num_train_chunks": len(train_chunks),
            "num_parameters": sum(p.numel() for p in disc.parameters()),
            "device": str(device),
            "threshold_quantile_value": quantile,
            "val_score_quantiles": {
                str(q): float(np.quantile(val_scores, q)) for q in (0.5, 0.9, 0.99, 1.0)
            },
        }
        self.fit_report = report
        return report

    def _hst_validation(self, disc: ElectraForPreTraining, batches: list) -> dict[str, float]:
        """Validation HST loss on normal windows and their fixed pseudo-anomalies."""
        disc.eval()
        device = next(disc.parameters()).device
        normal, pseudo = [], []
        with torch.inference_mode():
            for ids, corrupted, attn in batches:
                normal.append(_cls_norms(disc, ids.to(device), attn.to(device)).cpu())
                pseudo.append(_cls_norms(disc, corrupted.to(device), attn.to(device)).cpu())
        n, p = torch.cat(normal), torch.cat(pseudo)
        y = torch.cat([torch.zeros(len(n)), torch.ones(len(p))])
        scores = torch.cat([n, p])
        loss = float(_hst_loss(scores, y, self.config.hst_lambda))
        # the same loss with lambda = 1: comparable across hst_lambda values (a sweep metric)
        bce = float(_hst_loss(scores, y, 1.0))
        # Label-free diagnostic: how often a pseudo-anomaly outscores a normal window.
        sep = float((p[:, None] > n[None, :]).float().mean()) if len(n) * len(p) <= 4_000_000 else float("nan")
        return {"val_loss": loss, "val_bce": bce, "val_normal_norm": float(n.mean()),
                "val_pseudo_norm": float(p.mean()), "val_pseudo_auc": sep}

    def _refit_explain_head(
        self, disc: ElectraForPreTraining, generator: ElectraForMaskedLM | None,
        chunks: list[np.ndarray], lengths: np.ndarray, rng: np.random.Generator,
        gen: torch.Generator, vocab_size: int, show: bool,
    ) -> None:
        c = self.config
        if c.explain_head_epochs == 0:
            return
        device = next(disc.parameters()).device
        head = disc.discriminator_predictions
        opt = torch.optim.AdamW(head.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)
        bce = nn.BCEWithLogitsLoss(reduction="none")
        disc.eval()  # encoder frozen and deterministic; only the head learns
        head.train()
        for epoch in range(c.explain_head_epochs):
            for idx in tqdm(_length_batches(lengths, c.batch_size, rng), desc=f"explain head {epoch + 1}",
                            leave=False, disable=not show):
                ids, attn = _collate([chunks[i] for i in idx])
                with torch.no_grad():
                    corrupted, _ = self._replace(ids, self._mask(ids, gen), gen, generator, vocab_size)
                    hidden = disc.electra(input_ids=corrupted.to(device), attention_mask=attn.to(device)).last_hidden_state
                logits = head(hidden)
                token = attn.clone()
                token[:, 0] = 0
                token = token.to(device).float()
                target = (corrupted != ids).float().to(device)
                loss = (bce(logits, target) * token).sum() / token.sum().clamp(min=1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        head.eval()

    # -- inference ------------------------------------------------------------------------

    def _chunk_batches(self, windows: pd.DataFrame) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, Iterator]:
        """Chunks of every window, run through the model once per *distinct* chunk.

        Returns the distinct chunks, and for every chunk its window, its offset in
        that window and its index among the distinct ones, then batches of distinct
        chunks. A chunk's outputs depend on its tokens alone, so windows that repeat
        a sequence (most sessions of a healthy service) share one forward pass.
        """
        chunks, owner, offset = _chunk(self._tokens(windows), self.config.max_length - 1)
        uniq, inverse = _distinct(chunks)
        lengths = np.fromiter((len(x) for x in uniq), np.int64, len(uniq))
        batches = _length_batches(lengths, self.config.score_batch_size, None)
        return uniq, owner, offset, inverse, iter(batches)

    def score(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        """``||h_CLS||`` per window (max over chunks of long windows); higher = more anomalous."""
        self._check_fitted()
        frame = as_windows_frame(windows)
        out = np.full(len(frame), -np.inf)
        if len(frame) == 0:
            return out.astype(np.float64)
        disc = self.discriminator
        assert disc is not None
        device = next(disc.parameters()).device
        uniq, owner, _, inverse, batches = self._chunk_batches(frame)
        norms = np.empty(len(uniq))
        run = self._inference()
        with torch.inference_mode():
            for idx in batches:
                ids, attn = _collate([uniq[i] for i in idx])
                cls, _ = run(ids.to(device), attn.to(device))
                norms[idx] = cls.norm(dim=-1).double().cpu().numpy()
        np.maximum.at(out, owner, norms[inverse])
        return out

    def _inference(self) -> Any:
        """The function score() and explain() run the discriminator through:
        ``(ids, attention) -> ([CLS] hidden state, replaced-token logits)``.

        On CPU it is a TorchScript trace of the discriminator (built once per weights:
        fit and load make new weights, an in-place change bumps their version), which
        skips most of the Python of a forward pass, about a third of its time for a
        serving request. It is used only where it gives the eager model's numbers on
        shapes other than the one it was traced with; otherwise the eager model runs.
        """
        disc = self.discriminator
        assert disc is not None
        version = sum(p._version for p in disc.parameters())
        if self._runner is None or self._runner[0] is not disc or self._runner[1] != version:
            self._runner = (disc, version, _inference_function(disc))
        return self._runner[2]

    def explain(self, windows: pd.DataFrame | pa.Table) -> list[WindowExplanation]:
        """Per window, the lines whose tokens the discriminator flags as replaced.

        Lines with a replaced-token probability above ``explain_min_probability``
        are listed, most probable first, with their index in the window.
        """
        self._check_fitted()
        frame = as_windows_frame(windows)
        disc = self.discriminator
        assert disc is not None
        device = next(disc.parameters()).device
        scores = np.full(len(frame), -np.inf)
        evidence: list[list[tuple[float, int]]] = [[] for _ in range(len(frame))]
        uniq, owner, offset, inverse, batches = self._chunk_batches(frame)
        norms = np.empty(len(uniq))
        flagged: list[list[tuple[float, int]]] = [[] for _ in uniq]  # (probability, position) per distinct chunk
        run = self._inference()
        with torch.inference_mode():
            for idx in batches:
                ids, attn = _collate([uniq[i] for i in idx])
                cls, logits = run(ids.to(device), attn.to(device))
                norms[idx] = cls.norm(dim=-1).double().cpu().numpy()
                probs = logits.sigmoid().cpu().numpy()
                for row, u in enumerate(idx):
                    n = len(uniq[u])
                    hits = np.nonzero(probs[row, 1 : 1 + n] > self.config.explain_min_probability)[0]
                    flagged[u] = [(float(probs[row, 1 + h]), int(h)) for h in hits]
        np.maximum.at(scores, owner, norms[inverse])
        for i, u in enumerate(inverse):
            if flagged[u]:
                evidence[owner[i]] += [(p, int(offset[i]) + h) for p, h in flagged[u]]
        ids_col = frame["window_id"].astype(str).tolist() if "window_id" in frame else [str(i) for i in range(len(frame))]
        lines_col = list(frame["lines"]) if "lines" in frame else None
        events_col = list(frame["event_ids"])  # one column read, not one frame lookup per window
        result = []
        for w in range(len(frame)):
            events = events_col[w]
            found = sorted(evidence[w], key=lambda e: (-e[0], e[1]))
            result.append(WindowExplanation(
                window_id=ids_col[w], score=float(scores[w]),
                lines=[LineEvidence(index=i, line=str(lines_col[w][i]) if lines_col is not None else "",
                                    event_id=int(events[i]), probability=p) for p, i in found],
            ))
        return result

    # -- persistence ----------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write config.json, model.safetensors (discriminator), vocab.json and state.json."""
        self._check_fitted()
        assert self.discriminator is not None and self.vocab is not None
        out = write_artifact_header(path, self.name, self.config)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.discriminator.state_dict().items()}
        save_file(tensors, str(out / WEIGHTS_FILE), metadata={"method": self.name, "format": "pt"})
        (out / VOCAB_FILE).write_text(json.dumps(self.vocab.to_json()) + "\n")
        state = {
            "threshold": self._threshold,
            "threshold_strategy": self.threshold_strategy(),
            "fit_report": self.fit_report.to_dict() if self.fit_report else None,
        }
        (out / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def threshold_strategy(self) -> str:
        """How the stored threshold is chosen, in words (saved in state.json)."""
        c = self.config
        base = f"{c.threshold_quantile} quantile of normal validation scores"
        if c.threshold_rule == "midpoint":
            base = f"halfway in log-norm from the {base} to ln 2 (HST p = 0.5)"
        return f"label-free: {base}" + (f", floored at {c.threshold_min}" if c.threshold_min else "")

    @classmethod
    def load(cls, path: str | Path) -> FastLogAD:
        """Read a directory written by :meth:`save` (no pickle anywhere).

        Raises:
            DataError: a file is missing, malformed, from another method or format
                version, or its tensors do not fit the config (the file is named).
        """
        root = Path(path)
        header = read_artifact_header(root, cls.name)
        det = cls(header["config"])
        vocab_file, state_file, weights_file = root / VOCAB_FILE, root / STATE_FILE, root / WEIGHTS_FILE
        det.vocab = Vocabulary.from_json(_read_json(vocab_file), vocab_file)
        state = _read_json(state_file)
        if not isinstance(state.get("threshold"), int | float):
            raise DataError(f"{state_file} has no numeric 'threshold'")
        disc = det._build_discriminator(len(det.vocab))
        try:
            tensors = load_file(str(weights_file))
        except (OSError, SafetensorError) as exc:
            raise DataError(f"cannot read {weights_file}: {exc}") from exc
        expected = disc.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
        if missing or unexpected or wrong:
            raise DataError(
                f"{weights_file} does not match {root / 'config.json'} and {vocab_file}: "
                f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}")
        disc.load_state_dict(tensors)
        det.discriminator = disc.to(det.device).eval()
        det._threshold = float(state["threshold"])
        if state.get("fit_report"):
            det.fit_report = FitReport.from_dict(state["fit_report"])
        return det


def _threshold_from_quantile(quantile: float, rule: str) -> float:
    """The stored threshold for a quantile of normal validation scores under ``rule``."""
    if rule == "midpoint" and 0.0 < quantile < LN2:
        return math.sqrt(quantile * LN2)
    return quantile


def _cls_norms(disc: ElectraForPreTraining, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    return disc.electra(input_ids=ids, attention_mask=attn).last_hidden_state[:, 0].norm(dim=-1)


class _InferenceOutputs(nn.Module):
    """What inference reads from the discriminator, as plain tensors (traceable)."""

    def __init__(self, disc: ElectraForPreTraining) -> None:
        super().__init__()
        self.disc = disc

    def forward(self, ids: torch.Tensor, attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.disc(input_ids=ids, attention_mask=attn, output_hidden_states=True)
        return out.hidden_states[-1][:, 0], out.logits


def _inference_function(disc: ElectraForPreTraining) -> Any:
    """A frozen TorchScript trace of the discriminator's inference outputs on CPU, checked
    against the eager model on other batch sizes, lengths and padding; else the eager model."""
    eager = _InferenceOutputs(disc).eval()
    if next(disc.parameters()).device.type != "cpu":
        return eager
    gen = torch.Generator().manual_seed(0)  # the checks must not move the global RNG
    vocab = disc.config.vocab_size

    def batch(rows: int, length: int, pad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.randint(0, vocab, (rows, length), generator=gen)
        attn = torch.ones(rows, length, dtype=torch.long)
        if pad:
            attn[-1, max(1, length // 2):] = 0  # a padded row: the trace keeps the mask path
        return ids, attn

    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python branches it records
            traced = torch.jit.freeze(torch.jit.trace(eager, batch(2, 8), check_trace=False))
            for rows, length, pad in ((1, 1, False), (1, 2, True), (3, 17, True), (4, 9, False), (5, 64, True)):
                ids, attn = batch(rows, length, pad)
                for a, b in zip(eager(ids, attn), traced(ids, attn), strict=True):
                    if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
                        return eager
    except Exception:  # noqa: BLE001 - tracing is an optimisation; the eager model always works
        return eager
    return traced


def _read_json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise DataError(f"model file {file} is missing; re-save the model with logad")
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {file}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{file} must hold a JSON object")
    return data


class _quiet_transformers:
    """Silence transformers' info/warning chatter while building models from configs."""

    def __enter__(self) -> None:
        self._level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()

    def __exit__(self, *exc: object) -> None:
        hf_logging.set_verbosity(self._level)
