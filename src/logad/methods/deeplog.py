"""DeepLog (Du et al., CCS 2017): an LSTM predicts the next template; surprises are anomalies.

Every event of a window is predicted from the ``history`` events before it (the
start is padded, so the first events are checked too). Its *rank* is 1 + the
number of templates the model found more likely. A window's score is the worst
rank among its events; an event whose template never occurred in training
gets rank ``vocabulary + 1``, beyond any k.

The paper flags a window when some event falls outside the top k (k = 9 on
HDFS). Here k is chosen without test labels: the smallest k such that at most
``val_miss_rate`` of the normal validation next-events rank below it. The stored
threshold is that k (score > k means anomalous). The paper's k can be applied
as a fixed threshold for comparison (``logad compare`` reports it separately).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from logad.errors import DataError
from logad.methods._events import EventVocabulary, read_state, window_lines
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

__all__ = ["PAPER_K", "DeepLog", "DeepLogConfig"]

PAPER_K = 9
"""The top-k the DeepLog paper used on HDFS (for comparison, never tuned on test)."""


class DeepLogConfig(BaseModel):
    """Settings of :class:`DeepLog` (paper: history 10, 2 layers of 64)."""

    model_config = ConfigDict(extra="forbid")

    history: int = Field(10, ge=1, description="events of context before each predicted event")
    embedding_size: int = Field(32, ge=2, description="template embedding width")
    hidden_size: int = Field(64, ge=2, description="LSTM width")
    num_layers: int = Field(2, ge=1, description="LSTM layers")
    batch_size: int = Field(1024, ge=1, description="(history, next event) pairs per batch")
    lr: float = Field(2e-3, gt=0.0, description="Adam learning rate")
    epochs: int = Field(10, ge=1, description="maximum epochs (early-stopped on validation loss)")
    patience: int = Field(2, ge=1, description="stop after this many epochs without a lower validation loss")
    val_miss_rate: float = Field(
        0.001, ge=0.0, lt=1.0, description="k = the smallest top-k that misses at most this share "
        "of normal validation next-events")
    seed: int = Field(0, description="seed for weights and batching")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' = cuda when available")
    show_progress: bool = Field(False, description="print one line per epoch")


class _Net(nn.Module):
    def __init__(self, classes: int, c: DeepLogConfig) -> None:
        super().__init__()
        # inputs: 0 = padding, 1..V = templates, V + 1 = unknown; outputs: the V templates
        self.embed = nn.Embedding(classes + 2, c.embedding_size, padding_idx=0)
        self.lstm = nn.LSTM(c.embedding_size, c.hidden_size, c.num_layers, batch_first=True)
        self.out = nn.Linear(c.hidden_size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embed(x))
        return self.out(h[:, -1])


@register_method
class DeepLog(Detector):
    """Next-event prediction with an LSTM; score = worst rank of a true next event."""

    name = "deeplog"
    supervised = False
    config_class = DeepLogConfig

    def __init__(self, config: DeepLogConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.vocab: EventVocabulary | None = None
        self.net: _Net | None = None
        self.fit_report: FitReport | None = None

    @property
    def device(self) -> torch.device:
        want = self.config.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.device(want)

    def _pairs(self, sequences: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(history inputs, targets, window index, position) for every event of every window."""
        assert self.vocab is not None
        h = self.config.history
        xs, ys, ws, ps = [], [], [], []
        for w, seq in enumerate(sequences):
            idx = self.vocab.index(seq)  # 0..V-1 known, V unknown
            tokens = np.concatenate([np.zeros(h, dtype=np.int64), idx + 1])  # 1..V known, V+1 unknown
            if not len(idx):
                continue
            windows = np.lib.stride_tricks.sliding_window_view(tokens, h)[: len(idx)]
            xs.append(windows)
            ys.append(idx)
            ws.append(np.full(len(idx), w))
            ps.append(np.arange(len(idx)))
        if not xs:
            e = np.zeros((0, h), dtype=np.int64)
            return e, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws), np.concatenate(ps)

    def _ranks(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Rank of each true next event (1 = most likely); unknown events rank V + 1."""
        assert self.net is not None and self.vocab is not None
        v = len(self.vocab)
        ranks = np.full(len(y), v + 1, dtype=np.int64)
        known = y < v
        self.net.eval()
        with torch.inference_mode():
            for start in range(0, len(y), 8192):
                sl = slice(start, start + 8192)
                logits = self.net(torch.from_numpy(x[sl]).to(self.device))
                yt = torch.from_numpy(np.minimum(y[sl], v - 1)).to(self.device)
                true = logits.gather(1, yt[:, None])
                r = (logits > true).sum(dim=1).cpu().numpy() + 1
                ranks[sl] = np.where(known[sl], r, v + 1)
        return ranks

    def fit(self, train: pd.DataFrame, val: pd.DataFrame, *, progress: bool | EpochCallback | None = None) -> FitReport:
        c = self.config
        t0 = time.perf_counter()
        train, val = as_windows_frame(train), as_windows_frame(val)
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        self.vocab = EventVocabulary.fit(train["event_ids"])
        if len(self.vocab) < 2:
            raise DataError("deeplog needs at least two distinct templates in the training windows")
        xtr, ytr, _, _ = self._pairs(train["event_ids"])
        xva, yva, _, _ = self._pairs(val["event_ids"])
        self.net = _Net(len(self.vocab), c).to(self.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr)
        loss_fn = nn.CrossEntropyLoss()
        report = FitReport(method=self.name, num_train_windows=len(train), num_val_windows=len(val))
        best, best_state, bad = math.inf, None, 0
        known_val = yva < len(self.vocab)
        for epoch in range(c.epochs):
            self.net.train()
            order = rng.permutation(len(ytr))
            total = 0.0
            for start in range(0, len(order), c.batch_size):
                b = order[start:start + c.batch_size]
                xb = torch.from_numpy(xtr[b]).to(self.device)
                yb = torch.from_numpy(ytr[b]).to(self.device)
                opt.zero_grad()
                loss = loss_fn(self.net(xb), yb)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            val_loss = self._val_loss(xva[known_val], yva[known_val], loss_fn)
            entry = {"phase": "train", "epoch": epoch, "train_loss": total / max(len(ytr), 1), "val_loss": val_loss}
            report.history.append(entry)
            if callable(progress):
                progress({k: v for k, v in entry.items() if isinstance(v, int | float)})
            elif progress or (progress is None and c.show_progress):
                print(f"deeplog epoch {epoch}: train {entry['train_loss']:.4f} val {val_loss:.4f}")
            if val_loss < best - 1e-6:
                best, bad, report.best_epoch = val_loss, 0, epoch
                best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            else:
                bad += 1
                if bad >= c.patience:
                    report.stopped_early = epoch < c.epochs - 1
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self._threshold = float(self._choose_k(xva, yva))
        report.threshold = self._threshold
        report.train_time_s = time.perf_counter() - t0
        report.extra = {"vocabulary_size": len(self.vocab), "train_pairs": int(len(ytr)),
                        "val_pairs": int(len(yva)), "k": int(self._threshold), "paper_k": PAPER_K}
        self.fit_report = report
        return report

    def _val_loss(self, x: np.ndarray, y: np.ndarray, loss_fn: nn.Module) -> float:
        assert self.net is not None
        if not len(y):
            return float("nan")
        self.net.eval()
        total = 0.0
        with torch.inference_mode():
            for start in range(0, len(y), 8192):
                xb = torch.from_numpy(x[start:start + 8192]).to(self.device)
                yb = torch.from_numpy(y[start:start + 8192]).to(self.device)
                total += float(loss_fn(self.net(xb), yb)) * len(yb)
        return total / len(y)

    def _choose_k(self, x: np.ndarray, y: np.ndarray) -> int:
        """The smallest k whose top-k misses at most ``val_miss_rate`` of validation next-events."""
        assert self.vocab is not None
        v = len(self.vocab)
        if not len(y):
            return PAPER_K
        ranks = np.sort(np.minimum(self._ranks(x, y), v + 1))
        allowed = int(math.floor(self.config.val_miss_rate * len(ranks)))
        k = int(ranks[len(ranks) - 1 - allowed])  # at most `allowed` ranks exceed k
        return min(max(k, 1), v)

    def _window_ranks(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, y, w, p = self._pairs(frame["event_ids"])
        return self._ranks(x, y), w, p

    def score(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        self._check_fitted()
        frame = as_windows_frame(windows)
        ranks, w, _ = self._window_ranks(frame)
        out = np.zeros(len(frame), dtype=np.float64)
        np.maximum.at(out, w, ranks.astype(np.float64))
        return out

    def explain(self, windows: pd.DataFrame | pa.Table) -> list[WindowExplanation]:
        """Per window, the events that fell outside the top k, worst rank first."""
        self._check_fitted()
        assert self.vocab is not None
        frame = as_windows_frame(windows)
        ranks, w, p = self._window_ranks(frame)
        scores = np.zeros(len(frame))
        np.maximum.at(scores, w, ranks.astype(np.float64))
        v = len(self.vocab)
        out = []
        for i, row in enumerate(frame.itertuples(index=False)):
            sel = np.nonzero((w == i) & (ranks > self._threshold))[0]
            sel = sel[np.argsort(-ranks[sel], kind="stable")]
            lines = window_lines(row, len(row.event_ids))
            ev = [LineEvidence(index=int(p[j]), line=lines[p[j]] if p[j] < len(lines) else "",
                               event_id=int(row.event_ids[p[j]]), probability=float(min(ranks[j], v + 1) / (v + 1)))
                  for j in sel[:10]]
            out.append(WindowExplanation(window_id=str(getattr(row, "window_id", "")), score=float(scores[i]),
                                         lines=ev))
        return out

    def save(self, path: str | Path) -> None:
        self._check_fitted()
        assert self.net is not None and self.vocab is not None
        out = write_artifact_header(path, self.name, self.config)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                  str(out / "model.safetensors"))
        (out / "vocab.json").write_text(json.dumps(self.vocab.to_json()) + "\n")
        state = {"threshold": self._threshold, "paper_k": PAPER_K,
                 "threshold_strategy": f"label-free: smallest top-k missing at most {self.config.val_miss_rate} "
                 "of normal validation next-events",
                 "fit_report": self.fit_report.to_dict() if self.fit_report else None}
        (out / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DeepLog:
        root = Path(path)
        header = read_artifact_header(root, cls.name)
        det = cls(header["config"])
        det.vocab = EventVocabulary.from_json(read_state(root / "vocab.json"), root / "vocab.json")
        state = read_state(root / "state.json")
        if not isinstance(state.get("threshold"), int | float):
            raise DataError(f"{root / 'state.json'} has no numeric 'threshold'")
        net = _Net(len(det.vocab), det.config)
        try:
            net.load_state_dict(load_file(str(root / "model.safetensors")))
        except (OSError, SafetensorError, RuntimeError) as exc:
            raise DataError(f"cannot load {root / 'model.safetensors'}: {exc}") from exc
        det.net = net.to(det.device).eval()
        det._threshold = float(state["threshold"])
        if state.get("fit_report"):
            det.fit_report = FitReport.from_dict(state["fit_report"])
        return det
