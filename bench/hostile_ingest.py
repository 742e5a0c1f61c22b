"""Ingest over hostile input: does anything crash, hang, blow memory or lose a good line?

Makes corpora of hostile files mixed with real lines (tests/hostile_corpus.py: bad and
NUL bytes, a crash's NUL run, binary files, a line of tens of MB, CRLF and missing final
breaks, corrupt and truncated .zst/.gz, misnamed compressed files, empty and blank files,
dangling and looping links, second names, unreadable files, a named pipe), ``--copies``
files of each kind, and runs ``logad ingest`` on each as a user would (a subprocess):

* syslog-family lines with data_pipelines/syslog.yaml (fixed windows: every line once);
* one file holding a single line of ``--huge-line-mb`` (memory must not follow it);
* HDFS lines with data_pipelines/hdfs.yaml, plain files cut into 1 MiB byte ranges.

It records the hostile inputs tried by kind, crashes (a non-zero exit, a traceback, or a
run killed at ``--timeout``), good lines planted and kept (lost: the goal is 0), the lines of
frames after a corrupt one kept (read on at the next good frame), problems
planted and reported with their file, wall time and the peak RSS of the process tree.

    python bench/hostile_ingest.py --copies 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import hostile_corpus  # noqa: E402
from _common import ROOT, record  # noqa: E402
from ingest_throughput import _tree_rss  # noqa: E402

WORK = ROOT / "bench" / "scratch" / "hostile"


def run_one(name: str, family: str, config: str, extra: list[str], timeout: int, **build) -> dict:
    folder, out = WORK / name / "in", WORK / name / "out"
    shutil.rmtree(WORK / name, ignore_errors=True)
    t = time.perf_counter()
    planted = hostile_corpus.build(folder, family, **build)
    made_s = time.perf_counter() - t
    files = sum(1 for _ in folder.rglob("*"))
    cmd = [sys.executable, "-m", "logad.cli", "ingest", str(ROOT / "data_pipelines" / config), str(folder),
           "--output", str(out), "--no-progress", *extra]
    print(f"{name}: {files} entries, {planted.bytes / 2**20:,.1f} MiB; {' '.join(cmd[3:])}", flush=True)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    peak = {"tree": 0, "process": 0}

    def sample() -> None:
        while proc.poll() is None:
            tree, one, _ = _tree_rss(proc.pid)
            peak["tree"], peak["process"] = max(peak["tree"], tree), max(peak["process"], one)
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    hung = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        hung = True
    th.join()
    wall = time.perf_counter() - t
    crashed = hung or proc.returncode != 0 or "Traceback" in stderr
    row = {"run": name, "config": config, "entries": files, "clean_files": planted.controls,
           "long_line_mib": round(build.get("long_line_bytes", 0) / 2**20, 1), "mib": round(planted.bytes / 2**20, 1),
           "corpus_s": round(made_s, 1), "wall_s": round(wall, 1), "exit": proc.returncode, "hung": hung,
           "crashed": crashed, "peak_rss_tree_mib": round(peak["tree"] / 2**20),
           "peak_rss_process_mib": round(peak["process"] / 2**20), "kinds": dict(planted.kinds)}
    if crashed:
        row["stderr_tail"] = stderr[-2000:]
        print(f"  CRASH (exit {proc.returncode}, hung={hung}):\n{stderr[-2000:]}", flush=True)
        return row
    row.update(_compare(planted, folder, out, config))
    print(f"  {row['good_kept']:,}/{row['good_planted']:,} good lines kept, {row['problems_reported']}/"
          f"{row['problems_planted']} problems reported, {wall:.1f}s, peak RSS {row['peak_rss_tree_mib']:,} MiB",
          flush=True)
    shutil.rmtree(WORK / name, ignore_errors=True)
    return row


def _compare(p, folder: Path, out: Path, config: str) -> dict:
    """Good lines planted vs kept at their file and line; problems planted vs reported."""
    from logad.windows import read_windows

    prefix = str(folder) + "/"
    got: dict[tuple[str, int], set[str]] = {}
    w = read_windows(out)
    for files, nums, lines in zip(w["line_files"], w["line_numbers"], w["lines"], strict=True):
        for f, n, text in zip(files, nums, lines, strict=True):
            got.setdefault((f[len(prefix):], n), set()).add(text)
    good = p.good
    if config == "hdfs.yaml":  # a line lands in a session only where it names a block
        good = {k: v for k, v in good.items() if re.search(r"blk_-?\d+", v)}
    kept = sum(1 for k, v in good.items() if v in got.get(k, ()))
    # lines of the frames after a corrupt one: read on at the next good frame, numbered on
    # from the lines before the gap, so found by their text among their file's lines
    gap_planted = gap_kept = 0
    by_file: dict[str, Counter] = {f: Counter() for f in p.after_gap}
    for (g, _), ts in got.items():
        if g in by_file:
            by_file[g].update(ts)
    for f, want in p.after_gap.items():
        if config == "hdfs.yaml":
            want = [v for v in want if re.search(r"blk_-?\d+", v)]
        texts = by_file[f]
        gap_planted += len(want)
        gap_kept += sum(min(n, texts[t]) for t, n in Counter(want).items())
    s = json.loads((out / "summary.json").read_text())
    rel = lambda f: f[len(prefix):]  # noqa: E731
    errors = {rel(e["file"]): e for e in s["errors"]}
    warnings = {rel(x["file"]): x["kind"] for x in s["warnings"]}
    problems = {(rel(x["file"]), x["kind"]): x for x in s["line_problems"]}
    planted, reported, by_kind = 0, 0, Counter()
    for f, (kind, lo, hi) in p.errors.items():
        planted += 1
        e = errors.get(f)
        ok = e is not None and e["kind"] == kind and lo <= e["offset"] <= hi
        reported += ok
        by_kind[kind] += ok
    for f, kind in p.warnings.items():
        planted += 1
        reported += warnings.get(f) == kind
        by_kind[kind] += warnings.get(f) == kind
    for (f, kind), lines in p.line_problems.items():
        planted += 1
        x = problems.get((f, kind))
        ok = x is not None and x["count"] == len(lines) and x["lines"] == sorted(lines)[:10]
        reported += ok
        by_kind[kind] += ok
    return {"good_planted": len(good), "good_kept": kept, "good_lost": len(good) - kept,
            "after_gap_planted": gap_planted, "after_gap_kept": gap_kept,
            "problems_planted": planted, "problems_reported": reported, "reported_by_kind": dict(by_kind),
            "lines_read": s["lines_read"], "windows": s["windows"], "pipeline_s": s["seconds"].get("total")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=20, help="files of each hostile kind in the syslog corpus")
    ap.add_argument("--huge-line-mb", type=int, default=400, help="the single line of the one-line run")
    ap.add_argument("--timeout", type=int, default=900, help="seconds before a run counts as hung")
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    cpus = ["--num-cpus", str(args.num_cpus)]
    rows = [
        run_one("syslog", "syslog", "syslog.yaml", cpus, args.timeout, copies=args.copies, long_line_bytes=40 << 20),
        run_one("huge-line", "syslog", "syslog.yaml", cpus, args.timeout, copies=0,
                long_line_bytes=args.huge_line_mb << 20, special=False),
        run_one("hdfs-ranges", "hdfs", "hdfs.yaml", [*cpus, "--shard-mb", "1"], args.timeout,
                copies=max(1, args.copies // 2), long_line_bytes=3 << 20, special=False),
    ]
    kinds = Counter()
    for r in rows:
        kinds.update(r["kinds"])
    table = ["| run | config | entries | MiB | exit | crashed | good lines planted | kept | lost | after a corrupt "
             "frame: planted | kept | problems planted | reported | wall s | peak RSS, tree (MiB) | "
             "largest process (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['run']} | {r['config']} | {r['entries']:,} | {r['mib']:,} | {r['exit']} | "
                     f"{'yes' if r['crashed'] else 'no'} | {r.get('good_planted', 0):,} | {r.get('good_kept', 0):,} | "
                     f"{r.get('good_lost', '–')} | {r.get('after_gap_planted', 0):,} | {r.get('after_gap_kept', 0):,} | "
                     f"{r.get('problems_planted', '–')} | "
                     f"{r.get('problems_reported', '–')} | {r['wall_s']} | {r['peak_rss_tree_mib']:,} | "
                     f"{r['peak_rss_process_mib']:,} |")
    table += ["", f"Hostile inputs tried, by kind (all runs; besides {sum(r['clean_files'] for r in rows)} clean "
              "files): " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ". Long lines: "
              + ", ".join(f"{r['long_line_mib']:g} MiB" for r in rows) + " (`max_line_bytes` 1 MiB)."]
    figures = {
        "runs": rows,
        "hostile_inputs": sum(kinds.values()),
        "hostile_kinds": len(kinds),
        "hostile_inputs_by_kind": [[k, v] for k, v in sorted(kinds.items())],
        "crashes": sum(r["crashed"] for r in rows),
        "good_lines_planted": sum(r.get("good_planted", 0) for r in rows),
        "good_lines_kept": sum(r.get("good_kept", 0) for r in rows),
        "good_lines_lost": sum(r.get("good_lost", 0) for r in rows),
        "after_gap_lines_planted": sum(r.get("after_gap_planted", 0) for r in rows),
        "after_gap_lines_kept": sum(r.get("after_gap_kept", 0) for r in rows),
        "problems_planted": sum(r.get("problems_planted", 0) for r in rows),
        "problems_reported": sum(r.get("problems_reported", 0) for r in rows),
        "wall_s": round(sum(r["wall_s"] for r in rows), 1),
        "peak_rss_tree_mib": max(r["peak_rss_tree_mib"] for r in rows),
        "peak_rss_process_mib": max(r["peak_rss_process_mib"] for r in rows),
        "huge_line_mib": args.huge_line_mb,
    }
    record("Ingest over hostile input", "\n".join(table), figures, "hostile_ingest.json")
    lost_after_gaps = figures["after_gap_lines_planted"] - figures["after_gap_lines_kept"]
    return 1 if figures["crashes"] or figures["good_lines_lost"] or lost_after_gaps else 0


if __name__ == "__main__":
    sys.exit(main())
