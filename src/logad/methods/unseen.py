"""The unseen-template rule: a window is as anomalous as its lines unknown to training.

A strong baseline on public data where many anomalies log a template that never
appears in normal operation (HDFS). A learned detector has to show what it adds
beyond it.

Score: the number of lines (or, with ``share=True``, the share of lines) whose
template id never occurs in the training windows; id 0 (no template matched at
ingest) counts as unseen. Threshold (label-free): the ``threshold_quantile``
quantile of the normal validation scores, 1.0 (the maximum) by default, so with
clean validation data any unseen line flags a window.

It scores lines too, so every line-level table has a floor beside it: a line
scores 1 when its template is unseen, 0 otherwise, and the line threshold is
0.5 (the rule itself: no labels involved). The window score stays the count
(or share) of such lines.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

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

__all__ = ["Unseen", "UnseenConfig"]

_LINE_THRESHOLD = 0.5  # a line scores 1 (unseen template) or 0: the rule, not a tuned value


class UnseenConfig(BaseModel):
    """Settings of :class:`Unseen`."""

    model_config = ConfigDict(extra="forbid")

    share: bool = Field(False, description="score = share of unseen lines instead of their count")
    threshold_quantile: float = Field(
        1.0, gt=0.0, le=1.0, description="threshold = this quantile of normal validation scores")


@register_method
class Unseen(Detector):
    """Flags windows with lines whose template never appeared in training."""

    name = "unseen"
    supervised = False
    line_level = True
    config_class = UnseenConfig

    def __init__(self, config: UnseenConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.vocab: EventVocabulary | None = None
        self.fit_report: FitReport | None = None

    def fit(self, train: pd.DataFrame, val: pd.DataFrame, *, progress: bool | EpochCallback | None = None) -> FitReport:
        t0 = time.perf_counter()
        train, val = as_windows_frame(train), as_windows_frame(val)
        self.vocab = EventVocabulary.fit(train["event_ids"])
        self._threshold = 0.0  # lets score() run; replaced below
        val_scores = self.score(val) if len(val) else np.zeros(1)
        self._threshold = float(np.quantile(val_scores, self.config.threshold_quantile))
        self._line_threshold = _LINE_THRESHOLD
        report = FitReport(
            method=self.name, history=[{"epoch": 0, "val_mean_score": float(val_scores.mean())}], best_epoch=0,
            train_time_s=time.perf_counter() - t0, num_train_windows=len(train), num_val_windows=len(val),
            threshold=self._threshold, extra={"vocabulary_size": len(self.vocab)},
        )
        if callable(progress):
            progress(dict(report.history[0]))
        self.fit_report = report
        return report

    def _unseen_masks(self, windows: pd.DataFrame) -> list[np.ndarray]:
        assert self.vocab is not None
        return [self.vocab.index(seq) == self.vocab.unknown for seq in windows["event_ids"]]

    def score(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        self._check_fitted()
        frame = as_windows_frame(windows)
        masks = self._unseen_masks(frame)
        counts = np.array([m.sum() for m in masks], dtype=np.float64)
        if self.config.share:
            sizes = np.array([max(len(m), 1) for m in masks], dtype=np.float64)
            return counts / sizes
        return counts

    def score_lines(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        """1.0 for each line whose template never occurred in training, else 0.0."""
        self._check_fitted()
        masks = self._unseen_masks(as_windows_frame(windows))
        return np.concatenate(masks).astype(np.float64) if masks else np.zeros(0)

    def explain(self, windows: pd.DataFrame | pa.Table) -> list[WindowExplanation]:
        self._check_fitted()
        frame = as_windows_frame(windows)
        scores = self.score(frame)
        out = []
        for row, mask, s in zip(frame.itertuples(index=False), self._unseen_masks(frame), scores, strict=True):
            lines = window_lines(row, len(mask))
            ids = list(row.event_ids)
            ev = [LineEvidence(index=int(i), line=lines[i] if i < len(lines) else "", event_id=int(ids[i]),
                               probability=1.0) for i in np.nonzero(mask)[0]]
            out.append(WindowExplanation(window_id=str(getattr(row, "window_id", "")), score=float(s), lines=ev))
        return out

    def save(self, path: str | Path) -> None:
        self._check_fitted()
        assert self.vocab is not None
        out = write_artifact_header(path, self.name, self.config)
        (out / "vocab.json").write_text(json.dumps(self.vocab.to_json()) + "\n")
        state = {"threshold": self._threshold, "line_threshold": self.line_threshold,
                 "threshold_strategy": f"label-free: {self.config.threshold_quantile} quantile of normal validation scores",
                 "fit_report": self.fit_report.to_dict() if self.fit_report else None}
        (out / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Unseen:
        root = Path(path)
        header = read_artifact_header(root, cls.name)
        det = cls(header["config"])
        det.vocab = EventVocabulary.from_json(read_state(root / "vocab.json"), root / "vocab.json")
        state = read_state(root / "state.json")
        if not isinstance(state.get("threshold"), int | float):
            raise DataError(f"{root / 'state.json'} has no numeric 'threshold'")
        det._threshold = float(state["threshold"])
        det._line_threshold = float(state.get("line_threshold", _LINE_THRESHOLD))
        if state.get("fit_report"):
            det.fit_report = FitReport.from_dict(state["fit_report"])
        return det
