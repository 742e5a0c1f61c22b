"""CLAD: anomaly detection on compressed log bytes, without decompression or parsing.

After "CLAD: detecting anomalies in compressed logs" (abstract only; the design
choices it leaves open are ours, and docs/architecture.md says which). The
unit the model reads is a *frame* (:mod:`.frames`): a window's raw lines
compressed as one zstd frame with a dictionary trained on the training
windows. A window longer than ``max_frame_bytes`` compressed is cut at line
boundaries into several frames; each is scored, and the window's score is the
max of its frames'. Nothing is truncated, and the network (:mod:`.model`) sees
compressed bytes only.

Training has two stages:

1. **Masked byte modelling** on every training frame, labelled or not: spans
   of compressed bytes are masked and predicted (``pretrain_epochs``).
2. **Fine-tuning** on the labelled training windows: focal loss on the window
   logit (the max of its frames' logits, so a long window learns from the
   frame that drives it) plus a supervised contrastive loss on the windows'
   embeddings (the mean of their frames' projections). Batches over-sample
   anomalies up to ``anomaly_share``. Early stopping on validation F1 (ties
   broken by validation loss).

The threshold is the best-F1 cut on the validation windows' scores (labels of
the validation part are fair for a supervised method; test labels never are),
stored with the model; where the validation part holds no anomaly, the cut is its
highest normal score, and where it holds no normal window (a handful of long sessions),
the best-F1 cut over the validation and training windows together (training scores
are optimistic: on Liberty, taking them where validation had no anomaly flagged nothing
in two seeds of three). Scores are probabilities (the sigmoid of the logit).

:meth:`CLAD.score_frames` scores frames as they arrive from a log shipper,
compressed with the model's dictionary: the service's frames endpoint calls it
without decompressing anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from logad.errors import DataError
from logad.methods._thresholds import best_f1_cut
from logad.methods.base import (
    Detector,
    EpochCallback,
    FitReport,
    FrameEvidence,
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
from logad.methods.clad.frames import FrameCodec, WindowFrames, frame_windows, train_dictionary

__all__ = ["CLAD", "CLADConfig", "frame_table"]

WEIGHTS_FILE = "model.safetensors"
DICTIONARY_FILE = "dictionary.zdict"
CODEC_FILE = "codec.json"
_DICT_SAMPLE_BYTES = 8192   # a long window is cut into pieces this size to train the dictionary
_DICT_MAX_SAMPLES = 50_000


class CLADConfig(BaseModel):
    """Settings of :class:`CLAD` (defaults: a small network that trains on CPU)."""

    model_config = ConfigDict(extra="forbid")

    codec: Literal["zstd", "deflate"] = Field(
        "zstd", description="frame codec: zstd with a trained dictionary, or zlib-framed deflate with the "
        "dictionary's last 32 KiB as its preset dictionary")
    level: int = Field(-1, ge=-7, le=19, description="compression level; zstd's negative (fast) levels store "
                       "literals uncompressed, so the bytes the dictionary did not predict stay readable to the "
                       "model (held-out HDFS F1 0.977 at -1 against 0.683 at 3; deflate: 1-9, else 6)")
    dict_size_bytes: int = Field(16_384, ge=256, le=1 << 20, description="size of the trained dictionary")
    max_frame_bytes: int = Field(1024, ge=64, le=65_536, description="largest frame the model reads; a window "
                                 "whose frame would be larger is cut at line boundaries into several")
    byte_embedding: int = Field(32, ge=4, description="byte embedding width")
    encoder_width: int = Field(64, ge=4, description="channels of the dilated convolution encoder")
    encoder_blocks: int = Field(3, ge=0, le=10, description="residual conv blocks (dilation 1, 2, 4, ...)")
    encoder_kernel: int = Field(3, ge=1, le=15, description="conv kernel size (odd)")
    stride: int = Field(4, ge=1, le=16, description="the strided conv shortens the byte sequence this many times")
    d_model: int = Field(64, ge=8, description="width of the Transformer-mLSTM stack")
    num_layers: int = Field(2, ge=0, le=12, description="stack layers, alternating self-attention and mLSTM")
    num_heads: int = Field(4, ge=1, description="self-attention heads (must divide d_model)")
    mlstm_heads: int = Field(2, ge=1, description="mLSTM heads (must divide 2 * d_model)")
    mlstm_chunk: int = Field(32, ge=4, description="chunk length of the chunkwise mLSTM kernel")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout")
    projection: int = Field(32, ge=4, description="width of the contrastive projection")
    pretrain_epochs: int = Field(2, ge=0, description="stage 1: masked byte modelling epochs over every training "
                                 "frame (0 skips it)")
    mask_ratio: float = Field(0.15, gt=0, lt=1, description="share of stride-long byte spans masked in stage 1")
    pretrain_learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate of stage 1")
    epochs: int = Field(10, ge=1, description="stage 2: fine-tuning epochs at most")
    patience: int = Field(3, ge=1, description="stop fine-tuning after this many epochs without a better "
                          "validation F1 (or, at an equal F1, a lower validation loss)")
    batch_size: int = Field(32, ge=2, description="windows per fine-tuning step (frames per stage-1 step)")
    max_batch_frames: int = Field(256, ge=1, description="a fine-tuning step also stops taking windows at this many "
                                  "frames, so long windows (a Hadoop application: ~50 frames) make more, smaller "
                                  "steps; a window with more frames than this is a step of its own")
    learning_rate: float = Field(5e-4, gt=0, description="AdamW learning rate of stage 2")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    focal_gamma: float = Field(2.0, ge=0, description="focal loss focusing parameter (0: cross-entropy)")
    focal_alpha: float | None = Field(None, gt=0, lt=1, description="focal loss weight of the anomalous class "
                                      "(None: unweighted)")
    contrastive_weight: float = Field(0.1, ge=0, description="weight of the supervised contrastive loss")
    temperature: float = Field(0.1, gt=0, description="temperature of the supervised contrastive loss")
    anomaly_share: float = Field(0.25, ge=0, lt=1, description="fine-tuning epochs draw anomalous windows (with "
                                 "replacement) until they are at least this share of the epoch")
    threshold: Literal["best-f1", "precision"] = Field(
        "best-f1", description="threshold on validation: best F1, or the lowest cut reaching target_precision")
    target_precision: float = Field(0.9, gt=0, le=1, description="validation precision for threshold=precision")
    score_batch_size: int = Field(256, ge=1, description="frames per forward pass when scoring")
    explain_lines: int = Field(5, ge=1, le=100, description="lines named per window in explanations")
    occlusion_lines: int = Field(64, ge=1, description="explanations leave out at most this many distinct lines "
                                 "of a window's top frame, one at a time")
    ray_frames_above: int = Field(50_000, ge=0, description="frame the windows with Ray Data map_batches when a "
                                  "table has more windows than this (else in this process)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' = cuda when available, else cpu")
    seed: int = Field(0, description="random seed (dictionary samples, initialisation, batches, masks)")
    show_progress: bool = Field(True, description="tqdm bars for epochs")

    @model_validator(mode="after")
    def _shapes(self) -> CLADConfig:
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide d_model ({self.d_model})")
        if (2 * self.d_model) % self.mlstm_heads:
            raise ValueError(f"mlstm_heads ({self.mlstm_heads}) must divide 2 * d_model ({2 * self.d_model})")
        if self.encoder_kernel % 2 == 0:
            raise ValueError(f"encoder_kernel must be odd (got {self.encoder_kernel})")
        return self

    def codec_settings(self) -> tuple[str, int, int, int]:
        return (self.codec, self.level, self.dict_size_bytes, self.max_frame_bytes)


# -- frames of a windows table --------------------------------------------------------------------


def _window_lines(frame: pd.DataFrame) -> list[list[str]]:
    if "lines" not in frame:
        raise DataError("clad reads the windows' raw lines (the `lines` column), which this table lacks")
    return [[] if v is None else [str(x) for x in v] for v in frame["lines"]]


def _frame_batch(batch: dict[str, np.ndarray], codec: FrameCodec) -> dict[str, np.ndarray]:
    out = frame_windows(codec, [list(v) if v is not None else [] for v in batch["lines"]])
    return {"window": batch["window"][out.owner], "frame": np.array(out.frames, dtype=object),
            "start": np.array([s for s, _ in out.spans], np.int64),
            "stop": np.array([e for _, e in out.spans], np.int64)}


def frame_table(codec: FrameCodec, lines: Sequence[Sequence[str]], *, ray_above: int = 50_000) -> WindowFrames:
    """Frames of every window of a table: in this process, or above ``ray_above`` windows
    with Ray Data ``map_batches`` tasks, so a large training table is framed across the
    cluster like ingest (the codec travels to each task with its dictionary)."""
    if len(lines) <= ray_above:
        return frame_windows(codec, lines)
    import ray

    from logad.ray_env import init_ray

    init_ray(progress=False)
    ds = ray.data.from_items([{"window": i, "lines": list(v)} for i, v in enumerate(lines)])
    out = ds.map_batches(_frame_batch, fn_kwargs={"codec": codec}, batch_size=2048, batch_format="numpy")
    rows: list[tuple[int, int, int, bytes]] = []
    for b in out.iter_batches(batch_size=8192, batch_format="numpy"):
        rows += zip(b["window"].tolist(), b["start"].tolist(), b["stop"].tolist(), b["frame"], strict=True)
    rows.sort(key=lambda r: (r[0], r[1]))  # window order, then line order, as frame_windows gives
    return WindowFrames([bytes(r[3]) for r in rows], np.array([r[0] for r in rows], np.int64),
                        [(r[1], r[2]) for r in rows])


def _dictionary_samples(lines: Sequence[Sequence[str]], rng: np.random.Generator) -> list[bytes]:
    """Training windows' text, long ones cut into pieces at line boundaries, at most
    ``_DICT_MAX_SAMPLES`` of them (a seeded choice)."""
    out: list[bytes] = []
    for window in lines:
        piece: list[bytes] = []
        size = 0
        for x in window:
            b = (x + "\n").encode("utf-8", "replace")
            piece.append(b)
            size += len(b)
            if size >= _DICT_SAMPLE_BYTES:
                out.append(b"".join(piece))
                piece, size = [], 0
        if piece:
            out.append(b"".join(piece))
    if len(out) > _DICT_MAX_SAMPLES:
        keep = np.sort(rng.choice(len(out), _DICT_MAX_SAMPLES, replace=False))
        out = [out[i] for i in keep]
    return out


class _Part:
    """One part's frames, as byte arrays, with their windows."""

    def __init__(self, wf: WindowFrames, num_windows: int) -> None:
        self.frames = wf.frames
        self.arrays = [np.frombuffer(f, dtype=np.uint8) for f in wf.frames]
        self.lengths = np.fromiter((len(f) for f in wf.frames), np.int64, len(wf.frames))
        self.owner = wf.owner
        self.spans = wf.spans
        self.num_windows = num_windows
        order = np.argsort(self.owner, kind="stable")
        self.starts = np.concatenate(([0], np.cumsum(np.bincount(self.owner, minlength=num_windows))))
        self.order = order

    def of_window(self, w: int) -> np.ndarray:
        return self.order[self.starts[w]: self.starts[w + 1]]


def _collate(arrays: Sequence[np.ndarray], pad: int) -> tuple[Any, Any]:
    import torch

    lengths = np.fromiter((len(a) for a in arrays), np.int64, len(arrays))
    width = max(1, int(lengths.max()) if len(lengths) else 1)
    ids = np.full((len(arrays), width), pad, dtype=np.int64)
    for i, a in enumerate(arrays):
        ids[i, : len(a)] = a
    return torch.from_numpy(ids), torch.from_numpy(lengths)


def _focal(logits: Any, y: Any, gamma: float, alpha: float | None) -> Any:
    import torch.nn.functional as F

    ce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    p = logits.sigmoid()
    pt = p * y + (1 - p) * (1 - y)
    loss = (1 - pt).clamp(min=0) ** gamma * ce
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss.mean()


def _supcon(z: Any, y: Any, temperature: float) -> Any:
    """Supervised contrastive loss (Khosla et al. 2020) over L2-normalised ``z``: each anchor
    with a same-class partner in the batch pulls its partners closer than the rest."""
    import torch

    n = len(z)
    sim = z @ z.T / temperature
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, -1e9)
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~eye
    has = pos.any(1)
    if not bool(has.any()):
        return z.sum() * 0.0
    mean_pos = (log_prob * pos).sum(1)[has] / pos.sum(1)[has]
    return -mean_pos.mean()


@register_method
class CLAD(Detector):
    """Compressed-log anomaly detection: frames of compressed bytes → window verdicts."""

    name = "clad"
    supervised = True
    config_class = CLADConfig
    scoring_columns = ("lines",)

    def __init__(self, config: CLADConfig | Mapping[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.codec: FrameCodec | None = None
        self.net: Any = None
        self.threshold_strategy = ""
        self.fit_report: FitReport | None = None
        self._prepared: dict[str, Any] | None = None  # frames computed by a sweep's driver

    # -- set-up ---------------------------------------------------------------------------------

    @property
    def device(self) -> str:
        from logad.methods._torch import resolve_device

        return resolve_device(self.config.device)

    def _build(self) -> Any:
        from logad.methods.clad.model import CLADNet, NetConfig

        c = self.config
        return CLADNet(NetConfig(
            max_frame_bytes=c.max_frame_bytes, byte_embedding=c.byte_embedding, encoder_width=c.encoder_width,
            encoder_blocks=c.encoder_blocks, encoder_kernel=c.encoder_kernel, stride=c.stride, d_model=c.d_model,
            num_layers=c.num_layers, num_heads=c.num_heads, mlstm_heads=c.mlstm_heads, mlstm_chunk=c.mlstm_chunk,
            dropout=c.dropout, projection=c.projection))

    def _make_codec(self, lines: Sequence[Sequence[str]]) -> FrameCodec:
        c = self.config
        samples = _dictionary_samples(lines, np.random.default_rng(c.seed))
        return FrameCodec(c.codec, c.level, train_dictionary(samples, c.dict_size_bytes, seed=c.seed),
                          c.max_frame_bytes)

    # -- sweeps ---------------------------------------------------------------------------------

    @classmethod
    def sweep_state(cls, train: pd.DataFrame, val: pd.DataFrame, config: Mapping[str, Any]) -> Any:
        """The dictionary and the frames of both parts, built once for every trial (trials whose
        codec settings differ from the fixed ones build their own)."""
        det = cls({**config, "show_progress": False})
        train, val = as_windows_frame(train), as_windows_frame(val)
        tl, vl = _window_lines(train), _window_lines(val)
        codec = det._make_codec(tl)
        ray_above = det.config.ray_frames_above
        return _SweepFrames(det.config.codec_settings(), codec, frame_table(codec, tl, ray_above=ray_above),
                            frame_table(codec, vl, ray_above=ray_above), len(train), len(val))

    def adopt_sweep_state(self, state: Any) -> None:
        if isinstance(state, _SweepFrames) and state.settings == self.config.codec_settings():
            self._prepared = {"codec": state.codec, "train": state.train, "val": state.val,
                              "sizes": (state.num_train, state.num_val)}

    # -- training -------------------------------------------------------------------------------

    def fit(self, train: pd.DataFrame, val: pd.DataFrame, *, progress: bool | EpochCallback | None = None) -> FitReport:
        import torch
        from tqdm.auto import tqdm

        from logad.methods.clad.model import PAD

        t0 = time.perf_counter()
        c = self.config
        train, val = as_windows_frame(train), as_windows_frame(val)
        if not len(train):
            raise DataError("clad needs training windows; got none")
        callback = progress if callable(progress) else None
        show = c.show_progress if progress is None or callable(progress) else bool(progress)
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        gen = torch.Generator().manual_seed(c.seed)
        device = self.device

        y_train, y_val = window_labels(train), window_labels(val)
        known = np.flatnonzero(~np.isnan(y_train))
        if len(np.unique(y_train[known])) < 2:
            raise DataError(f"clad is supervised: its training windows need both normal and anomalous labels "
                            f"(got {int(np.nansum(y_train))} anomalous of {len(known)} labelled)")

        prepared = self._prepared
        if prepared is not None and prepared["sizes"] == (len(train), len(val)):
            self.codec = prepared["codec"]
            tf, vf = prepared["train"], prepared["val"]
            framed_here = False
        else:
            tlines = _window_lines(train)
            self.codec = self._make_codec(tlines)
            tf = frame_table(self.codec, tlines, ray_above=c.ray_frames_above)
            vf = frame_table(self.codec, _window_lines(val), ray_above=c.ray_frames_above)
            framed_here = True
        t_frames = time.perf_counter() - t0
        tp, vp = _Part(tf, len(train)), _Part(vf, len(val))
        raw_bytes = sum(len(x) + 1 for v in train["lines"] if v is not None for x in v)
        self.net = self._build().to(device)
        report = FitReport(method=self.name, num_train_windows=len(train), num_val_windows=len(val))
        bar = tqdm(total=c.pretrain_epochs + c.epochs, desc="clad", unit="epoch", disable=not show)

        def log(entry: dict[str, Any]) -> None:
            report.history.append(entry)
            if callback is not None:
                callback({k: v for k, v in entry.items() if isinstance(v, int | float)})
            bar.update(1)

        # Stage 1: masked byte modelling over every training frame (labels unused).
        if c.pretrain_epochs:
            opt = torch.optim.AdamW(self.net.parameters(), lr=c.pretrain_learning_rate,
                                    weight_decay=c.weight_decay, fused=device == "cpu" or None)
            for epoch in range(c.pretrain_epochs):
                self.net.train()
                total, steps = 0.0, 0
                for sel in _length_batches(tp.lengths, c.batch_size, rng):
                    ids, lengths = _collate([tp.arrays[i] for i in sel], PAD)
                    masked, target = _mask_spans(ids, lengths, c.stride, c.mask_ratio, gen)
                    logits = self.net.mlm_logits(masked.to(device), lengths.to(device))
                    width = ids.shape[1]
                    loss = torch.nn.functional.cross_entropy(
                        logits[:, :width].reshape(-1, 256), target.to(device).reshape(-1), ignore_index=-100)
                    total += _step(opt, loss, self.net)
                    steps += 1
                log({"phase": "pretrain", "epoch": epoch, "mbm_loss": total / max(steps, 1)})

        # Stage 2: focal + supervised contrastive on labelled windows, window logit = max over frames.
        opt = torch.optim.AdamW(self.net.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay,
                                fused=device == "cpu" or None)
        self._threshold = 0.0  # lets the scoring helpers run; replaced below
        best_f1, best_loss, best_state, best_index, stale = -1.0, np.inf, None, -1, 0
        anomalies, normals = known[y_train[known] == 1], known[y_train[known] == 0]
        for epoch in range(c.epochs):
            self.net.train()
            order = _epoch_order(normals, anomalies, c.anomaly_share, rng)
            total, steps = 0.0, 0
            for wins in _frame_budget_batches(order, tp, c.batch_size, c.max_batch_frames):
                parts = [tp.of_window(w) for w in wins]
                flat = np.concatenate(parts)
                seg = torch.as_tensor(np.repeat(np.arange(len(wins)), [len(p) for p in parts]), device=device)
                ids, lengths = _collate([tp.arrays[i] for i in flat], PAD)
                logits, emb = self.net(ids.to(device), lengths.to(device))
                win_logit = torch.full((len(wins),), -torch.inf, device=device).scatter_reduce(
                    0, seg, logits, reduce="amax")
                win_emb = torch.zeros(len(wins), emb.shape[1], device=device).index_add(0, seg, emb)
                win_emb = torch.nn.functional.normalize(win_emb, dim=-1)
                target = torch.as_tensor(y_train[wins], dtype=torch.float32, device=device)
                loss = _focal(win_logit, target, c.focal_gamma, c.focal_alpha)
                if c.contrastive_weight:
                    loss = loss + c.contrastive_weight * _supcon(win_emb, target, c.temperature)
                total += _step(opt, loss, self.net)
                steps += 1
            entry: dict[str, Any] = {"phase": "finetune", "epoch": epoch, "train_loss": total / max(steps, 1)}
            ev = self._evaluate(vp, y_val)
            entry.update({k: v for k, v in ev.items() if np.isfinite(v)})
            f1 = entry.get("val_f1", -entry["train_loss"])
            loss_v = entry.get("val_loss", entry["train_loss"])
            if f1 > best_f1 + 1e-9 or (f1 >= best_f1 - 1e-9 and loss_v < best_loss):
                best_f1, best_loss, best_index, stale = f1, loss_v, len(report.history), 0
                best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            else:
                stale += 1
            log(entry)
            bar.set_postfix(loss=f"{entry['train_loss']:.4f}", val_f1=f"{entry.get('val_f1', float('nan')):.4f}")
            if stale >= c.patience:
                report.stopped_early = epoch < c.epochs - 1
                break
        bar.close()
        assert best_state is not None
        self.net.load_state_dict(best_state)
        self.net.eval()
        report.best_epoch = best_index

        scores = self._window_scores(vp) if len(val) else np.zeros(0)
        yv = y_val[~np.isnan(y_val)]
        if (yv == 0).any():  # best F1 on validation, or with no anomaly there its highest normal score
            self._threshold, self.threshold_strategy = self._cut(y_val, scores, "validation")
        else:  # no normal window to validate on (a handful of long sessions): add training's
            self._threshold, self.threshold_strategy = self._cut(
                np.concatenate([y_val, y_train]), np.concatenate([scores, self._window_scores(tp)]),
                "validation + training")
        report.threshold = self._threshold
        report.train_time_s = time.perf_counter() - t0
        compressed = int(tp.lengths.sum())
        report.extra = {
            "parameters": int(sum(p.numel() for p in self.net.parameters())),
            "device": device, "train_frames": len(tp.frames), "val_frames": len(vp.frames),
            "frames_built_in_fit": framed_here, "framing_s": round(t_frames, 3),
            "train_raw_bytes": int(raw_bytes), "train_compressed_bytes": compressed,
            "compression_ratio": round(raw_bytes / max(compressed, 1), 3),
            "dict_id": self.codec.dict_id, "threshold_strategy": self.threshold_strategy,
            "best_val_f1": best_f1 if any("val_f1" in h for h in report.history) else None,
        }
        self.fit_report = report
        return report

    def _evaluate(self, part: _Part, y: np.ndarray) -> dict[str, float]:
        """Validation F1 (at the best cut) and loss (mean BCE) of the windows with labels."""
        known = ~np.isnan(y)
        if not known.any():
            return {}
        s = self._window_scores(part)[known]
        yk = y[known].astype(np.int64)
        p = np.clip(s, 1e-7, 1 - 1e-7)
        out = {"val_loss": float(-np.mean(yk * np.log(p) + (1 - yk) * np.log(1 - p)))}
        if 0 < yk.sum() < len(yk):
            from sklearn.metrics import precision_recall_curve

            precision, recall, _ = precision_recall_curve(yk, s)
            f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
            out["val_f1"] = float(f1.max())
        return out

    def _cut(self, y: np.ndarray, s: np.ndarray, where: str) -> tuple[float, str]:
        """The best-F1 cut (or the precision rule) on the labelled windows of ``where`` (the
        validation part, or validation and training where validation has no normal window),
        or with no anomaly among them the highest normal score."""
        c = self.config
        known = ~np.isnan(y)
        yk, sk = y[known].astype(np.int64), s[known]
        if len(yk) and 0 < yk.sum() < len(yk):
            cut, note = best_f1_cut(yk, sk, c.threshold, c.target_precision)
            return cut, f"validation-tuned ({c.threshold}): {note} on {len(yk)} {where} windows"
        normal = sk[yk == 0] if len(yk) else np.zeros(0)
        cut = float(np.max(normal)) if len(normal) else 0.5
        return cut, f"the highest normal {where} score (no labelled anomalies to tune on)"

    @property
    def threshold_kind(self) -> str:
        return "validation-tuned" if "validation-tuned" in self.threshold_strategy else "label-free"

    # -- scoring --------------------------------------------------------------------------------

    def _check_model(self) -> None:
        self._check_fitted()
        if self.net is None or self.codec is None:
            raise DataError("this clad model has no network; load it with CLAD.load")

    def _frame_logits(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        from logad.methods.clad.model import PAD

        out = np.zeros(len(arrays), dtype=np.float64)
        if not len(arrays):
            return out
        lengths = np.fromiter((len(a) for a in arrays), np.int64, len(arrays))
        order = np.argsort(lengths, kind="stable")
        device = next(self.net.parameters()).device
        with torch.inference_mode():
            for a in range(0, len(order), self.config.score_batch_size):
                sel = order[a: a + self.config.score_batch_size]
                ids, lens = _collate([arrays[i] for i in sel], PAD)
                logits, _ = self.net(ids.to(device), lens.to(device))
                out[sel] = logits.double().cpu().numpy()
        return out

    def _window_scores(self, part: _Part) -> np.ndarray:
        probs = _sigmoid(self._frame_logits(part.arrays))
        scores = np.full(part.num_windows, -np.inf)
        np.maximum.at(scores, part.owner, probs)
        return scores

    def score_frames(self, frames: Sequence[bytes]) -> np.ndarray:
        """Scores (probabilities, float64) of compressed frames as a shipper sends them: each
        read as bytes, never decompressed. Check them first (:func:`.frames.check_zstd_frame`):
        a frame longer than ``max_frame_bytes`` has no position embedding.

        Raises:
            DataError: a frame is longer than the model's ``max_frame_bytes``.
        """
        self._check_model()
        limit = self.config.max_frame_bytes
        arrays = []
        for i, f in enumerate(frames):
            if len(f) > limit:
                raise DataError(f"frame {i} is {len(f):,} bytes, over the model's max_frame_bytes of {limit:,}")
            arrays.append(np.frombuffer(bytes(f), dtype=np.uint8))
        return _sigmoid(self._frame_logits(arrays))

    def _part(self, frame: pd.DataFrame) -> _Part:
        assert self.codec is not None
        return _Part(frame_table(self.codec, _window_lines(frame), ray_above=self.config.ray_frames_above),
                     len(frame))

    def frames_of(self, windows: pd.DataFrame | pa.Table) -> WindowFrames:
        """The frames the model cuts each window into (what a shipper would send)."""
        self._check_model()
        assert self.codec is not None
        return frame_windows(self.codec, _window_lines(as_windows_frame(windows)))

    def score(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        self._check_model()
        frame = as_windows_frame(windows)
        if not len(frame):
            return np.zeros(0)
        return self._window_scores(self._part(frame))

    def explain(self, windows: pd.DataFrame | pa.Table) -> list[WindowExplanation]:
        """Per window: its frames by score (the top one drove the window's), and the lines of
        the top frame by how much the frame's score falls when each is left out (occlusion: the
        frame recompressed without every copy of the line; at most ``occlusion_lines`` distinct
        lines are tried)."""
        self._check_model()
        assert self.codec is not None
        c = self.config
        frame = as_windows_frame(windows)
        if not len(frame):
            return []
        part = self._part(frame)
        probs = _sigmoid(self._frame_logits(part.arrays))
        lines = _window_lines(frame)
        ids = list(frame["event_ids"]) if "event_ids" in frame else [None] * len(frame)
        out = []
        for w in range(len(frame)):
            mine = part.of_window(w)
            ranked = mine[np.argsort(-probs[mine], kind="stable")]
            top = int(ranked[0])
            frames_ev = [FrameEvidence(index=int(np.flatnonzero(mine == f)[0]), start_line=part.spans[f][0],
                                       stop_line=part.spans[f][1], bytes=int(part.lengths[f]),
                                       score=float(probs[f])) for f in ranked[: c.explain_lines]]
            a, b = part.spans[top]
            evidence: list[LineEvidence] = []
            if b > a and lines[w]:
                # leave out each distinct line of the frame (every copy of it: a repeated
                # line left out once would still be there), recompress, rescore
                firsts: dict[str, int] = {}
                for k in range(a, b):
                    firsts.setdefault(lines[w][k], k)
                texts = list(firsts)[: c.occlusion_lines]
                occluded = [self.codec.compress("".join(x + "\n" for x in lines[w][a:b] if x != t)
                                                .encode("utf-8", "replace"))[: c.max_frame_bytes] for t in texts]
                drop = probs[top] - _sigmoid(self._frame_logits([np.frombuffer(f, np.uint8) for f in occluded]))
                w_ids = ids[w]
                for j in np.argsort(-drop, kind="stable")[: c.explain_lines]:
                    k = firsts[texts[int(j)]]
                    eid = int(w_ids[k]) if w_ids is not None and k < len(w_ids) else -1
                    evidence.append(LineEvidence(index=k, line=lines[w][k], event_id=eid,
                                                 probability=float(np.clip(drop[j], 0.0, 1.0))))
            out.append(WindowExplanation(window_id=str(frame["window_id"].iloc[w]) if "window_id" in frame
                                         else str(w), score=float(probs[mine].max()), lines=evidence,
                                         frames=frames_ev))
        return out

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write config.json, model.safetensors, dictionary.zdict (raw dictionary bytes),
        codec.json (codec settings) and state.json."""
        from safetensors.torch import save_file

        self._check_model()
        assert self.codec is not None
        out = write_artifact_header(path, self.name, self.config)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(tensors, str(out / WEIGHTS_FILE), metadata={"method": self.name, "format": "pt"})
        (out / DICTIONARY_FILE).write_bytes(self.codec.dictionary)
        (out / CODEC_FILE).write_text(json.dumps(self.codec.to_json(), indent=2) + "\n")
        write_fitted_state(out, self)

    @classmethod
    def load(cls, path: str | Path) -> CLAD:
        """Read a directory written by :meth:`save` (no pickle anywhere).

        Raises:
            DataError: a file is missing or malformed, the dictionary does not match
                codec.json, or the tensors do not fit the config.
        """
        import hashlib

        from safetensors import SafetensorError
        from safetensors.torch import load_file

        root = Path(path)
        header = read_artifact_header(root, cls.name)
        det = cls(header["config"])
        read_fitted_state(root, det)
        dict_file, codec_file, weights = root / DICTIONARY_FILE, root / CODEC_FILE, root / WEIGHTS_FILE
        for f in (dict_file, codec_file, weights):
            if not f.is_file():
                raise DataError(f"clad model {root} has no {f.name}")
        dictionary = dict_file.read_bytes()
        try:
            settings = json.loads(codec_file.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"cannot read {codec_file}: {exc}") from exc
        if settings.get("dict_sha256") != hashlib.sha256(dictionary).hexdigest():
            raise DataError(f"{dict_file} does not match the dict_sha256 in {codec_file}")
        c = det.config
        det.codec = FrameCodec(c.codec, c.level, dictionary, c.max_frame_bytes)
        net = det._build()
        try:
            tensors = load_file(str(weights))
        except (OSError, SafetensorError) as exc:
            raise DataError(f"cannot read {weights}: {exc}") from exc
        expected = net.state_dict()
        bad = sorted(set(expected) ^ set(tensors)) + [k for k in expected if k in tensors
                                                       and tensors[k].shape != expected[k].shape]
        if bad:
            raise DataError(f"{weights} does not match {root / 'config.json'}: {bad[:3]}")
        net.load_state_dict(tensors)
        det.net = net.to(det.device).eval()
        return det


class _SweepFrames:
    """What a sweep's driver hands every trial: the codec and both parts' frames."""

    def __init__(self, settings: tuple, codec: FrameCodec, train: WindowFrames, val: WindowFrames,
                 num_train: int, num_val: int) -> None:
        self.settings, self.codec, self.train, self.val = settings, codec, train, val
        self.num_train, self.num_val = num_train, num_val

    def __repr__(self) -> str:
        size = sum(map(len, self.train.frames)) + sum(map(len, self.val.frames))
        return (f"clad frames: dictionary id {self.codec.dict_id}, {len(self.train)} + {len(self.val)} frames, "
                f"{size / 1e6:.1f} MB compressed")


def _step(opt: Any, loss: Any, net: Any) -> float:
    """One optimiser step on ``loss`` (gradients clipped to norm 1); the loss as a float."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _length_batches(lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar length (less padding), in a shuffled order."""
    order = np.argsort(lengths + rng.random(len(lengths)), kind="stable")
    batches = [order[a: a + size] for a in range(0, len(order), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _epoch_order(normals: np.ndarray, anomalies: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """One fine-tuning epoch's windows: as many as are labelled, anomalies drawn with
    replacement up to ``share`` of them where they are rarer, the rest normals."""
    n = len(normals) + len(anomalies)
    want = int(round(share * n))
    if len(anomalies) >= want or not len(anomalies):
        picked = np.concatenate([normals, anomalies])
    else:
        extra = rng.choice(anomalies, want - len(anomalies), replace=True)
        kept = rng.choice(normals, max(0, n - want), replace=False)
        picked = np.concatenate([kept, anomalies, extra])
    return rng.permutation(picked)


def _frame_budget_batches(order: np.ndarray, part: _Part, size: int, max_frames: int) -> list[np.ndarray]:
    """Consecutive windows of ``order`` in batches of at most ``size`` windows and
    ``max_frames`` frames (a window with more frames alone)."""
    counts = np.diff(part.starts)
    out: list[np.ndarray] = []
    batch: list[int] = []
    frames = 0
    for w in order.tolist():
        n = int(counts[w])
        if batch and (len(batch) >= size or frames + n > max_frames):
            out.append(np.asarray(batch, dtype=np.int64))
            batch, frames = [], 0
        batch.append(w)
        frames += n
    if batch:
        out.append(np.asarray(batch, dtype=np.int64))
    return out


def _mask_spans(ids: Any, lengths: Any, stride: int, ratio: float, gen: Any) -> tuple[Any, Any]:
    """Masked byte modelling input and target: stride-aligned spans of real bytes masked with
    probability ``ratio`` (at least one span per frame); the target holds the original bytes
    at masked positions and -100 elsewhere."""
    import torch

    from logad.methods.clad.model import MASK

    b, n = ids.shape
    t = -(-n // stride)
    spans = torch.rand(b, t, generator=gen) < ratio
    real_spans = -(-lengths // stride)
    first = (torch.rand(b, generator=gen) * real_spans.clamp(min=1)).long()
    spans[torch.arange(b), first.clamp(max=t - 1)] = True
    pos = spans.repeat_interleave(stride, dim=1)[:, :n]
    real = torch.arange(n)[None, :] < lengths[:, None]
    pos &= real
    masked = ids.masked_fill(pos, MASK)
    target = torch.where(pos, ids, torch.full_like(ids, -100))
    return masked, target
