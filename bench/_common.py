"""Helpers shared by the benchmark scripts: machine facts and the results history.

Every benchmark keeps its runs in ``bench/results/<name>.json``: a JSON list, oldest
first, of runs like::

    {"title": ..., "date": "2026-12-04 17:40 UTC", "machine": ..., "command": ...,
     "commit": "cfd16d3",         # HEAD when the run started, where known
     "note": ...,                 # optional: what changed since the run before
     "figures": {...},            # what the script measured, as it passed them to record()
     "markdown": ...}             # the table the script printed

``record()`` appends a run and regenerates docs/benchmarks.md from every results file
(bench/render_docs.py), so the page always shows each benchmark's current figures.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import platform
import shlex
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("LOGAD_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({cpu}), {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def command() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def commit() -> str | None:
    """The short hash of HEAD, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def load_runs(path: Path) -> list[dict[str, Any]]:
    """The runs kept in one results file, oldest first ([] when there is none yet).

    A file in the older one-run shape (the figures beside title, date, machine and
    command) reads as a list of that one run."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    if isinstance(data, list):
        return data
    head = {k: data.get(k) for k in ("title", "date", "machine", "command")}
    figures = {k: v for k, v in data.items() if k not in head}
    return [{**head, "figures": figures, "markdown": ""}]


def save_runs(path: Path, runs: list[dict[str, Any]]) -> None:
    """Write a results file whole (through a temporary file, so a reader never sees half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(runs, indent=1, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def record(title: str, markdown: str, figures: dict, json_name: str, *,
           machine_text: str | None = None, note: str | None = None) -> dict[str, Any]:
    """Append a run to bench/results/<json_name> and regenerate docs/benchmarks.md.

    ``markdown`` is what the script printed (kept with the run, and shown on the page
    for benchmarks the renderer has no table of its own for); ``figures`` are the
    measurements. ``machine_text`` replaces the machine line (e.g. to name a GPU);
    ``note`` says what changed since the run before.
    """
    run: dict[str, Any] = {
        "title": title,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_text or machine(),
        "command": command(),
    }
    head = commit()
    if head:
        run["commit"] = head
    if note:
        run["note"] = note
    run["figures"] = figures
    run["markdown"] = markdown.strip() + "\n"
    path = RESULTS / json_name
    import render_docs  # bench/ is on sys.path: this module was imported from there

    # benchmarks finishing at once must not drop each other's runs
    with open(Path(tempfile.gettempdir()) / "logad-bench-record.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        save_runs(path, [*load_runs(path), run])
        page = render_docs.write_page(RESULTS, DOC)
    print(f"\n## {title}\n\n- date: {run['date']}\n- machine: {run['machine']}\n- command: `{run['command']}`\n\n"
          f"{run['markdown']}\nrecorded in {_shown(path)}; {_shown(page)} regenerated")
    return run


def liberty_windows(window_lines: int = 10) -> Path:
    """Liberty windows of ``window_lines`` consecutive messages, through ``logad ingest``.

    LogLLM's Liberty_test1.csv holds 100 windows of 100 messages with a label per
    message (``item_Label``); ``logad data prepare liberty`` turns it into lines and
    ``data_pipelines/liberty.yaml`` (its grouping swapped for fixed windows) parses
    them with Drain3. A window is anomalous when any of its messages is. (The
    larger Liberty_test2_dev.csv keeps one message of each 100-message window, so
    its contents cannot predict its labels.)
    """
    out = ROOT / "bench" / "scratch" / f"liberty_w{window_lines}"
    if (out / "windows").is_dir():
        return out
    csv_file = DATASETS / "liberty_logllm" / "Liberty_test1.csv"
    if not csv_file.is_file():
        sys.exit(f"missing {csv_file}: this benchmark needs LogLLM's Liberty CSVs in ../shared/datasets")
    from logad.pipelines.ingest import run_ingest
    from logad.ray_env import init_ray
    from logad.sources.config import FixedGrouping, load_source_config
    from logad.sources.datasets import prepare_liberty

    log_file, _ = prepare_liberty([csv_file], out / "lines")
    config = load_source_config(ROOT / "data_pipelines" / "liberty.yaml")
    config = config.model_copy(update={"grouping": FixedGrouping(window_lines=window_lines)})
    init_ray(progress=False)
    run_ingest(config, [str(log_file)], str(out), progress=False, log=lambda _: None)
    return out


SCRATCH = ROOT / "bench" / "scratch"


def logad_cli() -> str:
    """The ``logad`` console script of the interpreter running the benchmark."""
    return str(Path(sys.executable).with_name("logad"))


def ingest(name: str, config: str, inputs: list[Path], labels: Path | None = None, *,
           work: Path = SCRATCH) -> Path:
    """``logad ingest data_pipelines/CONFIG INPUTS --output WORK/NAME``, unless that output
    is already there (benchmarks reuse their ingested tables between runs)."""
    out = work / name
    if (out / "windows").is_dir():
        return out
    for p in inputs:
        if not p.exists():
            sys.exit(f"missing {p}: this benchmark needs the shared datasets (../shared/datasets)")
    cmd = [logad_cli(), "ingest", str(ROOT / "data_pipelines" / config), *map(str, inputs),
           "--output", str(out), "--no-progress"]
    if labels is not None:
        cmd += ["--labels", str(labels)]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


def forensic_folder(name: str) -> Path:
    """One of CoLog's forensic archives (``casper-rw``, ``dfrws-2009``) unpacked under
    bench/scratch/NAME; returns its ``logs/`` folder."""
    dest = SCRATCH / name
    if not (dest / "logs").is_dir():
        archive = DATASETS / "colog_forensic" / name / "all.log.tar.gz"
        if not archive.is_file():
            sys.exit(f"missing {archive}")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    return dest / "logs"


def hadoop_folder(work: Path = SCRATCH) -> Path:
    """The loghub Hadoop applications laid out by ``logad data prepare hadoop`` (with its
    labels.csv) under WORK/hadoop_raw."""
    out = work / "hadoop_raw"
    if not (out / "labels.csv").is_file():
        src = DATASETS / "hadoop_loghub"
        cmd = [logad_cli(), "data", "prepare", "hadoop", str(src / "Hadoop_dev.tar.zst"),
               str(src / "abnormal_label.txt"), "--output", str(out)]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


def classical_variant(config: dict[str, Any]) -> tuple[str, str]:
    """How a classical config differs from the defaults (feature groups, the TF-IDF analyzer,
    the cross-source cut): a file-name tag (``with_sbert``, ``without_tfidf``,
    ``only_tfidf_file`` where fewer groups are kept than left out, ``..._pc32``,
    ``char_tfidf``, ``validation_cut``; empty for the defaults) and the same in words for a
    title (``+sbert, -tfidf``, ``only tfidf, file``)."""
    from logad.methods.classical import ClassicalConfig
    from logad.methods.classical.features import DEFAULT_GROUPS

    groups = config.get("feature_groups", list(DEFAULT_GROUPS))
    added = [g for g in groups if g not in DEFAULT_GROUPS]
    dropped = [g for g in DEFAULT_GROUPS if g not in groups]
    if len(dropped) > len(groups):  # fewer kept than left out: name what is kept
        tag = "only_" + "_".join(groups)
    else:
        tag = "_".join([f"with_{g}" for g in added] + [f"without_{g}" for g in dropped])
    if "sbert" in groups and config.get("sbert_components"):
        tag += f"_pc{config['sbert_components']}"
        added.append(f"sbert_components {config['sbert_components']}")
    words = ([f"only {', '.join(groups)}"] if tag.startswith("only_") else
             [f"+{g}" for g in added] + [f"-{g}" for g in dropped])
    analyzer = config.get("tfidf_analyzer")
    if analyzer and analyzer != ClassicalConfig.model_fields["tfidf_analyzer"].default:
        tag = "_".join(filter(None, [tag, f"{analyzer}_tfidf"]))
        words.append(f"{analyzer} TF-IDF")
    if config.get("cross_source") is False:
        tag = "_".join(filter(None, [tag, "validation_cut"]))
        words.append("validation-tuned cut, not cross-source")
    return tag, ", ".join(words)
