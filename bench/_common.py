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
DATASETS = ROOT.parent / "shared" / "datasets"
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
