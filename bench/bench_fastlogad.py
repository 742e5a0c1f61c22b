"""FastLogAD benchmark: accuracy over seeds on real log sets, and CPU/GPU speed.

Sections (each skipped with a message when its data is absent):

* ``hdfs-eventid``: DeepLog's HDFS event-id sessions. Train on ``hdfs_train``
  (4,854 normal sessions, a seeded 10% held out for validation); test on the
  normal sessions of robust_log_train.csv + robust_log_valid.csv (label 0)
  plus ``hdfs_test_abnormal``.
* ``hdfs2pct-fastlogad``: the HDFS 2% raw sample (LogLead), one window per
  block, under the paper's protocol: the first 4,855 normal blocks in time
  order train (10% validation), every other block tests.
* ``hdfs2pct-chronological``: the same windows under the default
  chronological protocol (60% of the timeline trains, straddlers dropped).
* ``liberty``: LogLLM's Liberty_test1.csv (10,000 messages, a label each) as
  windows of 10 consecutive messages through ``logad ingest``
  (data_pipelines/liberty.yaml), chronological (log order).
* ``bgl2k``: smoke test on Loghub BGL 2k (first 1,500 lines), fixed windows of
  20 lines, chronological.
* ``speed``: training time, and inference windows/s and lines/s at batch sizes
  1, 64 and 512 on HDFS event-id windows.

The HDFS 2% windows come from ``--windows DIR`` (the output of ``logad ingest``)
when given; otherwise they are built here from the raw log with plain Drain3
(the same grouping: one window per ``blk_`` id, labels from the label file).

Every headline uses the label-free threshold (a quantile of normal validation
scores, chosen before any test label is read). The oracle F1 (best F1 on the
test labels) is printed in its own column as an upper bound only.

Run (nice: CPU is shared)::

    nice -n 10 python bench/bench_fastlogad.py [--windows bench/scratch/hdfs_2pct]

Results: a markdown table on stdout; the run (figures, date, machine, command)
is appended to bench/results/fastlogad.json and docs/benchmarks.md is regenerated
(bench/render_docs.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LOGAD_DATASETS", ROOT.parent / "shared" / "datasets"))
SECTIONS = ("hdfs-eventid", "hdfs2pct-fastlogad", "hdfs2pct-chronological", "liberty", "bgl2k", "speed")
PAPER = {"hdfs": {"precision": 0.8480, "recall": 0.9999, "f1": 0.9177},
         "bgl": {"precision": 0.8828, "recall": 0.9866, "f1": 0.9314}}
PAPER_SPEED_MS = 0.14  # ms per HDFS sequence, RTX 2080 Ti, paper Table 2

# Drain3 masking for the raw sets parsed here (ids, addresses, numbers).
MASKS = [
    (re.compile(r"blk_-?\d+"), "<BLK>"),
    (re.compile(r"(/?\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(:\d+)?"), "<IP>"),
    (re.compile(r"0x[0-9a-fA-F]+"), "<HEX>"),
    (re.compile(r"(?<![A-Za-z])[-+]?\d+(\.\d+)?(?![A-Za-z])"), "<NUM>"),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- data ----------------------------------------------------------------------------------------


def drain3_ids(messages: Sequence[str]) -> np.ndarray:
    """Template id per message: mask, mine Drain3 on distinct masked messages, hash templates."""
    from drain3.drain import Drain

    from logad.parsing.template_store import template_id

    def mask(m: str) -> str:
        for rx, rep in MASKS:
            m = rx.sub(rep, m)
        return m

    masked = pd.Series(messages, dtype="object").map(mask)
    codes, uniques = pd.factorize(masked)
    drain = Drain(depth=4, sim_th=0.4, max_children=100)
    cluster_of = np.empty(len(uniques), dtype=np.int64)
    for i, text in enumerate(uniques):
        cluster, _ = drain.add_log_message(str(text))
        cluster_of[i] = cluster.cluster_id
    tid = {c.cluster_id: template_id(c.get_template()) for c in drain.clusters}
    per_unique = np.array([tid[c] for c in cluster_of], dtype=np.int64)
    return per_unique[codes]


def _frame(source: str, ids: list[str], seqs: list, lines: list, labels: Sequence[int],
           start: Sequence[Any] | None = None, end: Sequence[Any] | None = None) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({
        "source": source, "window_id": ids,
        "start": pd.to_datetime(start) if start is not None else pd.Series([pd.NaT] * n, dtype="datetime64[us]"),
        "end": pd.to_datetime(end) if end is not None else pd.Series([pd.NaT] * n, dtype="datetime64[us]"),
        "event_ids": seqs, "lines": lines, "label": pd.array(labels, dtype="Int8"),
    })


def hdfs_eventid() -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(train normals, test) from the DeepLog/logdeep event-id files; None when absent."""
    d = DATA / "hdfs_deeplog_eventid"
    if not (d / "hdfs_train").is_file():
        return None

    def read(name: str) -> list[list[int]]:
        return [[int(x) for x in ln.split()] for ln in (d / name).read_text().splitlines() if ln.strip()]

    train = read("hdfs_train")
    robust = pd.concat([pd.read_csv(d / f) for f in ("robust_log_train.csv", "robust_log_valid.csv")])
    normal = [[int(x) for x in s.split()] for s in robust.loc[robust["label"] == 0, "Sequence"]]
    abnormal = read("hdfs_test_abnormal")

    def frame(seqs: list[list[int]], label: int, prefix: str) -> pd.DataFrame:
        return _frame("hdfs", [f"{prefix}{i}" for i in range(len(seqs))], seqs,
                      [[f"E{e}" for e in s] for s in seqs], [label] * len(seqs))

    return frame(train, 0, "train-"), pd.concat(
        [frame(normal, 0, "normal-"), frame(abnormal, 1, "abnormal-")], ignore_index=True)


def hdfs_2pct(windows_dir: str | None) -> tuple[pd.DataFrame, str] | None:
    """HDFS 2% windows (one per block) and where they came from; None when absent."""
    if windows_dir:
        from logad.windows import read_windows

        return read_windows(windows_dir), f"logad ingest output {windows_dir}"
    d = DATA / "hdfs_loglead_2pct"
    raw, labels_file = d / "HDFS_2pct_dev.log.zst", d / "anomaly_label_dev.csv"
    if not raw.is_file():
        return None
    import zstandard

    with open(raw, "rb") as fh:
        text = zstandard.ZstdDecompressor().stream_reader(fh).read().decode()
    rx = re.compile(r"^(\d{6}) (\d{6}) \d+ \w+ [^:]+: (.*)$")
    blk = re.compile(r"blk_-?\d+")
    times, contents, blocks, raw_lines = [], [], [], []
    for line in text.splitlines():
        m = rx.match(line)
        b = blk.search(line)
        if not m or not b:
            continue
        times.append(m.group(1) + m.group(2))
        contents.append(m.group(3))
        blocks.append(b.group(0))
        raw_lines.append(line)
    df = pd.DataFrame({"time": pd.to_datetime(times, format="%y%m%d%H%M%S"), "block": blocks,
                       "eid": drain3_ids(contents), "line": raw_lines})
    labels = pd.read_csv(labels_file)
    label_of = dict(zip(labels["BlockId"], (labels["Label"] == "Anomaly").astype(int), strict=True))
    g = df.groupby("block", sort=False)
    out = pd.DataFrame({
        "source": "hdfs", "window_id": list(g.groups),
        "start": g["time"].min().to_numpy(), "end": g["time"].max().to_numpy(),
        "event_ids": g["eid"].agg(list).to_numpy(), "lines": g["line"].agg(list).to_numpy(),
    })
    out["label"] = pd.array([label_of.get(b) for b in out["window_id"]], dtype="Int8")
    out = out.sort_values(["start", "window_id"], kind="stable").reset_index(drop=True)
    return out, f"built here from {raw.name} (Drain3, blk_ sessions, {labels_file.name})"


def liberty() -> tuple[pd.DataFrame | None, str]:
    """Liberty: LogLLM's Liberty_test1.csv as windows of 10 consecutive messages (``logad ingest``).

    Returns (None, reason) when the data is absent. The larger Liberty_test2_dev.csv
    is not used: it keeps one message of each 100-message window, so its window
    contents cannot predict its labels.
    """
    if not (DATA / "liberty_logllm" / "Liberty_test1.csv").is_file():
        return None, f"{DATA / 'liberty_logllm' / 'Liberty_test1.csv'} not found"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import liberty_windows

    from logad.windows import read_windows

    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_ADDRESS", "local")
    return read_windows(liberty_windows(10)), ""


def bgl_2k(window: int = 20) -> pd.DataFrame | None:
    f = DATA / "loghub_2k" / "BGL" / "BGL_2k_dev.log_structured.csv"
    if not f.is_file():
        return None
    from logad.parsing.template_store import template_id

    rows = pd.read_csv(f)
    eids = [template_id(t) for t in rows["EventTemplate"]]
    anomalous = (rows["Label"] != "-").to_numpy()
    times = pd.to_datetime(rows["Timestamp"], unit="s")
    ids, seqs, lines, labels, start, end = [], [], [], [], [], []
    for s in range(0, len(rows), window):
        e = min(s + window, len(rows))
        ids.append(f"lines{s + 1}-{e}")
        seqs.append(eids[s:e])
        lines.append(rows["Content"].iloc[s:e].astype(str).tolist())
        labels.append(int(anomalous[s:e].any()))
        start.append(times.iloc[s])
        end.append(times.iloc[e - 1])
    return _frame("bgl", ids, seqs, lines, labels, start, end)


# -- runs ----------------------------------------------------------------------------------------


def evaluate_run(det: Any, test: pd.DataFrame) -> dict[str, Any]:
    from logad.evaluation import evaluate_scores

    t0 = time.perf_counter()
    scores = det.score(test)
    score_s = time.perf_counter() - t0
    r = evaluate_scores(scores, test["label"], det.threshold)
    m, o = r["metrics"], r["oracle_upper_bound"] or {}
    # The paper's rule from the same model: the plain quantile of normal validation scores
    # (FastLogADConfig.threshold_rule = "quantile"). No test label used.
    paper = float(det.fit_report.extra["threshold_quantile_value"])
    f = evaluate_scores(scores, test["label"], paper)["metrics"]
    return {**{k: m[k] for k in ("precision", "recall", "f1", "auroc", "aupr", "tp", "fp", "fn", "tn")},
            "paper_threshold": paper, "paper_precision": f["precision"], "paper_recall": f["recall"],
            "paper_f1": f["f1"],
            "threshold": det.threshold, "threshold_rule": det.threshold_strategy(), "oracle_f1_upper_bound": o.get("f1", float("nan")),
            "oracle_threshold": o.get("threshold", float("nan")), "score_s": score_s,
            "num_test": r["num_labelled"], "num_test_anomalous": r["num_anomalous"]}


def run_seeds(name: str, seeds: Sequence[int], config: dict[str, Any],
              make_split: Callable[[int], tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]]) -> dict[str, Any]:
    from logad.evaluation import aggregate_runs
    from logad.methods import get_method

    runs = []
    for seed in seeds:
        train, val, test, desc = make_split(seed)
        det = get_method("fastlogad")(config | {"seed": seed})
        log(f"[{name}] seed {seed}: train {len(train)}, val {len(val)}, test {len(test)} "
            f"({int((test['label'] == 1).sum())} anomalous)")
        report = det.fit(train, val)
        row = evaluate_run(det, test) | {
            "seed": seed, "train_s": report.train_time_s, "epochs_run": len(report.history),
            "best_epoch": report.best_epoch, "num_train": len(train), "num_val": len(val),
            "vocab_size": report.extra["vocab_size"], "split": desc,
        }
        log(f"[{name}] seed {seed}: P {row['precision']:.4f} R {row['recall']:.4f} F1 {row['f1']:.4f} "
            f"AUROC {row['auroc']:.4f} (oracle F1 {row['oracle_f1_upper_bound']:.4f}) "
            f"train {row['train_s']:.0f} s")
        runs.append(row)
    keys = ["precision", "recall", "f1", "auroc", "aupr", "paper_precision", "paper_recall", "paper_f1",
            "oracle_f1_upper_bound", "train_s", "fp", "fn"]
    return {"name": name, "runs": runs, "summary": aggregate_runs(runs, keys)}


def protocol_split(windows: pd.DataFrame, protocol: str, **params: Any):
    from logad.evaluation import split_windows

    def make(seed: int):
        s = split_windows(windows, protocol, seed=seed, **params)
        return s.train, s.val, s.test, s.description

    return make


def speed(det: Any, windows: pd.DataFrame, batch_sizes: Sequence[int] = (1, 64, 512),
          max_windows: int = 4096) -> list[dict[str, Any]]:
    """Inference throughput of score() at several batch sizes (one call per batch).

    score() runs the model once per distinct chunk of a call, so repeated sequences
    are cheaper; ``distinct_share`` says how many of the windows were distinct per call.
    """
    import torch

    out = []
    for bs in batch_sizes:
        det.config.score_batch_size = bs
        n = min(len(windows), max_windows if bs > 1 else 512)
        frame = windows.iloc[:n]
        det.score(frame.iloc[: min(bs, n)])  # warm-up
        t0 = time.perf_counter()
        for i in range(0, n, bs):
            det.score(frame.iloc[i : i + bs])
        elapsed = time.perf_counter() - t0
        lines = int(sum(len(x) for x in frame["event_ids"]))
        distinct = sum(len({tuple(x) for x in frame["event_ids"].iloc[i : i + bs]}) for i in range(0, n, bs))
        out.append({"batch_size": bs, "windows": n, "seconds": elapsed, "windows_per_s": n / elapsed,
                    "distinct_share": distinct / n,
                    "lines_per_s": lines / elapsed, "ms_per_window": 1000 * elapsed / n,
                    "torch_threads": torch.get_num_threads()})
        log(f"[speed] batch {bs}: {n / elapsed:.0f} windows/s, {lines / elapsed:.0f} lines/s")
    det.config.score_batch_size = 256
    return out


# -- output --------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__}


def _ms(stat: dict[str, float]) -> str:
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def markdown(results: dict[str, Any]) -> str:
    lines = ["| dataset / protocol | seeds | threshold rule (label-free) | precision | recall | F1 | AUROC "
             "| AUPR | oracle F1 (UPPER BOUND, test-tuned) | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"] if results["sections"] else []
    for sec in results["sections"]:
        s = sec["summary"]
        rule = sec["runs"][0]["threshold_rule"].removeprefix("label-free: ")
        lines.append(f"| {sec['name']} | {s['f1']['n']} | {rule} (stored with the model; headline) | "
                     f"{_ms(s['precision'])} | {_ms(s['recall'])} | **{_ms(s['f1'])}** | {_ms(s['auroc'])} | "
                     f"{_ms(s['aupr'])} | {_ms(s['oracle_f1_upper_bound'])} | {s['train_s']['mean']:.0f} |")
        lines.append(f"| | | the plain 0.99 quantile (the paper's rule), same model | {_ms(s['paper_precision'])} | "
                     f"{_ms(s['paper_recall'])} | {_ms(s['paper_f1'])} | | | | |")
    if results.get("speed"):
        m = results["machine"]
        lines += [""] * bool(lines) + [
                  f"Inference speed (discriminator only, {m['cpu']}, {m['nproc']} CPUs, GPU: {m['gpu']}; "
                  "the model runs once per distinct sequence of a call):", "",
                  "| batch size | windows/s | lines/s | ms per window | distinct windows per call |",
                  "|---|---|---|---|---|"]
        for r in results["speed"]:
            lines.append(f"| {r['batch_size']} | {r['windows_per_s']:.0f} | {r['lines_per_s']:.0f} | "
                         f"{r['ms_per_window']:.3f} | {r.get('distinct_share', 1.0):.0%} |")
        lines.append(f"| paper (RTX 2080 Ti GPU, Table 2) | | | {PAPER_SPEED_MS} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", help="HDFS 2%% windows dir from `logad ingest` (default: build from raw)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--config", help="JSON of FastLogAD config overrides for every section")
    ap.add_argument("--no-record", "--no-append", dest="no_record", action="store_true",
                    help="print only: add no run to bench/results/fastlogad.json and leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    base = {"device": "auto", "show_progress": False} | (json.loads(args.config) if args.config else {})
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "machine": machine(), "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
                               "config": base, "sections": [], "skipped": []}

    need_2pct = any(s.startswith("hdfs2pct") for s in sections)
    hdfs2 = hdfs_2pct(args.windows) if need_2pct else None
    if need_2pct and hdfs2 is not None:
        log(f"HDFS 2%: {len(hdfs2[0])} windows, {int((hdfs2[0]['label'] == 1).sum())} anomalous ({hdfs2[1]})")
        results["hdfs2pct_windows"] = hdfs2[1]

    for sec in sections:
        if sec == "hdfs-eventid":
            data = hdfs_eventid()
            if data is None:
                results["skipped"].append(f"{sec}: {DATA / 'hdfs_deeplog_eventid'} not found")
                continue
            train_all, test = data

            def make(seed: int, train_all=train_all, test=test):
                rng = np.random.default_rng(seed)
                val_mask = np.zeros(len(train_all), dtype=bool)
                val_mask[rng.choice(len(train_all), size=len(train_all) // 10, replace=False)] = True
                return (train_all[~val_mask].reset_index(drop=True), train_all[val_mask].reset_index(drop=True),
                        test, {"protocol": "hdfs_train (10% val) vs robust_log normals + hdfs_test_abnormal"})

            results["sections"].append(run_seeds("HDFS event-id (DeepLog train / robust_log + abnormal test)",
                                                 args.seeds, base, make))
        elif sec in ("hdfs2pct-fastlogad", "hdfs2pct-chronological"):
            if hdfs2 is None:
                results["skipped"].append(f"{sec}: no --windows and {DATA / 'hdfs_loglead_2pct'} not found")
                continue
            if sec == "hdfs2pct-fastlogad":
                results["sections"].append(run_seeds(
                    "HDFS 2% — fastlogad protocol (4,855 normal train, 10% val)", args.seeds, base,
                    protocol_split(hdfs2[0], "fastlogad", num_train=4855)))
            else:
                results["sections"].append(run_seeds(
                    "HDFS 2% — chronological (60% train, 10% val)", args.seeds, base,
                    protocol_split(hdfs2[0], "chronological")))
        elif sec == "liberty":
            w, why = liberty()
            if w is None:
                results["skipped"].append(f"{sec}: {why}")
                continue
            log(f"Liberty: {len(w)} windows, {int((w['label'] == 1).sum())} anomalous")
            results["sections"].append(run_seeds(
                "Liberty test1 (10-message windows, chronological)",
                args.seeds, base, protocol_split(w, "chronological")))
        elif sec == "bgl2k":
            w = bgl_2k()
            if w is None:
                results["skipped"].append(f"{sec}: {DATA / 'loghub_2k'} not found")
                continue
            results["sections"].append(run_seeds(
                "BGL 2k smoke (20-line windows, chronological)", args.seeds, base | {"batch_size": 8},
                protocol_split(w, "chronological", train_fraction=0.6)))
        elif sec == "speed":
            data = hdfs_eventid()
            if data is None:
                results["skipped"].append(f"{sec}: no HDFS event-id data")
                continue
            from logad.methods import get_method

            train_all, test = data
            det = get_method("fastlogad")(base | {"seed": 0})
            rep = det.fit(train_all.iloc[:-485], train_all.iloc[-485:])
            results["speed_train_s"] = rep.train_time_s
            results["speed"] = speed(det, test.sample(frac=1.0, random_state=0).reset_index(drop=True))

    table = markdown(results)
    print(table)
    for s in results["skipped"]:
        print(f"skipped: {s}")
    if args.no_record:
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import record

    m = results["machine"]
    figures = {k: v for k, v in results.items() if k not in ("date", "command")}
    text = (f"Config overrides `{json.dumps(base)}`; seeds {args.seeds}. Thresholds from normal validation "
            "scores only (the rule is named in each row); the oracle F1 is tuned on test labels, an upper bound.\n\n"
            + table + "".join(f"\n\nskipped: {s}" for s in results["skipped"]))
    record("FastLogAD: accuracy over seeds and inference speed", text, figures, "fastlogad.json",
           machine_text=f"{m['nproc']} CPUs ({m['cpu']}), GPU: {m['gpu']}, Python {m['python']}, torch {m['torch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
