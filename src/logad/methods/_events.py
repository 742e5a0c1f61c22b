"""Shared pieces of the event-id baselines: a training vocabulary and count vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from logad.errors import DataError

__all__ = ["EventVocabulary", "read_state", "window_lines"]


class EventVocabulary:
    """Template ids seen in training → column 0..n-1; everything else → the unknown column n.

    Id 0 (a line that matched no template at ingest) is always unknown.
    """

    def __init__(self, event_ids: np.ndarray | list[int]) -> None:
        ids = np.unique(np.asarray(event_ids, dtype=np.int64))
        self.ids = ids[ids != 0]
        self._sorted = self.ids  # np.unique sorts

    @classmethod
    def fit(cls, sequences: pd.Series | list) -> EventVocabulary:
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if len(sequences) else []
        return cls(flat)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def unknown(self) -> int:
        """Column index of unknown events."""
        return len(self.ids)

    def index(self, seq: Any) -> np.ndarray:
        """Column index per event (``unknown`` for ids never seen in training)."""
        a = np.asarray(seq, dtype=np.int64)
        if not len(self.ids):
            return np.full(len(a), self.unknown, dtype=np.int64)
        pos = np.searchsorted(self._sorted, a)
        pos = np.minimum(pos, len(self.ids) - 1)
        known = (self._sorted[pos] == a) & (a != 0)
        return np.where(known, pos, self.unknown)

    def counts(self, sequences: pd.Series | list) -> np.ndarray:
        """Event-count matrix, windows × (vocabulary + 1 unknown column), float64."""
        out = np.zeros((len(sequences), len(self.ids) + 1), dtype=np.float64)
        for i, seq in enumerate(sequences):
            idx = self.index(seq)
            if len(idx):
                np.add.at(out[i], idx, 1.0)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"event_ids": [int(x) for x in self.ids]}

    @classmethod
    def from_json(cls, data: dict[str, Any], file: Path) -> EventVocabulary:
        ids = data.get("event_ids") if isinstance(data, dict) else None
        if not isinstance(ids, list):
            raise DataError(f"{file} has no 'event_ids' list")
        return cls(ids)


def read_state(file: Path) -> dict[str, Any]:
    """A JSON object from a model directory, with a clear error when missing or malformed."""
    if not file.is_file():
        raise DataError(f"{file} is missing: the model directory is incomplete")
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {file}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{file} is not a JSON object")
    return data


def window_lines(row: Any, n: int) -> list[str]:
    """The raw lines of a window row, or ``E<id>`` placeholders when the batch has none."""
    lines = getattr(row, "lines", None)
    if lines is None or (isinstance(lines, float) and np.isnan(lines)):
        return [f"E{e}" for e in row.event_ids][:n]
    return list(lines)

