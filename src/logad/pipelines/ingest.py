"""The Ray Data ingest pipeline: read → split → mask → mine → match → group → Parquet.

The raw input is read and parsed once, streaming, in two stages with the
mining between them:

1. **Parse and partition**: read the shards, split headers, mask variables,
   find session ids, assign windows, and write the lines split by window into
   shuffle partitions next to the output. Ray Data tasks (one per CPU at a
   time) read and parse their shard groups themselves: no lines in the
   object store, and the task workers, each with its parser built once, go
   on to run stage 2 rather than new processes starting and importing after
   stage 1. Plain files are cut into byte ranges; where there are still
   fewer shards than CPUs (one large compressed file, say), several tasks
   share each stream: each decompresses all of it and parses every k-th
   segment, so every CPU parses (see :func:`logad.sources.files.share_streams`).
   A parser holds up to 128 MiB of parsed lines, then writes them, sorted by a
   stable hash of their window id, as one Parquet file with one row group per
   partition.
2. **Mine**: without a frozen store, each parse task also returned the
   distinct masked messages of its lines (with first position and count); the
   driver merges them and feeds them to Drain3 in input order, then freezes
   the store. That is exactly what Drain3 would have built from the whole
   stream, at the cost of one pass over distinct messages. With a frozen store
   (``--templates``), the parsers load it once each and match every line
   right there.
3. **Match and group** (one task per partition): its row group of every
   shuffle file holds every line of its windows; template ids for them (each
   distinct masked message matched once, through its Parquet dictionary; the
   store cached once per worker process), then a vectorised Arrow group-by
   builds the windows and writes them as one Parquet file.

The number of partitions grows with the input (about 64 MiB of raw log per
partition), so no task ever holds more than 128 MiB of parsed lines or one
partition: memory stays flat as the input grows. The shuffle lives on the
output's filesystem, so on a multi-node cluster the output must be shared
storage (object storage or a shared mount), as it must be for the windows
themselves. Every task returns its counts rather than sending them, and names
its files after its input (shard group or partition): Ray keeps the result of
a task's successful attempt only, so a task retried after a node failure
overwrites its own files and is counted once.

Nothing is dropped silently: every read, malformed, unknown or ungrouped line
is counted in the run summary.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from logad.errors import DataError
from logad.parsing.template_store import UNKNOWN_ID, TemplateMiner, TemplateStore, mask_contents
from logad.ray_env import init_ray, prepare_ray_env
from logad.sources.config import FixedGrouping, ParsingConfig, SessionGrouping, SourceConfig
from logad.sources.files import (
    DEFAULT_MAX_LINE_BYTES,
    SEGMENT_BYTES,
    InputFile,
    Shard,
    find_inputs,
    plan_shards,
    read_shard,
    resolve_fs,
    share_streams,
)
from logad.sources.keywords import KeywordLabeller
from logad.sources.lines import LineSplitter, message_offsets, without_label
from logad.windows.grouping import assign_windows, build_windows, session_ids
from logad.windows.schema import WINDOWS_SCHEMA

prepare_ray_env()
import ray  # noqa: E402

__all__ = ["IngestSummary", "load_label_file", "run_ingest"]

_KEY_SHIFT = 40  # (file_idx << 40) | byte offset orders lines across files


@dataclass
class IngestSummary:
    source: str
    output: str
    files: int = 0
    files_skipped: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    empty_lines: int = 0
    lines_with_replaced_bytes: int = 0
    lines_with_nul_bytes: int = 0
    lines_too_long: int = 0
    lines_parsed: int = 0
    lines_malformed: int = 0
    lines_bad_timestamp: int = 0
    lines_unknown_template: int = 0
    lines_without_window: int = 0
    lines_labelled: int = 0
    lines_labelled_anomalous: int = 0
    windows: int = 0
    windows_anomalous: int = 0
    windows_normal: int = 0
    windows_unlabelled: int = 0
    templates: int = 0
    templates_mined: bool = True
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    line_problems: list[dict] = field(default_factory=list)  # per (file, kind): count, first lines
    nodes: dict[str, list[str]] = field(default_factory=dict)  # stage → ids of the Ray nodes that ran it
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines_per_s(self) -> float:
        total = self.seconds.get("total", 0.0)
        return self.lines_read / total if total else 0.0


class _Tally:
    """A run's counts, read errors and nodes, merged in the driver from what the tasks
    return.

    Tasks return their counts instead of sending them as they go: Ray keeps the
    result of a task's successful attempt only, so a task re-run after a failure
    is counted once, and no bookkeeping actor (a worker process costing about
    1.5 s of CPU to start on 2 cores, and a round trip per batch) is needed.
    Each result also says which stage ran on which node, so a run's summary
    lists the Ray nodes that did the work (how a multi-node run is seen to spread).
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.errors: list[dict] = []
        self.nodes: dict[str, set[str]] = {}
        self.warnings: list[dict] = []
        self.line_problems: list[dict] = []  # as read (0-based, range-relative line numbers)

    def add(self, counts: dict[str, int], errors: list[dict] | None = None,
            where: list[tuple[str, str]] | None = None) -> None:
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + int(v)
        self.errors.extend(errors or [])
        for stage, node in where or []:
            self.nodes.setdefault(stage, set()).add(node)

    def get(self) -> tuple[dict[str, int], list[dict], dict[str, list[str]]]:
        return dict(self.counts), list(self.errors), {k: sorted(v) for k, v in self.nodes.items()}


def _where(stage: str) -> tuple[str, str]:
    """(stage, id of the Ray node this task runs on), for the run summary."""
    return stage, ray.get_runtime_context().get_node_id()


def _pack(shards: list[Shard], parallelism: int) -> list[list[Shard]]:
    """Group small shards (many small files) so one parse task reads several.

    Aims at ``parallelism`` tasks at least, and never packs more than about
    16 MiB into one task, so a folder of thousands of small logs costs tens
    of tasks, not thousands.
    """
    total = sum(s.size for s in shards)
    target = max(1, min(16 << 20, total // max(1, parallelism)))
    groups: list[list[Shard]] = []
    cur: list[Shard] = []
    cur_size = 0
    for s in shards:
        size = s.size
        if cur and cur_size + size > target:
            groups.append(cur)
            cur, cur_size = [], 0
        cur.append(s)
        cur_size += size
    if cur:
        groups.append(cur)
    return groups


def _read_counted(shards: list[Shard], encoding: str, batch_lines: int, tally: _Tally,
                  segment_bytes: int = SEGMENT_BYTES,
                  ranges: list[tuple[int, int, int]] | None = None,
                  max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[pa.Table]:
    """Batches of lines of ``shards``, each batch's read counts, errors, warnings and line
    problems added to ``tally``; for each byte range of a plain file, (file index, start,
    lines in it) goes to ``ranges`` (its lines are numbered from its start until the
    driver adds the lines before it)."""
    for shard in shards:
        lines = 0
        for table, stats in read_shard(shard, encoding=encoding, batch_lines=batch_lines,
                                       segment_bytes=segment_bytes, max_line_bytes=max_line_bytes):
            d = stats.to_dict()
            errors = d.pop("errors")
            tally.warnings += d.pop("warnings")
            tally.line_problems += d.pop("line_problems")
            lines += d["lines_read"]
            tally.add(d, errors)
            yield table
        if ranges is not None and shard.parts == 1 and not shard.whole:
            ranges.append((shard.file.index, shard.start, lines))


def line_bases(ranges: list[tuple[int, int, int]]) -> dict[int, tuple[list[int], list[int]]]:
    """Byte ranges' (file index, start, lines) → per file, the ranges' starts and the
    number of lines before each (what turns a range's own line numbers into the file's)."""
    out: dict[int, tuple[list[int], list[int]]] = {}
    by_file: dict[int, list[tuple[int, int]]] = {}
    for f, start, n in ranges:
        by_file.setdefault(int(f), []).append((int(start), int(n)))
    for f, rs in by_file.items():
        rs.sort()
        starts = [a for a, _ in rs]
        before = np.concatenate(([0], np.cumsum([n for _, n in rs])[:-1])).astype(np.int64).tolist()
        out[f] = (starts, before)
    return out


def _file_line_numbers(rows: pa.Table, bases: dict[int, tuple[list[int], list[int]]]) -> pa.Table:
    """``line_no`` made the line's number in its file, for lines read in byte ranges."""
    if not bases or not rows.num_rows:
        return rows
    fidx = rows["file_idx"].to_numpy().astype(np.int64)
    offs = rows["offset"].to_numpy()
    no = rows["line_no"].to_numpy().astype(np.int64, copy=True)
    for f, (starts, before) in bases.items():
        sel = np.flatnonzero(fidx == f)
        if len(sel):
            k = np.searchsorted(np.asarray(starts, np.int64), offs[sel], side="right") - 1
            no[sel] += np.asarray(before, np.int64)[np.maximum(k, 0)]
    return rows.set_column(rows.schema.get_field_index("line_no"), "line_no", pa.array(no, pa.int64()))


def _line_problems(found: list[dict], files: list[InputFile],
                   bases: dict[int, tuple[list[int], list[int]]]) -> list[dict]:
    """Line problems as read (per shard) → one entry per (file, kind): the count, and the
    first lines' 1-based numbers in their file and byte offsets, in file order."""
    merged: dict[tuple[int, str], list] = {}
    for p in found:
        f = int(p["file_idx"])
        offs = np.asarray(p["offsets"], np.int64)
        nos = np.asarray(p["line_nos"], np.int64)
        if f in bases and len(offs):
            starts, before = bases[f]
            k = np.searchsorted(np.asarray(starts, np.int64), offs, side="right") - 1
            nos = nos + np.asarray(before, np.int64)[np.maximum(k, 0)]
        rec = merged.setdefault((f, p["kind"]), [0, []])
        rec[0] += int(p["count"])
        rec[1] += list(zip(offs.tolist(), (nos + 1).tolist(), strict=True))
    out = []
    for (f, kind), (count, where) in sorted(merged.items()):
        where = sorted(where)[:10]
        out.append({"file": files[f].shown, "kind": kind, "count": count,
                    "lines": [n for _, n in where], "offsets": [o for o, _ in where]})
    return out


def _raw_bytes(shards: list[Shard]) -> int:
    """Raw log bytes of ``shards`` (a guess for compressed ones: see Shard.raw_size)."""
    return sum(s.raw_size for s in shards)


class _Collector:
    """Gathers the distinct masked messages of the mining pass, with first position and
    count, and mines them once stage 1 is over (Drain3 is stateful and not safe to
    share). Each parser keeps one for its shard groups; the driver merges theirs."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}
        self.count: dict[str, int] = {}

    def collect(self, masked: list[str], first: list[int], count: list[int]) -> None:
        f, c = self.first, self.count
        for m, k, n in zip(masked, first, count, strict=True):
            if m in f:
                c[m] += n
                if k < f[m]:
                    f[m] = k
            else:
                f[m], c[m] = k, n

    def ordered(self) -> tuple[list[str], list[int]]:
        """Distinct messages in input order (the order Drain3 would have seen them)."""
        ms = sorted(self.first, key=self.first.__getitem__)
        return ms, [self.count[m] for m in ms]

    def mine(self, parsing: ParsingConfig) -> TemplateStore:
        """Feed the distinct messages to Drain3 in input order; the frozen store."""
        miner = TemplateMiner(parsing)
        miner.add(*self.ordered())
        return miner.freeze()


# The shuffle files are written once and read once: LZ4 and no dictionary pages halve
# Parquet's write + read time against its defaults (snappy with dictionaries), and still
# shrink the files about 6x for shared storage. The masked messages keep their
# dictionary: stage 2 reads it back as is and matches each distinct message once.
_SHUFFLE_PARQUET = {"compression": "lz4", "use_dictionary": ["masked"]}
# Parsed lines (in memory) a parser holds before it writes them as one shuffle file.
_SHUFFLE_FILE_BYTES = 128 << 20


# What a parse task returns per shard group: where its lines went in the shuffle, its
# counts and read errors, and (when mining) its distinct masked messages.
_PARSED_SCHEMA = pa.schema([
    pa.field("pieces", pa.list_(pa.struct([("partition", pa.int64()), ("file", pa.string()),
                                           ("row_group", pa.int64())]))),
    pa.field("counts", pa.string()),
    pa.field("errors", pa.string()),
    pa.field("problems", pa.string()),  # JSON: {"warnings": [...], "line_problems": [...]} (see _Tally)
    pa.field("node", pa.string()),
    pa.field("messages", pa.list_(pa.string())),
    pa.field("first", pa.list_(pa.int64())),
    pa.field("count", pa.list_(pa.int64())),
    pa.field("ranges", pa.list_(pa.list_(pa.int64()))),  # byte ranges read: [file index, start, lines]
])


class _Parser:
    """Stage 1: read shard groups, split headers, mask, find session ids, assign windows,
    and write the lines split by window into shuffle partitions.

    One per worker process (see :func:`_read_parse`); its input rows name shard
    groups (see :func:`_pack`), which it reads itself, so the lines never pass
    through the object store. With a frozen ``store`` the lines are matched
    here (the store is loaded once per parser). Without one, the masked message
    goes into the shuffle for stage 2 to match, and the distinct messages (with
    first position and count) are returned for the driver to mine, with the
    counts: one output row per shard group.
    """

    def __init__(self, config: SourceConfig, store: dict | None, file_uris: list[str], file_names: list[str],
                 shuffle: str, parts: int, groups: list[list[Shard]], encoding: str, batch_lines: int,
                 file_bytes: int = _SHUFFLE_FILE_BYTES, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.config = config
        self.splitter = LineSplitter(config)
        self.keywords = KeywordLabeller(config, file_uris) if config.labels.kind == "keywords" else None
        self.store = TemplateStore.from_dict(store) if store is not None else None
        self.file_uris = pa.array(file_uris, pa.string())
        self.file_names = file_names
        self.shuffle, self.parts = shuffle, parts
        self.groups, self.encoding, self.batch_lines = groups, encoding, batch_lines
        self.file_bytes, self.segment_bytes = file_bytes, segment_bytes

    def _parse(self, batch: pa.Table, tally: _Tally, messages: _Collector) -> pa.Table:
        """Parse one batch of read lines: the rows to shuffle (lines that belong to a
        window); its counts go to ``tally``, its distinct messages to ``messages``."""
        raw = batch["raw"].combine_chunks()
        sl = self.splitter.split(raw)
        masked = mask_contents(sl.content, self.config.parsing)
        g = self.config.grouping
        line_label = sl.line_label
        if self.keywords is not None:
            line_label = self.keywords(sl.content, batch["file_idx"].combine_chunks())
        text = without_label(raw, sl, self.config)  # a label field is the dataset's, not the log's
        lines = {
            "ts": sl.ts, "file_idx": batch["file_idx"], "offset": batch["offset"],
            "line_no": batch["line_no"], "raw": text, "line_label": line_label,
            "msg_off": message_offsets(text, sl.content),
        }
        if isinstance(g, SessionGrouping):
            paths = self.file_uris.take(batch["file_idx"].combine_chunks()) if g.id_field == "path" else None
            lines["session"] = session_ids(raw, sl.fields, g, paths)
            grouped = pc.is_valid(lines["session"])
        elif isinstance(g, FixedGrouping):
            grouped = pa.array(np.ones(len(raw), dtype=bool))
        else:
            grouped = pc.is_valid(sl.ts)
        counts = {
            "lines_parsed": len(raw),
            "lines_malformed": int((~sl.header_ok).sum()),
            "lines_bad_timestamp": sl.num_bad_time,
            "lines_without_window": len(raw) - int(pc.sum(grouped).as_py() or 0),
            "lines_labelled": len(raw) - line_label.null_count,
            "lines_labelled_anomalous": int(pc.sum(line_label).as_py() or 0),
        }
        if self.store is None:
            key = pc.add(pc.shift_left(batch["file_idx"].cast(pa.int64()), pa.scalar(_KEY_SHIFT, pa.int64())),
                         batch["offset"])
            u = pa.table({"m": masked, "k": key}).group_by("m", use_threads=False).aggregate(
                [("k", "min"), ("k", "count")]
            )
            messages.collect(u["m"].to_pylist(), u["k_min"].to_pylist(), u["k_count"].to_pylist())
            lines["masked"] = masked
            rows = pa.table(lines).filter(grouped)
        else:
            lines["event_id"] = pa.array(self.store.match(masked), pa.int64())
            rows = pa.table(lines).filter(grouped)
            counts["lines_unknown_template"] = int(pc.sum(pc.equal(rows["event_id"], UNKNOWN_ID)).as_py() or 0)
        tally.add(counts)
        return rows

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = [self._parse_group(g) for g in batch["group"].to_pylist()]
        return pa.Table.from_pylist(out, schema=_PARSED_SCHEMA)

    def _parse_group(self, g: int) -> dict:
        """Read and parse shard group ``g``; what it returns is one row of _PARSED_SCHEMA."""
        tally, messages = _Tally(), _Collector()
        pieces: list[tuple[int, str, int]] = []  # (partition, file, row group)
        # A parser holds up to ``file_bytes`` of parsed lines, then writes them as one
        # shuffle file (see _write_partitioned): a group makes a few large files, and no
        # task ever holds more than one, however large the group.
        held: list[pa.Table] = []
        ranges: list[tuple[int, int, int]] = []
        size = n = 0
        for table in _read_counted(self.groups[g], self.encoding, self.batch_lines, tally, self.segment_bytes,
                                   ranges, self.config.max_line_bytes):
            rows = self._parse(table, tally, messages)
            if rows.num_rows:
                held.append(rows)
                size += rows.nbytes
            if held and size >= self.file_bytes:
                pieces += self._write_partitioned(held, f"group-{g:06d}-{n:04d}.parquet")
                held, size, n = [], 0, n + 1
        if held:
            pieces += self._write_partitioned(held, f"group-{g:06d}-{n:04d}.parquet")
        counts, errors, _ = tally.get()
        masked, count = messages.ordered()
        return {"pieces": [dict(zip(("partition", "file", "row_group"), p, strict=True)) for p in pieces],
                "counts": json.dumps(counts), "errors": json.dumps(errors), "node": _where("parse")[1],
                "problems": json.dumps({"warnings": tally.warnings, "line_problems": tally.line_problems}),
                "messages": masked, "first": [messages.first[m] for m in masked], "count": count,
                "ranges": [list(r) for r in ranges]}

    def _write_partitioned(self, held: list[pa.Table], name: str) -> list[tuple[int, str, int]]:
        """Assign windows to the held lines and write them, sorted by a stable hash of
        the window id, as one Parquet file with one row group per partition; named
        after the shard group, so a re-run task overwrites its own files."""
        rows = pa.concat_tables([t.cast(held[0].schema) for t in held]) if len(held) > 1 else held[0]
        held.clear()
        sessions = rows["session"].combine_chunks() if "session" in rows.column_names else None
        keep = [c for c in ("ts", "file_idx", "offset", "line_no", "event_id", "masked", "raw", "line_label",
                            "msg_off")
                if c in rows.column_names]
        out = assign_windows(rows.select(keep), self.config.grouping, file_names=self.file_names,
                             sessions=sessions, first_column="first")
        del rows
        return _write_partitions(out, self.parts, _join(self.shuffle, name))


def _write_partitions(rows: pa.Table, parts: int, target: str) -> list[tuple[int, str, int]]:
    """``rows`` (with ``window_id``) sorted by shuffle partition into one file at ``target``,
    one row group per partition: (partition, file, row group) of each.

    One file per call, not one per (call, partition): the file count grows with the
    input, not with its square.
    """
    if not rows.num_rows:
        return []
    part = _partition_of(rows["window_id"].combine_chunks(), parts)
    order = np.argsort(part, kind="stable")
    rows, part = rows.take(pa.array(order)), part[order]
    bounds = np.searchsorted(part, np.arange(parts + 1))
    fs, path = resolve_fs(target)
    pieces: list[tuple[int, str, int]] = []
    with pq.ParquetWriter(path, rows.schema, filesystem=fs, **_SHUFFLE_PARQUET) as writer:
        for k in range(parts):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            if hi > lo:
                writer.write_table(rows.slice(lo, hi - lo), row_group_size=hi - lo)
                pieces.append((k, target, len(pieces)))
    del rows
    pa.default_memory_pool().release_unused()  # worker processes are reused: hand the pages back
    return pieces


_PARSERS: dict[str, _Parser] = {}


def _read_parse(batch: pa.Table, *, run: str, **kwargs: Any) -> pa.Table:
    """Stage 1 as a Ray Data task: this process's parser for the run (built on its first
    batch, so the store and splitter load once per worker process) reads and parses the
    shard groups the batch names."""
    parser = _PARSERS.get(run)
    if parser is None:
        _PARSERS.clear()  # a worker process serves one run at a time
        parser = _PARSERS[run] = _Parser(**kwargs)
    return parser(batch)


_STORE_CACHE: dict[str, TemplateStore] = {}
_LABEL_CACHE: dict[str, dict] = {}
_FILES_CACHE: dict[str, dict] = {}
# Raw log bytes per shuffle partition: what one group task holds at once. The number
# of partitions grows with the input, so a task's memory does not.
_PARTITION_BYTES = 64 << 20


def _cached(cache: dict, ref_box: list, make: Callable = lambda v: v) -> Any:
    """``make`` of the value behind ``ref_box[0]`` (an ObjectRef), built once per worker
    process, not once per task."""
    key = ref_box[0].hex()
    if key not in cache:
        cache.clear()
        cache[key] = make(ray.get(ref_box[0]))
    return cache[key]


def _partition_of(window_ids: pa.Array, parts: int) -> np.ndarray:
    """Shuffle partition of each window id: a stable hash, the same in every process."""
    import pandas as pd

    values = np.asarray(window_ids.to_pylist(), dtype=object)
    return (pd.util.hash_array(values) % np.uint64(parts)).astype(np.int64)


@ray.remote(num_cpus=1)
def _group_partition(pieces: list[tuple[str, int]], out_file: str, source: str, store_box: list | None,
                     label_box: list | None, files_box: list) -> dict:
    """Stage 2, one task per shuffle partition: its row group of every shuffle file,
    which together hold every line of its windows, matched to templates (unless the
    parsers did: then ``store_box`` is None), grouped and written. Returns its counts
    rather than sending them, so a retried task is counted once."""
    fs, out_path = resolve_fs(out_file)
    # the masked messages, there when the parsers did not match, come back dictionary-encoded
    as_dict = ["masked"] if store_box is not None else None
    tables = [pq.ParquetFile(resolve_fs(uri)[1], filesystem=fs, read_dictionary=as_dict).read_row_group(group)
              for uri, group in pieces]
    rows = pa.concat_tables(tables)
    del tables
    counts: dict[str, int] = {}
    if store_box is not None:
        store = _cached(_STORE_CACHE, store_box, TemplateStore.from_dict)
        ids = store.match(rows["masked"])  # dictionary-encoded: each distinct message matched once
        rows = rows.drop_columns(["masked"]).append_column("event_id", pa.array(ids, pa.int64()))
        # a line in several (sliding or fixed) windows is counted once: in its first one
        first = rows["first"].to_numpy(zero_copy_only=False)
        counts["lines_unknown_template"] = int(((ids == UNKNOWN_ID) & first).sum())
    rows = rows.drop_columns(["first"])
    labels = _cached(_LABEL_CACHE, label_box) if label_box else None
    files = _cached(_FILES_CACHE, files_box)  # names, inputs and byte-range line bases of the input files
    rows = _file_line_numbers(rows, {int(k): v for k, v in files["bases"].items()})
    w = build_windows(rows, source, labels, files=files["names"], inputs=files["inputs"])  # type: ignore[arg-type]
    del rows
    pq.write_table(w, out_path, filesystem=fs)
    lab = w["label"]
    anomalous = int(pc.sum(pc.equal(lab, 1)).as_py() or 0)
    normal = int(pc.sum(pc.equal(lab, 0)).as_py() or 0)
    num_windows = w.num_rows
    del w, lab
    pa.default_memory_pool().release_unused()
    counts.update({"windows": num_windows, "windows_anomalous": anomalous, "windows_normal": normal,
                   "windows_unlabelled": num_windows - anomalous - normal})
    return {"counts": counts, "where": _where("group")}


def load_label_file(path: str, config: SourceConfig) -> dict[str, int]:
    """Read a label CSV (id column, label column) into window id → 0/1."""
    import pyarrow.csv as pacsv

    fs, p = resolve_fs(path)
    try:
        with fs.open_input_stream(p) as fh:
            table = pacsv.read_csv(fh)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"cannot read label file {path}: {exc}") from exc
    lc = config.labels
    for col in (lc.id_column, lc.label_column):
        if col not in table.column_names:
            raise DataError(
                f"label file {path} has no column {col!r} (columns: {table.column_names}); "
                "set labels.id_column / labels.label_column in the source config"
            )
    ids = table[lc.id_column].cast(pa.string()).to_pylist()
    labs = table[lc.label_column].cast(pa.string()).to_pylist()
    bad = set(lc.anomaly_values)
    return {i: int(v in bad) for i, v in zip(ids, labs, strict=True)}


def _write_text(uri: str, text: str) -> None:
    fs, p = resolve_fs(uri)
    if isinstance(fs, pa.fs.LocalFileSystem):
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    with fs.open_output_stream(p) as fh:
        fh.write(text.encode("utf-8"))


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def run_ingest(
    config: SourceConfig,
    inputs: list[str],
    output: str,
    *,
    labels: str | None = None,
    templates: str | None = None,
    shard_bytes: int = 64 << 20,
    batch_lines: int = 65536,
    segment_bytes: int = SEGMENT_BYTES,
    num_partitions: int | None = None,
    shuffle_file_bytes: int = _SHUFFLE_FILE_BYTES,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> IngestSummary:
    """Turn raw logs into a windows table under ``output``.

    Writes ``output/windows/*.parquet``, ``output/templates.json`` (the frozen
    store used), ``output/source.json`` (the config used) and
    ``output/summary.json`` (what was read, parsed, skipped and made).

    Args:
        config: the source config.
        inputs: files, folders or URIs (plain, .gz, .zst).
        output: a local folder or a pyarrow filesystem URI (shared storage on a
            multi-node cluster: workers write there).
        labels: a label file overriding the config's.
        templates: a frozen template store (templates.json) to match against
            instead of mining one.
        shard_bytes: byte range per shard of a plain file.
        batch_lines: lines per read batch.
        segment_bytes: where fewer shards than CPUs make readers share a stream, the
            (decompressed) bytes per segment dealt to each in turn.
        num_partitions: shuffle partitions (default: about one per 64 MiB of raw input).
        shuffle_file_bytes: parsed lines (in memory) a parser holds before it writes
            them as one shuffle file.
    """
    t0 = time.perf_counter()
    listing = find_inputs(inputs)  # what a folder walk skipped goes to the summary
    files = listing.files
    label_path = labels or (config.label_file() if config.labels.kind == "file" else None)
    label_map = load_label_file(label_path, config) if label_path else None
    if labels and config.labels.kind != "file":
        log(f"note: --labels given, so window labels come from {labels}")
    store = TemplateStore.load(templates) if templates else None

    init_ray(progress=progress)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    split_plain = not isinstance(config.grouping, FixedGrouping)
    # fewer shards than CPUs (one big compressed file, say): readers share the streams
    shards = share_streams(plan_shards(files, shard_bytes=shard_bytes, split_plain=split_plain), cpus,
                           segment_bytes=segment_bytes)
    summary = IngestSummary(source=config.name, output=output, templates_mined=store is None)
    log(f"ingest {config.name}: {len(files)} file(s), {sum(f.size for f in files):,} bytes, "
        f"{len(shards)} shard(s) on {cpus} CPU(s)")

    tally = _Tally()
    tally.add({"files_skipped": len(listing.errors)}, listing.errors)
    tally.warnings += listing.warnings
    # Stage 1: parse every line once (one parser per CPU), assign windows and write the
    # lines split by window into shuffle partitions on disk, next to the output.
    parts = num_partitions or max(cpus, math.ceil(_raw_bytes(shards) / _PARTITION_BYTES))
    shuffle = _join(output, "_shuffle")
    _clear_dir(shuffle)
    sfs, spath = resolve_fs(shuffle)
    sfs.create_dir(spath, recursive=True)
    t = time.perf_counter()
    groups = _pack(shards, 2 * cpus)
    shared = sum(s.parts > 1 for s in shards)
    log(f"stage 1: {len(groups)} parse task(s), {cpus} at a time, read their shard group(s) themselves"
        + (f" ({shared} readers share {len({s.file.index for s in shards if s.parts > 1})} compressed or unsplit "
           "stream(s))" if shared else ""))
    # Tasks, not an actor pool: their worker processes outlive the stage and run stage 2,
    # instead of new workers starting (and importing) after it. Each process builds its
    # parser once (see _read_parse). The lines never pass through the object store, and no
    # read task competes with the parsers for the cores.
    items = ray.data.from_items([{"group": g} for g in range(len(groups))], override_num_blocks=len(groups))
    parsed = items.map_batches(
        _read_parse,
        fn_kwargs={"run": uuid.uuid4().hex, "config": config, "store": None if store is None else store.to_dict(),
                   "file_uris": [f.uri for f in files], "file_names": [_display_name(f, files) for f in files],
                   "shuffle": shuffle, "parts": parts, "groups": groups,
                   "encoding": config.encoding, "batch_lines": batch_lines, "file_bytes": shuffle_file_bytes,
                   "segment_bytes": segment_bytes},
        batch_format="pyarrow", batch_size=1, num_cpus=1,
        compute=ray.data.TaskPoolStrategy(size=min(cpus, len(groups))),
    ).take_all()  # one row per shard group (see _PARSED_SCHEMA)
    messages = _Collector()
    pieces = []
    ranges: list[tuple[int, int, int]] = []
    for r in parsed:
        ranges += [tuple(x) for x in r["ranges"]]
        tally.add(json.loads(r["counts"]), json.loads(r["errors"]), [("read", r["node"]), ("parse", r["node"])])
        problems = json.loads(r["problems"])
        tally.warnings += problems["warnings"]
        tally.line_problems += problems["line_problems"]
        messages.collect(r["messages"], r["first"], r["count"])
        pieces += r["pieces"]
    del parsed
    summary.seconds["parse"] = round(time.perf_counter() - t, 3)
    log(f"stage 1 wrote {len({p['file'] for p in pieces})} shuffle file(s) of {parts} partition(s) "
        f"in {summary.seconds['parse']:.1f}s")
    store_box = None  # the parsers matched against the frozen store
    if store is None:
        # Drain3 here, in the driver: it sees each distinct masked message once
        t = time.perf_counter()
        store = messages.mine(config.parsing)
        summary.seconds["mine"] = round(time.perf_counter() - t, 3)
        log(f"mined {len(store)} templates from {len(messages.first):,} distinct messages "
            f"in {summary.seconds['mine']:.1f}s")
        store_box = [ray.put(store.to_dict())]
    else:
        log(f"matched against the frozen store {templates} ({len(store)} templates)")
    summary.templates = len(store)

    # Stage 2: one task per partition matches its lines (unless the parsers did), groups
    # them and writes its windows: a task holds one partition, never the whole input.
    t = time.perf_counter()
    label_box = [ray.put(label_map)] if label_map is not None else None
    files_box = [ray.put({"names": [f.shown for f in files], "inputs": [f.input for f in files],
                          "bases": {str(k): v for k, v in line_bases(ranges).items()}})]
    windows_dir = _join(output, "windows")
    _clear_dir(windows_dir)
    wfs, wpath = resolve_fs(windows_dir)
    wfs.create_dir(wpath, recursive=True)
    by_part: dict[int, list[tuple[str, int]]] = {}
    for p in sorted(pieces, key=lambda p: (p["partition"], p["file"], p["row_group"])):
        by_part.setdefault(p["partition"], []).append((p["file"], p["row_group"]))
    done = ray.get([_group_partition.remote(by_part[k], _join(windows_dir, f"part-{i:05d}.parquet"), config.name,
                                            store_box, label_box, files_box) for i, k in enumerate(sorted(by_part))])
    if not by_part:  # no windows: still a readable (empty) table
        pq.write_table(WINDOWS_SCHEMA.empty_table(), _join(wpath, "part-00000.parquet"), filesystem=wfs)
    for d in done:
        tally.add(d["counts"], None, [d["where"]])
    _clear_dir(shuffle)
    summary.seconds["match_group_write"] = round(time.perf_counter() - t, 3)
    log(f"matched and grouped {len(by_part)} partition(s) in {summary.seconds['match_group_write']:.1f}s")

    counts, errors, nodes = tally.get()
    summary.nodes = nodes
    for k, v in counts.items():
        if hasattr(summary, k):
            setattr(summary, k, int(v))
    summary.errors = sorted(errors, key=lambda e: (e["file"], e["offset"]))
    summary.warnings = sorted(tally.warnings, key=lambda e: (e["file"], e["offset"]))
    summary.line_problems = _line_problems(tally.line_problems, files, line_bases(ranges))
    summary.seconds["total"] = round(time.perf_counter() - t0, 3)

    _write_text(_join(output, "templates.json"), json.dumps(store.to_dict(), indent=1))
    _write_text(_join(output, "source.json"), config.model_dump_json(indent=1))
    _write_text(_join(output, "summary.json"), json.dumps(summary.to_dict(), indent=1))
    return summary


def _display_name(f: InputFile, files: list[InputFile]) -> str:
    names = [x.name for x in files]
    return f.name if names.count(f.name) == 1 else f.uri


def _clear_dir(uri: str) -> None:
    """Remove a previous run's folder so stale Parquet files never mix in."""
    fs, p = resolve_fs(uri)
    info = fs.get_file_info(p)
    if info.type == pa.fs.FileType.Directory:
        fs.delete_dir(p)


def summary_lines(s: IngestSummary) -> list[str]:
    """The run summary as printable lines."""
    out = [
        f"source {s.source} → {s.output}",
        f"  files read            {s.files:>12,}   bytes {s.bytes_read:,}",
        f"  files skipped         {s.files_skipped:>12,}",
        f"  lines read            {s.lines_read:>12,}",
        f"  lines parsed          {s.lines_parsed:>12,}",
        f"  malformed (content only) {s.lines_malformed:>9,}",
        f"  undecodable bytes (replaced) {s.lines_with_replaced_bytes:>5,}",
        f"  NUL bytes (removed)   {s.lines_with_nul_bytes:>12,}",
        f"  too long (skipped)    {s.lines_too_long:>12,}",
        f"  empty lines skipped   {s.empty_lines:>12,}",
        f"  bad timestamps        {s.lines_bad_timestamp:>12,}",
        f"  unknown template (id 0) {s.lines_unknown_template:>10,}",
        f"  lines in no window    {s.lines_without_window:>12,}",
        f"  lines labelled        {s.lines_labelled:>12,}   anomalous {s.lines_labelled_anomalous:,}",
        f"  templates             {s.templates:>12,}   ({'mined' if s.templates_mined else 'frozen store'})",
        f"  windows               {s.windows:>12,}   anomalous {s.windows_anomalous:,}, "
        f"normal {s.windows_normal:,}, unlabelled {s.windows_unlabelled:,}",
        f"  time                  {s.seconds.get('total', 0):>11.1f}s   ({s.lines_per_s():,.0f} lines/s)",
    ]
    for e in s.errors:
        where = {"corrupt": "compressed byte ", "truncated": "compressed byte "}.get(e.get("kind", ""), "byte ")
        out.append(f"  ERROR {e['file']} at {where}{e['offset']:,}: {e['error']}")
    for e in s.warnings:
        out.append(f"  WARNING {e['file']}: {e['warning']}")
    for p in s.line_problems:
        more = f" (first: {', '.join(map(str, p['lines']))})" if p["count"] > len(p["lines"]) else \
            f" ({', '.join(map(str, p['lines']))})"
        out.append(f"  {_PROBLEM_TEXT[p['kind']]}: {p['file']}, {p['count']:,} line(s){more}")
    return out


_PROBLEM_TEXT = {"too_long": "lines too long, skipped", "replaced_bytes": "undecodable bytes replaced",
                 "nul_bytes": "NUL bytes removed"}

