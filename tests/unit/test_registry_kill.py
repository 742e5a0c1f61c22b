"""The registry's writers, SIGKILLed at every write step, leave a registry readers can trust.

Each writer is a real process: `logad train --registry`, `logad registry promote`, and
a small process calling ``ModelRegistry.register`` (what `logad train --registry` and
`logad tune --registry` run once the model is saved; it starts in well under a second,
so every step can be tried). With ``LOGAD_REGISTRY_PAUSE_AT=K`` (or a step's name) the
registry announces each finished write step on stderr and stops after the K-th; the test
kills the process there (SIGKILL: nothing gets to clean up), for each K in turn, then checks what readers
see: only complete versions listed (by the API and by `logad registry list`), every
listed version's files matching its manifest, the production and serving aliases naming
listed versions, and the dead writers' leftovers removed by the next write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logad.registry import ModelRegistry
from logad.registry.store import PAUSE_ENV
from logad.windows import validate_windows

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hdfs_eventid"


@pytest.fixture(scope="module")
def windows(tmp_path_factory) -> Path:
    """An ingest-style folder: 300 normal HDFS sessions, then 30 with an unseen event."""
    seqs = [[int(x) for x in line.split()] for line in (FIXTURE / "hdfs_train").read_text().splitlines()][:330]
    seqs = seqs[:300] + [s[:1] + [999] + s[1:] for s in seqs[300:]]
    start = pd.Timestamp("2008-11-09 20:00:00") + pd.to_timedelta(np.arange(len(seqs)), unit="s")
    frame = pd.DataFrame({
        "source": "hdfs", "window_id": [f"blk_{i}" for i in range(len(seqs))], "start": start,
        "end": start + pd.Timedelta(seconds=1), "event_ids": seqs,
        "lines": [[f"E{e}" for e in s] for s in seqs],
        "label": pd.array([0] * 300 + [1] * 30, dtype="Int8"),
    })
    out = tmp_path_factory.mktemp("ingest")
    (out / "windows").mkdir()
    pq.write_table(validate_windows(pa.Table.from_pandas(frame, preserve_index=False)),
                   out / "windows" / "part-0.parquet")
    (out / "templates.json").write_text(json.dumps({"templates": []}))
    return out


def _run(cmd: list[str], *, kill_after_step: int | str | None = None) -> tuple[list[str], int, int]:
    """Run ``cmd``; with ``kill_after_step`` k (0-based, or a step's name), SIGKILL it
    once it reports that step, else let it run through. Returns the steps it reported,
    its exit status and its pid."""
    pause_at = 0 if kill_after_step is None else kill_after_step if isinstance(kill_after_step, str) \
        else kill_after_step + 1
    env = {**os.environ, PAUSE_ENV: str(pause_at)}
    proc = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    steps: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("registry step: "):
                steps.append(line.removeprefix("registry step: ").strip())
                if (len(steps) - 1 == kill_after_step) or steps[-1] == kill_after_step:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        rc = proc.wait(timeout=120)
        proc.stderr.close()  # type: ignore[union-attr]
    return steps, rc, proc.pid


def _logad(args: list[str], **kw) -> tuple[list[str], int, int]:
    return _run([sys.executable, "-m", "logad.cli", *args], **kw)


REGISTER = ("import sys; from logad.registry import ModelRegistry; "
            "ModelRegistry(sys.argv[1]).register(sys.argv[2], 'hdfs', promote=True)")


def _check(root: Path) -> list[tuple[str, int]]:
    """What a reader sees is whole: listed versions verify, aliases name listed versions."""
    reg = ModelRegistry(root)
    listed = reg.list()
    for mv in listed:
        reg.fetch(mv, verify=True)  # every file there, every checksum right
    tags = {(mv.method, mv.version) for mv in listed}
    for source in reg.sources():
        for method in reg.methods(source):
            prod = reg.production_version(source, method)
            assert prod is None or (method, prod) in tags, (method, prod, tags)
        serving = reg.serving(source)
        assert serving is None or serving in tags, (serving, tags)
        if serving is not None:
            reg.fetch(reg.get(source), verify=True)
    listing = subprocess.run([sys.executable, "-m", "logad.cli", "registry", "list", "--json",
                              "--registry", str(root)], capture_output=True, text=True, check=True)
    assert [(v["method"], v["version"]) for v in json.loads(listing.stdout)] == \
        [(mv.method, mv.version) for mv in listed]
    return sorted(tags)


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".tmp-*"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, windows) -> Path:
    from logad.methods.pca import PCADetector
    from logad.windows import read_windows

    frame = read_windows(windows)
    det = PCADetector()
    det.fit(frame.iloc[:250], frame.iloc[250:300])
    out = tmp_path_factory.mktemp("model") / "pca"
    det.save(out)
    return out


def test_register_killed_at_every_step_leaves_only_whole_versions(tmp_path, model_dir):
    root = tmp_path / "registry"
    cmd = [sys.executable, "-c", REGISTER, str(root), str(model_dir)]
    steps, rc, _ = _run(cmd)  # a full run: the steps a later run can be killed at
    assert rc == 0, steps
    assert steps[-1] == "serving.json in place" and "manifest written" in steps, steps
    assert _check(root) == [("pca", 1)]

    complete = production = serving = 1
    for k in range(len(steps)):
        seen, rc, pid = _run(cmd, kill_after_step=k)
        assert rc == -signal.SIGKILL and len(seen) == k + 1, (k, seen)
        mine = complete + 1  # the number this run was writing
        complete += f"v{mine:06d} in place" in seen
        production = mine if "production.json in place" in seen else production
        serving = mine if "serving.json in place" in seen else serving
        assert _check(root) == [("pca", v) for v in range(1, complete + 1)], (k, seen)
        reg = ModelRegistry(root)
        assert reg.production_version("hdfs", "pca") == production, (k, seen)
        assert reg.serving("hdfs") == ("pca", serving), (k, seen)
        # each write removed the leftovers of the writers killed before it
        assert all(f"-{pid}-" in name for name in _leftovers(root)), (k, _leftovers(root))
    assert complete > 2 and production == serving == complete

    steps, rc, _ = _run(cmd)
    assert rc == 0 and _check(root)[-1] == ("pca", complete + 1)
    assert _leftovers(root) == []


def test_train_and_promote_killed_mid_write_leave_a_whole_registry(tmp_path, windows, model_dir):
    root = tmp_path / "registry"
    _run([sys.executable, "-c", REGISTER, str(root), str(model_dir)])
    assert _check(root) == [("pca", 1)]

    # `logad train --registry --promote` killed with its version in place, the aliases not yet
    train = ["train", "--method", "pca", "--windows", str(windows), "--output", str(tmp_path / "m"),
             "--registry", str(root), "--source", "hdfs", "--promote"]
    seen, rc, _ = _logad(train, kill_after_step="production.json written aside")
    assert rc == -signal.SIGKILL and seen[-1] == "production.json written aside", seen
    assert _check(root) == [("pca", 1), ("pca", 2)]
    reg = ModelRegistry(root)
    assert (reg.production_version("hdfs", "pca"), reg.serving("hdfs")) == (1, ("pca", 1))
    assert len(_leftovers(root)) == 1  # the alias it was about to put in place

    # `logad registry promote`, killed at each of its steps: production, then serving
    promote = ["registry", "promote", "hdfs", "pca", "2", "--registry", str(root)]
    for k in range(3):
        seen, rc, _ = _logad(promote, kill_after_step=k)
        assert rc == -signal.SIGKILL and len(seen) == k + 1
        reg = ModelRegistry(root)
        _check(root)
        assert reg.production_version("hdfs", "pca") == (2 if "production.json in place" in seen else 1)
        assert reg.serving("hdfs") == ("pca", 2 if "serving.json in place" in seen else 1)
    steps, rc, _ = _logad(promote)
    assert rc == 0 and ModelRegistry(root).serving("hdfs") == ("pca", 2)
    assert _check(root) == [("pca", 1), ("pca", 2)]
    assert _leftovers(root) == []
