"""Base of the detectors on event-count vectors (PCA, IsolationForest).

Each window becomes a vector of how often each training template occurs in it,
plus one column for unknown templates. The threshold is label-free: the
``threshold_quantile`` quantile of the normal validation scores. Fitted arrays
are saved as safetensors, the vocabulary and threshold as JSON; never pickle.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

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
    write_artifact_header,
)

WEIGHTS = "model.safetensors"


class CountVectorDetector(Detector):
    """Shared fit/score/explain/save/load around ``_fit_vectors`` and ``_score_vectors``."""

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.vocab: EventVocabulary | None = None
        self.fit_report: FitReport | None = None

    # -- what a subclass provides --------------------------------------------------------------

    @abstractmethod
    def _fit_vectors(self, x: np.ndarray) -> dict[str, Any]:
        """Fit on training count vectors; returns figures for the fit report."""

    @abstractmethod
    def _score_vectors(self, x: np.ndarray) -> np.ndarray:
        """Scores (higher = more anomalous) for count vectors."""

    @abstractmethod
    def _contributions(self, x: np.ndarray) -> np.ndarray:
        """Per window and column, how much that template drove the score (≥ 0)."""

    @abstractmethod
    def _tensors(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _from_tensors(self, tensors: dict[str, np.ndarray]) -> None: ...

    # -- the Detector contract -----------------------------------------------------------------

    def fit(self, train: pd.DataFrame, val: pd.DataFrame, *, progress: bool | EpochCallback | None = None) -> FitReport:
        t0 = time.perf_counter()
        train, val = as_windows_frame(train), as_windows_frame(val)
        if not len(train):
            raise DataError(f"{self.name} needs training windows; got none")
        self.vocab = EventVocabulary.fit(train["event_ids"])
        extra = self._fit_vectors(self.vocab.counts(train["event_ids"]))
        val_scores = self._score_vectors(self.vocab.counts(val["event_ids"])) if len(val) else np.zeros(1)
        self._threshold = float(np.quantile(val_scores, self.config.threshold_quantile))
        entry = {"epoch": 0, "val_mean_score": float(np.mean(val_scores))}
        if callable(progress):
            progress(dict(entry))
        self.fit_report = FitReport(
            method=self.name, history=[entry], best_epoch=0, train_time_s=time.perf_counter() - t0,
            num_train_windows=len(train), num_val_windows=len(val), threshold=self._threshold,
            extra={"vocabulary_size": len(self.vocab), **extra},
        )
        return self.fit_report

    def score(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        self._check_fitted()
        assert self.vocab is not None
        frame = as_windows_frame(windows)
        return np.asarray(self._score_vectors(self.vocab.counts(frame["event_ids"])), dtype=np.float64)

    def explain(self, windows: pd.DataFrame | pa.Table, top: int = 5) -> list[WindowExplanation]:
        """Per window, the lines of the templates that contribute most to its score."""
        self._check_fitted()
        assert self.vocab is not None
        frame = as_windows_frame(windows)
        x = self.vocab.counts(frame["event_ids"])
        scores, contrib = self._score_vectors(x), self._contributions(x)
        out = []
        for row, s, c in zip(frame.itertuples(index=False), scores, contrib, strict=True):
            idx = self.vocab.index(row.event_ids)
            lines = window_lines(row, len(idx))
            total = float(c.sum()) or 1.0
            order = sorted(range(len(idx)), key=lambda i: -c[idx[i]])
            seen: set[int] = set()
            ev = []
            for i in order:
                col = int(idx[i])
                if col in seen or c[col] <= 0:
                    continue
                seen.add(col)
                ev.append(LineEvidence(index=i, line=lines[i] if i < len(lines) else "",
                                       event_id=int(row.event_ids[i]), probability=float(c[col] / total)))
                if len(ev) >= top:
                    break
            out.append(WindowExplanation(window_id=str(getattr(row, "window_id", "")), score=float(s), lines=ev))
        return out

    def save(self, path: str | Path) -> None:
        self._check_fitted()
        assert self.vocab is not None
        out = write_artifact_header(path, self.name, self.config)
        save_file({k: np.ascontiguousarray(v) for k, v in self._tensors().items()}, str(out / WEIGHTS))
        (out / "vocab.json").write_text(json.dumps(self.vocab.to_json()) + "\n")
        state = {"threshold": self._threshold,
                 "threshold_strategy": f"label-free: {self.config.threshold_quantile} quantile of normal "
                 "validation scores",
                 "fit_report": self.fit_report.to_dict() if self.fit_report else None}
        (out / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CountVectorDetector:
        root = Path(path)
        header = read_artifact_header(root, cls.name)
        det = cls(header["config"])
        det.vocab = EventVocabulary.from_json(read_state(root / "vocab.json"), root / "vocab.json")
        state = read_state(root / "state.json")
        if not isinstance(state.get("threshold"), int | float):
            raise DataError(f"{root / 'state.json'} has no numeric 'threshold'")
        try:
            tensors = load_file(str(root / WEIGHTS))
        except (OSError, SafetensorError) as exc:
            raise DataError(f"cannot read {root / WEIGHTS}: {exc}") from exc
        det._from_tensors(tensors)
        det._threshold = float(state["threshold"])
        if state.get("fit_report"):
            det.fit_report = FitReport.from_dict(state["fit_report"])
        return det
