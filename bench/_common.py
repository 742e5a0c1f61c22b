"""Helpers shared by the benchmark scripts: machine facts and the results log."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

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


def record(title: str, markdown: str, figures: dict, json_name: str) -> None:
    """Append a section to docs/benchmarks.md and write the figures as JSON."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    if not DOC.exists():
        DOC.write_text("# Benchmarks\n\nEvery section is appended by a script under `bench/`; newest last.\n")
    section = f"\n## {title}\n\n- date: {now}\n- machine: {machine()}\n- command: `{command()}`\n\n{markdown.strip()}\n"
    with DOC.open("a") as fh:
        fh.write(section)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"title": title, "date": now, "machine": machine(), "command": command(), **figures}
    (RESULTS / json_name).write_text(json.dumps(payload, indent=1, default=str))
    print(section)


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
