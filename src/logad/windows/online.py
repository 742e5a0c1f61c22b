"""Raw lines → windows in one process, without Ray: what the HTTP service does per request.

It runs the same steps, in the same order, as the ingest pipeline
(:mod:`logad.pipelines.ingest`) for one file: drop a trailing ``\\r`` and skip
blank lines, split the header, mask, match the *frozen* template store (no
mining: a line no template covers gets id 0), find session ids, assign
windows and build window rows. Given the same lines, source config and store,
it yields the same window ids, event ids and line order as ``logad ingest
--templates``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from logad.parsing.template_store import UNKNOWN_ID, TemplateStore, mask_contents
from logad.sources.config import FixedGrouping, SessionGrouping, SourceConfig
from logad.sources.files import trim_lines
from logad.sources.lines import LineSplitter, message_offsets, without_label
from logad.windows.grouping import assign_windows, build_windows, session_ids

__all__ = ["LineStats", "WindowBuilder", "from_lines"]


@dataclass
class LineStats:
    """What happened to the lines of one batch (every line is counted once)."""

    lines: int = 0
    empty_lines: int = 0
    malformed_lines: int = 0
    bad_timestamp_lines: int = 0
    unknown_template_lines: int = 0
    lines_without_window: int = 0
    windows: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class WindowBuilder:
    """Turns batches of raw lines of one source into windows (build once, call often).

    Holds the header splitter and the frozen store, whose match cache then
    warms up across calls. Not thread-safe: use one per thread.
    """

    def __init__(self, config: SourceConfig, store: TemplateStore, *, file_name: str = "request") -> None:
        self.config = config
        self.store = store
        self.file_name = file_name
        self.splitter = LineSplitter(config)

    def __call__(self, lines: Sequence[str] | pa.Array, *, file_name: str | None = None) -> tuple[pd.DataFrame,
                                                                                                  LineStats]:
        """Windows of ``lines`` (a DataFrame with the windows-table columns) and the counts;
        ``file_name``, where given, names the file they came from in place of the builder's."""
        table, stats = self.table(lines, file_name=file_name)
        return _frame(table), stats

    def table(self, lines: Sequence[str] | pa.Array, *, file_name: str | None = None) -> tuple[pa.Table, LineStats]:
        """As :meth:`__call__`, the windows as an Arrow table (no pandas conversion)."""
        name = self.file_name if file_name is None else file_name
        stats = LineStats(lines=len(lines))
        # the ingest reader's rule: drop one trailing "\r", skip lines of only whitespace
        text, keep = trim_lines(lines if isinstance(lines, pa.Array) else pa.array(lines, pa.string()))
        stats.empty_lines = int(len(text) - keep.sum())
        # byte offsets and line numbers as if the batch were one file read by ingest
        lens = pc.binary_length(text).to_numpy(zero_copy_only=False).astype(np.int64) + 1
        offsets = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64) if len(text) else lens
        line_no = np.arange(len(text), dtype=np.int64)
        idx = np.flatnonzero(keep)
        raw = text if len(idx) == len(text) else text.take(pa.array(idx))
        n = len(raw)
        if n == 0:
            return build_windows(pa.table({}), self.config.name), stats

        sl = self.splitter.split(raw)
        text = without_label(raw, sl, self.config)  # a label field is the dataset's, not the log's
        stats.malformed_lines = int((~sl.header_ok).sum())
        stats.bad_timestamp_lines = sl.num_bad_time
        masked = mask_contents(sl.content, self.config.parsing)
        g = self.config.grouping
        rows = {
            "ts": sl.ts,
            "file_idx": pa.array(np.zeros(n, np.int32)),
            "offset": pa.array(offsets[idx], pa.int64()),
            "line_no": pa.array(line_no[idx], pa.int64()),
            "raw": text,
            "line_label": sl.line_label,
            "msg_off": message_offsets(text, sl.content),
        }
        sessions = None
        if isinstance(g, SessionGrouping):
            paths = pa.array([name] * n, pa.string()) if g.id_field == "path" else None
            sessions = session_ids(raw, sl.fields, g, paths)
            grouped = pc.is_valid(sessions)
        elif isinstance(g, FixedGrouping):
            grouped = pa.array(np.ones(n, dtype=bool))
        else:
            grouped = pc.is_valid(sl.ts)
        stats.lines_without_window = n - int(pc.sum(grouped).as_py() or 0)
        event_ids = pa.array(self.store.match(masked), pa.int64())
        table = pa.table({**rows, "event_id": event_ids})
        if sessions is not None:
            table = table.append_column("session", sessions)
        table = table.filter(grouped)
        stats.unknown_template_lines = int(pc.sum(pc.equal(table["event_id"], UNKNOWN_ID)).as_py() or 0)
        sessions = table["session"].combine_chunks() if sessions is not None else None
        cols = ["ts", "file_idx", "offset", "line_no", "event_id", "raw", "line_label", "msg_off"]
        assigned = assign_windows(table.select(cols), g, file_names=[name], sessions=sessions)
        # line_numbers: 1-based positions in the batch as sent (blank lines count), so a
        # window's line i is line line_numbers[i] - 1 of the request
        windows = build_windows(assigned, self.config.name, files=[name])
        stats.windows = windows.num_rows
        return windows, stats


def _frame(windows: pa.Table) -> pd.DataFrame:
    # Column by column: the list columns become Python lists straight from Arrow (through
    # pandas they would be one numpy array per window, then lists of numpy scalars), and
    # one DataFrame construction costs a third of converting the table and re-assigning.
    cols: dict[str, object] = {}
    for name in windows.column_names:
        col = windows.column(name)
        if pa.types.is_list(col.type):
            cols[name] = col.to_pylist()
        elif pa.types.is_int8(col.type):
            cols[name] = col.to_pandas(types_mapper={pa.int8(): pd.Int8Dtype()}.get)
        else:
            cols[name] = col.to_pandas()
    return pd.DataFrame(cols)


def from_lines(
    lines: Sequence[str], config: SourceConfig, store: TemplateStore, *, file_name: str = "request"
) -> tuple[pd.DataFrame, LineStats]:
    """Windows of a batch of raw lines of one source, matched against a frozen store.

    Args:
        lines: raw log lines, without their line breaks.
        config: the source config the store was mined with (``source.json`` of
            an ingest run or a model directory).
        store: the frozen template store.
        file_name: the name fixed windows are numbered under (``NAME#start``).

    Returns:
        The windows (the columns of :data:`logad.windows.WINDOWS_SCHEMA`, one
        row per window, ordered by window id) and per-line counts.
    """
    return WindowBuilder(config, store, file_name=file_name)(lines)
