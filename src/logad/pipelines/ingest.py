"""The Ray Data ingest pipeline: read → split → mask → mine → match → group → Parquet.

The raw input is read and parsed once, streaming, in three stages:

1. **Parse**: read the shards, split headers, mask variables, find session
   ids, and stage the lines as Parquet next to the output. Ray Data tasks
   (one per CPU at a time) read and parse their shard groups themselves: no
   lines in the object store, and the task workers, each with its parser
   built once, go on to run stages 2 and 3 rather than new processes
   starting and importing after stage 1. Plain files are cut into byte
   ranges; where there are still fewer shards than CPUs (one large
   compressed file, say), several tasks share each stream: each decompresses
   all of it and parses every k-th segment, so every CPU parses (see
   :func:`logad.sources.files.share_streams`). Without a frozen store, each batch
   also sends its distinct masked messages (with first position and count)
   to the run's bookkeeping actor, which then feeds them to Drain3 in input
   order and freezes the store. That is exactly what Drain3 would have built from the
   whole stream, at the cost of one pass over distinct messages. With a
   frozen store (``--templates``), the parsers load it once each and match
   every line right there.
2. **Match and partition** (one task per staged file): template ids for
   the staged lines (the store cached once per worker process), window
   assignment, and the rows sorted by a stable hash of their window id into
   shuffle partitions: one Parquet file per task next to the output, one row
   group per partition.
3. **Group** (one task per partition): its row group of every stage-2 file
   holds every line of its windows; a vectorised Arrow group-by builds the
   windows and writes them as one Parquet file.

The number of partitions grows with the input (about 64 MiB of raw log per
partition), so no task ever holds more than one staged file or one
partition: memory stays flat as the input grows. The shuffle lives on the
output's filesystem, so on a multi-node cluster the output must be shared
storage (object storage or a shared mount), as it must be for the windows
themselves. Stage 2 and 3 tasks return their counts rather than sending
them, and name their files after their input: a task Ray retries after a
node failure overwrites its own files and is counted once. Stage 1 reports
as it goes, each report keyed by the batch it is about (shard and batch
number; first line and size), so a re-run batch replaces its report.

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
from logad.sources.config import FixedGrouping, SessionGrouping, SourceConfig
from logad.sources.files import (
    SEGMENT_BYTES,
    InputFile,
    Shard,
    list_inputs,
    plan_shards,
    read_shard,
    resolve_fs,
    share_streams,
)
from logad.sources.lines import LineSplitter
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
    bytes_read: int = 0
    lines_read: int = 0
    empty_lines: int = 0
    lines_with_replaced_bytes: int = 0
    lines_parsed: int = 0
    lines_malformed: int = 0
    lines_bad_timestamp: int = 0
    lines_unknown_template: int = 0
    lines_without_window: int = 0
    windows: int = 0
    windows_anomalous: int = 0
    windows_normal: int = 0
    windows_unlabelled: int = 0
    templates: int = 0
    templates_mined: bool = True
    errors: list[dict] = field(default_factory=list)
    nodes: dict[str, list[str]] = field(default_factory=dict)  # stage → ids of the Ray nodes that ran it
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines_per_s(self) -> float:
        total = self.seconds.get("total", 0.0)
        return self.lines_read / total if total else 0.0


class _Counts:
    """Counts from the stages' tasks (one per ingest run; used as an actor).

    Each report names the piece of work it is about (``key``, e.g. a shard's batch);
    a report under a key already seen replaces the earlier one, so a task or batch
    that Ray re-runs after a failure is counted once. Each call also says which
    stage ran where, so a run's summary lists the Ray nodes that did the work (how
    a multi-node run is seen to spread).
    """

    def __init__(self) -> None:
        self.reports: dict[object, tuple[dict[str, int], list[dict]]] = {}
        self.nodes: dict[str, set[str]] = {}

    def add(self, key: object, counts: dict[str, int], errors: list[dict] | None = None,
            where: tuple[str, str] | None = None) -> None:
        self.reports[key] = ({k: int(v) for k, v in counts.items()}, list(errors or []))
        if where:
            stage, node = where
            self.nodes.setdefault(stage, set()).add(node)

    def get(self) -> tuple[dict[str, int], list[dict], dict[str, list[str]]]:
        counts: dict[str, int] = {}
        errors: list[dict] = []
        for c, e in self.reports.values():
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
            errors.extend(e)
        return counts, errors, {k: sorted(v) for k, v in self.nodes.items()}


def _where(stage: str) -> tuple[str, str]:
    """(stage, id of the Ray node this task or actor runs on), for the counter."""
    return stage, ray.get_runtime_context().get_node_id()


def _pack(shards: list[Shard], parallelism: int) -> list[list[Shard]]:
    """Group small shards (many small files) so one read task reads several.

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


def _read_reported(shards: list[Shard], encoding: str, batch_lines: int, counter, send: Callable,
                   segment_bytes: int = SEGMENT_BYTES) -> Iterator[pa.Table]:
    """Batches of lines of ``shards``, each batch's read counts reported (``send``) as it is read."""
    for shard in shards:
        for i, (table, stats) in enumerate(read_shard(shard, encoding=encoding, batch_lines=batch_lines,
                                                      segment_bytes=segment_bytes)):
            d = stats.to_dict()
            errors = d.pop("errors")
            key = ("read", shard.file.uri, shard.start, shard.part, i)  # a re-run read reports the same keys
            send(counter.add.remote(key, d, errors, _where("read")))
            yield table


def _raw_bytes(shards: list[Shard]) -> int:
    """Raw log bytes of ``shards`` (compressed files counted at about 5× their size)."""
    return sum(s.size if s.file.compression == "none" else s.size * 5 for s in shards)


class _Collector:
    """Gathers the distinct masked messages of the mining pass, with first position and
    count, and mines them once stage 1 is over (Drain3 is stateful and not safe to share)."""

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

    def mine(self, parsing_dict: dict) -> dict:
        """Feed the distinct messages to Drain3 in input order; the frozen store as a dict."""
        from logad.sources.config import ParsingConfig

        miner = TemplateMiner(ParsingConfig.model_validate(parsing_dict))
        miner.add(*self.ordered())
        return miner.freeze().to_dict()


class _Bookkeeper(_Counts, _Collector):
    """A run's one bookkeeping actor: the counts and, when mining, the distinct messages
    and Drain3 itself. One worker process instead of three: on 2 cores each Ray worker
    costs about 1.5 s of CPU to start and import, and a mining actor started after
    stage 1 put that start on the critical path."""

    def __init__(self) -> None:
        _Counts.__init__(self)
        _Collector.__init__(self)


_BookkeeperActor = ray.remote(num_cpus=0)(_Bookkeeper)


# The staged lines and the shuffle are written once and read once: LZ4 and no dictionary
# pages halve Parquet's write + read time against its defaults (snappy with dictionaries),
# and still shrink the files about 6x for shared storage. The masked messages keep their
# dictionary: stage 2 reads it back as is and matches each distinct message once.
_STAGED_PARQUET = {"compression": "lz4", "use_dictionary": ["masked"]}
# Reports a parser keeps in flight to the bookkeeping actor before it waits for some.
_IN_FLIGHT = 64
# Parsed lines (in memory) per staged file: what one stage-2 task loads at most.
_STAGED_FILE_BYTES = 128 << 20


class _Parser:
    """Stage 1: read shard groups, split headers, mask, find session ids, stage the lines.

    One per worker process (see :func:`_read_parse`); its input rows name shard
    groups (see :func:`_pack`), which it reads itself, so the lines never pass
    through the object store. With a frozen ``store`` the lines are matched
    here (the store is loaded once per parser). Without one, the masked message
    is staged for the match stage and each batch's distinct messages go to the
    bookkeeping actor for mining.
    """

    def __init__(self, config: SourceConfig, store: dict | None, file_uris: list[str],
                 counter, staging: str, groups: list[list[Shard]], encoding: str, batch_lines: int,
                 file_bytes: int = _STAGED_FILE_BYTES, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.config = config
        self.splitter = LineSplitter(config)
        self.store = TemplateStore.from_dict(store) if store is not None else None
        self.file_uris = pa.array(file_uris, pa.string())
        self.counter = counter  # the run's _Bookkeeper: counts, and messages to mine
        self.fs, self.staging = resolve_fs(staging)
        self.fs.create_dir(self.staging, recursive=True)
        self.groups, self.encoding, self.batch_lines = groups, encoding, batch_lines
        self.file_bytes, self.segment_bytes = file_bytes, segment_bytes
        self.pending: list[ray.ObjectRef] = []

    def _parse(self, batch: pa.Table) -> tuple[pa.Table, tuple[int, int]]:
        """Parse one batch of read lines: the rows to stage (lines that belong to a window)
        and the batch's first line (file index, byte offset)."""
        raw = batch["raw"].combine_chunks()
        sl = self.splitter.split(raw)
        masked = mask_contents(sl.content, self.config.parsing)
        g = self.config.grouping
        lines = {
            "ts": sl.ts, "file_idx": batch["file_idx"], "offset": batch["offset"],
            "line_no": batch["line_no"], "raw": raw, "line_label": sl.line_label,
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
        }
        if self.store is None:
            key = pc.add(pc.shift_left(batch["file_idx"].cast(pa.int64()), pa.scalar(_KEY_SHIFT, pa.int64())),
                         batch["offset"])
            u = pa.table({"m": masked, "k": key}).group_by("m", use_threads=False).aggregate(
                [("k", "min"), ("k", "count")]
            )
            self._send(self.counter.collect.remote(u["m"].to_pylist(), u["k_min"].to_pylist(),
                                                   u["k_count"].to_pylist()))
            lines["masked"] = masked
            rows = pa.table(lines).filter(grouped)
        else:
            lines["event_id"] = pa.array(self.store.match(masked), pa.int64())
            rows = pa.table(lines).filter(grouped)
            counts["lines_unknown_template"] = int(pc.sum(pc.equal(rows["event_id"], UNKNOWN_ID)).as_py() or 0)
        # a batch is named by its first line and size, so a re-run batch replaces its report
        # and its staged file
        first = (int(batch["file_idx"][0].as_py()), int(batch["offset"][0].as_py())) if len(raw) else (-1, -1)
        self._send(self.counter.add.remote(("parse", *first, len(raw)), counts, None, _where("parse")))
        return rows, first

    def _send(self, ref: ray.ObjectRef) -> None:
        """Keep a report to the bookkeeping actor in flight rather than wait for it: a
        round trip per batch cost the parsers about a third of their time on 2 cores.
        At most ``_IN_FLIGHT`` wait at once; :meth:`__call__` settles them all before it
        returns, so every report is in when stage 1 ends."""
        self.pending.append(ref)
        if len(self.pending) > _IN_FLIGHT:
            half = len(self.pending) // 2
            ray.get(self.pending[:half])
            del self.pending[:half]

    def _settle(self) -> None:
        ray.get(self.pending)
        self.pending.clear()


    def __call__(self, batch: pa.Table) -> pa.Table:
        names, counts = [], []
        for g in batch["group"].to_pylist():
            # Few, large staged files (a row group per batch, a new file after every
            # ``file_bytes`` of parsed lines): stage 2 is then a few tasks and stage 3 reads
            # a few row groups per partition, while no stage-2 task holds more than one
            # such file, however large the group (one big compressed file is one group).
            writer, size = None, 0
            try:
                for table in _read_reported(self.groups[g], self.encoding, self.batch_lines, self.counter,
                                            self._send, self.segment_bytes):
                    rows, _ = self._parse(table)
                    if not rows.num_rows:
                        continue
                    if writer is not None and size >= self.file_bytes:
                        writer.close()
                        writer = None
                    if writer is None:
                        names.append(f"group-{g:06d}-{len(names):04d}.parquet")
                        counts.append(0)
                        writer = pq.ParquetWriter(f"{self.staging}/{names[-1]}", rows.schema, filesystem=self.fs,
                                                  **_STAGED_PARQUET)
                        size = 0
                    writer.write_table(rows.cast(writer.schema), row_group_size=rows.num_rows)
                    counts[-1] += rows.num_rows
                    size += rows.nbytes
            finally:
                if writer is not None:
                    writer.close()
        self._settle()
        return pa.table({"staged": pa.array(names, pa.string()), "rows": pa.array(counts, pa.int64())})


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
def _match_partition(staged: str, store_box: list, grouping, file_names: list[str], shuffle: str,
                     parts: int) -> dict:
    """Stage 2, one task per staged file: template ids, window ids, then the rows written
    out sorted by shuffle partition, one Parquet row group per partition, in one file
    (``shuffle/<staged name>``); returns which row group holds which partition.

    One file per task, not one per (task, partition): the file count grows with the
    input, not with its square. The output name derives from the input's, so a retried
    task overwrites its own file, and the counts it returns are taken once.
    """
    fs, path = resolve_fs(staged)
    rows = pq.read_table(path, filesystem=fs, read_dictionary=["masked"])
    counts: dict[str, int] = {}
    if "masked" in rows.column_names:
        store = _cached(_STORE_CACHE, store_box, TemplateStore.from_dict)
        ids = store.match(rows["masked"])  # dictionary-encoded: each distinct message matched once
        rows = rows.drop_columns(["masked"]).append_column("event_id", pa.array(ids, pa.int64()))
        counts["lines_unknown_template"] = int((ids == UNKNOWN_ID).sum())
    sessions = rows["session"].combine_chunks() if "session" in rows.column_names else None
    keep = [c for c in ("ts", "file_idx", "offset", "line_no", "event_id", "raw", "line_label") if c in rows.column_names]
    out = assign_windows(rows.select(keep), grouping, file_names=file_names, sessions=sessions).drop_columns(["line_no"])
    pieces: list[tuple[int, str, int]] = []  # (partition, file, row group)
    if out.num_rows:
        part = _partition_of(out["window_id"].combine_chunks(), parts)
        order = np.argsort(part, kind="stable")
        out, part = out.take(pa.array(order)), part[order]
        bounds = np.searchsorted(part, np.arange(parts + 1))
        name = path.rsplit("/", 1)[-1]
        target = _join(shuffle, name)
        with pq.ParquetWriter(resolve_fs(target)[1], out.schema, filesystem=fs, compression="lz4",
                              use_dictionary=False) as writer:
            for k in range(parts):
                lo, hi = int(bounds[k]), int(bounds[k + 1])
                if hi > lo:
                    writer.write_table(out.slice(lo, hi - lo), row_group_size=hi - lo)
                    pieces.append((k, target, len(pieces)))
    del rows, out
    pa.default_memory_pool().release_unused()  # worker processes are reused: hand the pages back
    return {"counts": counts, "where": _where("match"), "pieces": pieces}


@ray.remote(num_cpus=1)
def _group_partition(pieces: list[tuple[str, int]], out_file: str, source: str, label_box: list | None) -> dict:
    """Stage 3, one task per shuffle partition: its row group of every stage-2 file, which
    together hold every line of its windows, grouped and written."""
    fs, out_path = resolve_fs(out_file)
    tables = [pq.ParquetFile(resolve_fs(uri)[1], filesystem=fs).read_row_group(group) for uri, group in pieces]
    rows = pa.concat_tables(tables)
    del tables
    labels = _cached(_LABEL_CACHE, label_box) if label_box else None
    w = build_windows(rows, source, labels)  # type: ignore[arg-type]
    del rows
    pq.write_table(w, out_path, filesystem=fs)
    lab = w["label"]
    anomalous = int(pc.sum(pc.equal(lab, 1)).as_py() or 0)
    normal = int(pc.sum(pc.equal(lab, 0)).as_py() or 0)
    num_windows = w.num_rows
    del w, lab
    pa.default_memory_pool().release_unused()
    return {"counts": {"windows": num_windows, "windows_anomalous": anomalous, "windows_normal": normal,
                       "windows_unlabelled": num_windows - anomalous - normal},
            "where": _where("group")}


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
    staged_file_bytes: int = _STAGED_FILE_BYTES,
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
        staged_file_bytes: parsed lines (in memory) per staged file: what one match
            task loads at most.
    """
    t0 = time.perf_counter()
    files = list_inputs(inputs)
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

    counter = _BookkeeperActor.remote()
    names = [_display_name(f, files) for f in files]
    # Stage 1: parse every line once (one parser per CPU) and stage the result; the
    # parsers write the staged Parquet themselves.
    staging = _join(output, "_staging")
    _clear_dir(staging)
    t = time.perf_counter()
    parse_kwargs = {
        "config": config, "store": None if store is None else store.to_dict(),
        "file_uris": [f.uri for f in files], "counter": counter,
        "staging": staging,
    }
    groups = _pack(shards, 2 * cpus)
    shared = sum(s.parts > 1 for s in shards)
    log(f"stage 1: {len(groups)} parse task(s), {cpus} at a time, read their shard group(s) themselves"
        + (f" ({shared} readers share {len({s.file.index for s in shards if s.parts > 1})} compressed or unsplit "
           "stream(s))" if shared else ""))
    # Tasks, not an actor pool: their worker processes outlive the stage and run stages 2
    # and 3, instead of new workers starting (and importing) after it. Each process builds
    # its parser once (see _read_parse). The lines never pass through the object store,
    # and no read task competes with the parsers for the cores.
    items = ray.data.from_items([{"group": g} for g in range(len(groups))], override_num_blocks=len(groups))
    staged = items.map_batches(
        _read_parse,
        fn_kwargs={"run": uuid.uuid4().hex, "groups": groups, "encoding": config.encoding,
                   "batch_lines": batch_lines, "file_bytes": staged_file_bytes,
                   "segment_bytes": segment_bytes, **parse_kwargs},
        batch_format="pyarrow", batch_size=1, num_cpus=1,
        compute=ray.data.TaskPoolStrategy(size=min(cpus, len(groups))),
    )
    staged_rows = staged.take_all()  # one small row per batch: the staged file it wrote
    summary.seconds["parse"] = round(time.perf_counter() - t, 3)
    if store is None:
        t = time.perf_counter()
        store = TemplateStore.from_dict(ray.get(counter.mine.remote(config.parsing.model_dump())))
        summary.seconds["mine"] = round(time.perf_counter() - t, 3)
        log(f"mined {len(store)} templates in {summary.seconds['mine']:.1f}s on the bookkeeping actor")
    else:
        log(f"matched against the frozen store {templates} ({len(store)} templates)")
    summary.templates = len(store)

    # Stage 2: match, assign windows and split the rows by window into shuffle partitions
    # on disk (next to the output); stage 3: group each partition and write its windows.
    # Tasks, one per staged file and one per partition: a task holds one file or one
    # partition, never the whole input.
    t = time.perf_counter()
    label_box = [ray.put(label_map)] if label_map is not None else None
    parts = num_partitions or max(cpus, math.ceil(_raw_bytes(shards) / _PARTITION_BYTES))
    shuffle = _join(output, "_shuffle")
    _clear_dir(shuffle)
    sfs, spath = resolve_fs(shuffle)
    sfs.create_dir(spath, recursive=True)
    store_box = [ray.put(store.to_dict())]
    staged = sorted({_join(staging, r["staged"]) for r in staged_rows if r["staged"]})
    done = ray.get([_match_partition.remote(f, store_box, config.grouping, names, shuffle, parts) for f in staged])
    log(f"matched and partitioned {len(staged)} staged file(s) into {parts} partition(s) "
        f"in {time.perf_counter() - t:.1f}s")
    windows_dir = _join(output, "windows")
    _clear_dir(windows_dir)
    wfs, wpath = resolve_fs(windows_dir)
    wfs.create_dir(wpath, recursive=True)
    by_part: dict[int, list[tuple[str, int]]] = {}
    for d in done:
        for k, uri, group in d.pop("pieces"):
            by_part.setdefault(k, []).append((uri, group))
    done += ray.get([_group_partition.remote(by_part[k], _join(windows_dir, f"part-{i:05d}.parquet"), config.name,
                                             label_box) for i, k in enumerate(sorted(by_part))])
    if not by_part:  # no windows: still a readable (empty) table
        pq.write_table(WINDOWS_SCHEMA.empty_table(), _join(wpath, "part-00000.parquet"), filesystem=wfs)
    ray.get([counter.add.remote(("task", i), d["counts"], None, d["where"]) for i, d in enumerate(done)])
    _clear_dir(staging)
    _clear_dir(shuffle)
    summary.seconds["match_group_write"] = round(time.perf_counter() - t, 3)

    counts, errors, nodes = ray.get(counter.get.remote())
    summary.nodes = nodes
    ray.kill(counter)
    for k, v in counts.items():
        if hasattr(summary, k):
            setattr(summary, k, int(v))
    summary.errors = sorted(errors, key=lambda e: (e["file"], e["offset"]))
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
        f"  lines read            {s.lines_read:>12,}",
        f"  lines parsed          {s.lines_parsed:>12,}",
        f"  malformed (content only) {s.lines_malformed:>9,}",
        f"  undecodable bytes (replaced) {s.lines_with_replaced_bytes:>5,}",
        f"  empty lines skipped   {s.empty_lines:>12,}",
        f"  bad timestamps        {s.lines_bad_timestamp:>12,}",
        f"  unknown template (id 0) {s.lines_unknown_template:>10,}",
        f"  lines in no window    {s.lines_without_window:>12,}",
        f"  templates             {s.templates:>12,}   ({'mined' if s.templates_mined else 'frozen store'})",
        f"  windows               {s.windows:>12,}   anomalous {s.windows_anomalous:,}, "
        f"normal {s.windows_normal:,}, unlabelled {s.windows_unlabelled:,}",
        f"  time                  {s.seconds.get('total', 0):>11.1f}s   ({s.lines_per_s():,.0f} lines/s)",
    ]
    for e in s.errors:
        out.append(f"  ERROR {e['file']} at byte {e['offset']}: {e['error']}")
    return out

