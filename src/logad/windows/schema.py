"""The windows table: the one format every method reads.

One row per window (a session, a sliding time window or a fixed-count window)::

    source     string              log source name
    window_id  string              session id, or "<file>#<start>" for windows
    start      timestamp[us]       time of the first line (null when lines carry no time)
    end        timestamp[us]       time of the last line
    event_ids  list<int64>         template id per line, in order (0 = unknown line)
    lines      list<string>        raw lines, in the same order
    label      int8                1 anomalous, 0 normal, null unknown
    input      string              the INPUT argument of ``logad ingest`` the window's
                                   (first) line was read from, as given (null: not known)
    line_files   list<string>      per line: its input file, as the user can find it (the
                                   path given to ingest, or the input folder as given
                                   joined with the path inside it)
    line_numbers list<int64>       per line: its 1-based line number in that file (empty
                                   lines count, as in an editor)
    line_labels  list<int8>        per line: 1 anomalous, 0 normal, null unknown; the whole
                                   list is null where the source labels no lines
    line_times   list<timestamp[us]>  per line: its time (null where the line has none)
    message_offsets list<int32>    per line: where its message (the config's content
                                   field) starts in ``lines[i]``, in characters; 0 where
                                   the header did not match (the whole line is the message)

The last six columns are optional: a table written without them (by hand, or by an
older logad) reads back with nulls there. A line that sits in several windows (sliding
or overlapping fixed windows) appears in each; ``(line_files[i], line_numbers[i])``
names it, and is the key that line-level reports deduplicate on.

Template ids are stable content hashes of the template text (see
:func:`logad.parsing.template_id`), the same across shards, runs and machines.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from logad.errors import DataError

__all__ = ["LINE_COLUMNS", "OPTIONAL_COLUMNS", "WINDOWS_SCHEMA", "read_windows", "validate_windows"]

WINDOWS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("window_id", pa.string()),
        pa.field("start", pa.timestamp("us")),
        pa.field("end", pa.timestamp("us")),
        pa.field("event_ids", pa.list_(pa.int64())),
        pa.field("lines", pa.list_(pa.string())),
        pa.field("label", pa.int8()),
        pa.field("input", pa.string()),
        pa.field("line_files", pa.list_(pa.string())),
        pa.field("line_numbers", pa.list_(pa.int64())),
        pa.field("line_labels", pa.list_(pa.int8())),
        pa.field("line_times", pa.list_(pa.timestamp("us"))),
        pa.field("message_offsets", pa.list_(pa.int32())),
    ]
)
LINE_COLUMNS = ("line_files", "line_numbers", "line_labels", "line_times", "message_offsets")
"""Per-line columns besides ``event_ids`` and ``lines`` (one entry per line of the window)."""
OPTIONAL_COLUMNS = ("input", *LINE_COLUMNS)
"""Columns a windows table may lack; they read back as nulls."""


def validate_windows(table: pa.Table) -> pa.Table:
    """Check that ``table`` has the windows columns; cast it to the exact schema.

    Raises:
        DataError: a column is missing or cannot be cast.
    """
    missing = [n for n in WINDOWS_SCHEMA.names if n not in table.column_names and n not in OPTIONAL_COLUMNS]
    if missing:
        raise DataError(
            f"not a windows table: missing column(s) {missing}; "
            "make one with `logad ingest CONFIG INPUT --output DIR`"
        )
    for name in OPTIONAL_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(WINDOWS_SCHEMA.field(name), pa.nulls(table.num_rows, WINDOWS_SCHEMA.field(name).type))
    try:
        return table.select(WINDOWS_SCHEMA.names).cast(WINDOWS_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"windows table has wrong column types: {exc}") from exc


def read_windows(path: str | Path) -> pd.DataFrame:
    """Read a windows table written by ``logad ingest``.

    Args:
        path: the ingest output directory (with ``windows/``), the ``windows/``
            folder itself, or one Parquet file.

    Returns:
        A DataFrame sorted by (start, window_id) with ``event_ids`` and
        ``lines`` as Python lists, the per-line columns as Python lists (None
        where absent; ``line_times`` as integer microseconds since the epoch) and ``label`` as nullable ``Int8``. Ids of
        fixed-count windows (``FILE#FIRST_LINE``) sort by file, then line
        number, so windows without timestamps keep the order of the log.
    """
    p = Path(path)
    if p.is_dir() and (p / "windows").is_dir():
        p = p / "windows"
    if not p.exists():
        raise DataError(f"no windows table at {path}: run `logad ingest` first")
    files = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
    if not files:
        raise DataError(f"no Parquet files under {p}: run `logad ingest` first")
    table = pa.concat_tables([validate_windows(pq.read_table(f)) for f in files])
    lists = ["event_ids", "lines", *LINE_COLUMNS]
    # the list columns straight to Python lists (through pandas they would be numpy arrays first)
    df = table.drop_columns(lists).to_pandas(types_mapper={pa.int8(): pd.Int8Dtype()}.get)
    for name in lists:
        col = table.column(name)
        if name == "line_times":  # microseconds as ints: datetime objects per line cost 10x
            col = col.cast(pa.list_(pa.int64()))
        df[name] = col.to_pylist()
    df = df[WINDOWS_SCHEMA.names]
    parts = df["window_id"].str.extract(r"^(?P<prefix>.*?)(?:#(?P<line>\d+))?$")
    order = pd.DataFrame({"start": df["start"], "prefix": parts["prefix"],
                          "line": pd.to_numeric(parts["line"]), "window_id": df["window_id"]})
    keys = order.sort_values(["start", "prefix", "line", "window_id"], kind="stable",
                             na_position="first").index
    return df.loc[keys].reset_index(drop=True)
