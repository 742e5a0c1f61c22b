"""Ray Tune sweeps on a real local Ray: ASHA, the registered winner, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from logad.errors import ConfigError
from logad.methods import load_detector
from logad.registry import ModelRegistry
from logad.tuning import load_tune_spec, run_sweep
from logad.windows import read_windows, validate_windows

pytestmark = pytest.mark.usefixtures("ray_session")
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hdfs_eventid"
TINY = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, generator_hidden_size=16,
            generator_num_layers=1, generator_num_heads=2, generator_intermediate_size=32,
            warmup_epochs=1, batch_size=32, min_hst_steps=0)


def _windows_dir(path: Path, poison_test_labels: bool = False) -> Path:
    """400 normal HDFS sessions then 40 with injected unseen events, as an ingest output folder."""
    normal = [[int(x) for x in line.split()] for line in (FIXTURE / "hdfs_train").read_text().splitlines()][:440]
    seqs = normal[:400] + [s[:2] + [999, 999] + s[2:] for s in normal[400:440]]
    labels = [0] * 400 + [1] * 40
    if poison_test_labels:  # windows after the 300 training normals: test only
        labels = labels[:300] + [1 - y for y in labels[300:]]
    start = pd.Timestamp("2008-11-09 20:00:00") + pd.to_timedelta(np.arange(len(seqs)), unit="s")
    frame = pd.DataFrame({
        "source": "hdfs", "window_id": [f"blk_{i}" for i in range(len(seqs))], "start": start,
        "end": start + pd.Timedelta(seconds=1), "event_ids": seqs,
        "lines": [[f"E{e}" for e in s] for s in seqs], "label": pd.array(labels, dtype="Int8"),
    })
    (path / "windows").mkdir(parents=True)
    table = validate_windows(pa.Table.from_pandas(frame, preserve_index=False))
    pq.write_table(table, path / "windows" / "part-0.parquet")
    (path / "templates.json").write_text(json.dumps({"templates": []}))
    return path


def _spec_file(path: Path, **overrides) -> Path:
    spec = {
        "method": "fastlogad", "metric": "val_bce", "mode": "min", "num_samples": 1, "max_epochs": 4,
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources_per_trial": {"cpu": 1, "gpu": 0.5}, "max_concurrent_trials": 1,
        "protocol": "fastlogad", "split_params": {"num_train": 300}, "config": TINY,
        # the good learning rate first, then two that cannot learn: with one trial at a
        # time, ASHA's first rung deterministically stops the two weak ones
        "space": {"hst_learning_rate": {"type": "grid", "values": [1e-2, 1e-7, 1e-7]}},
    } | overrides
    path.write_text(yaml.safe_dump(spec))
    return path


def test_sweep_stops_weak_trials_and_registers_the_winner(tmp_path):
    windows = _windows_dir(tmp_path / "ingest")
    spec = load_tune_spec(_spec_file(tmp_path / "sweep.yaml"))
    result = run_sweep(spec, windows, "hdfs", storage=tmp_path / "tune", registry=str(tmp_path / "reg"),
                       log=lambda _: None, verbose=0)
    assert len(result.trials) == 3
    assert result.stopped_early >= 1, [(t.params, t.iterations, t.completed) for t in result.trials]
    assert result.best.completed and result.best.params["hst_learning_rate"] == 1e-2
    stopped = [t for t in result.trials if not t.completed]
    assert all(t.iterations < result.best.iterations for t in stopped)

    mv = result.registered
    assert (mv.source, mv.method, mv.version, mv.production, mv.serving) == ("hdfs", "fastlogad", 1, True, True)
    assert mv.sweep["trial_id"] == result.best.trial_id and mv.sweep["metric"] == "val_bce"
    # the registered model is the best trial's checkpoint: identical scores
    ckpt = next(Path(result.experiment_path).glob(f"*{result.best.trial_id}*/checkpoint_*"))
    data = read_windows(windows)
    registered = load_detector(ModelRegistry(tmp_path / "reg").fetch(mv))
    np.testing.assert_array_equal(registered.score(data), load_detector(ckpt).score(data))
    assert (Path(result.model_dir) / "templates.json").is_file()

    with pytest.raises(ConfigError, match="already exists"):
        run_sweep(spec, windows, "hdfs", storage=tmp_path / "tune", log=lambda _: None, verbose=0)


def test_test_labels_never_reach_a_trial(tmp_path):
    """Flipping every test-only label changes nothing a sweep computes."""
    spec = load_tune_spec(_spec_file(
        tmp_path / "sweep.yaml", scheduler={"type": "fifo"}, max_epochs=2,
        space={"mask_ratio": {"type": "choice", "values": [0.5]}}))
    metrics = []
    for poison in (False, True):
        out = tmp_path / f"p{int(poison)}"
        res = run_sweep(spec, _windows_dir(out / "ingest", poison), "hdfs", storage=out / "tune",
                        log=lambda _: None, verbose=0)
        metrics.append(res.best.best_metric)
    assert metrics[0] == metrics[1]


def test_bad_sweep_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="hidden_szie"):
        load_tune_spec(_spec_file(tmp_path / "a.yaml", space={"hidden_szie": {"type": "choice", "values": [8]}}))
    with pytest.raises(ConfigError, match=r"space\.lr.*loguniform needs low > 0|low > 0"):
        load_tune_spec(_spec_file(tmp_path / "b.yaml", space={"lr": {"type": "loguniform", "low": 0, "high": 1}}))
    with pytest.raises(ConfigError, match="schedular"):
        load_tune_spec(_spec_file(tmp_path / "c.yaml", schedular={"type": "asha"}))
    assert load_tune_spec(Path(__file__).resolve().parents[2] / "tune" / "fastlogad.yaml").method == "fastlogad"


def _trial_rows(experiment: Path) -> dict[str, list[dict]]:
    """Every trial's reported rows (its result.json), by trial folder name."""
    out = {}
    for d in sorted(p for p in experiment.iterdir() if (p / "result.json").is_file()):
        rows = []
        for line in (d / "result.json").read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # the line being written right now
                pass
        out[d.name] = rows
    return out


def _finished(trials: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The trials the sweep has recorded as finished: their final, checkpointed report."""
    return {name: rows for name, rows in trials.items() if any(r.get("fit_complete") for r in rows)}


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    """SIGKILL a real `logad tune` (driver and its local Ray) once trials have finished;
    `logad tune --resume` runs only the others, and the finished ones keep their results."""
    from logad.cli import main

    windows = _windows_dir(tmp_path / "ingest")
    grid = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    spec_path = _spec_file(
        tmp_path / "sweep.yaml", method="pca", metric="val_mean_score", scheduler={"type": "fifo"},
        max_epochs=None, config={}, resources_per_trial={"cpu": 1}, max_concurrent_trials=1,
        space={"variance": {"type": "grid", "values": grid}})
    storage = tmp_path / "tune"
    experiment = storage / "pca-hdfs"
    args = ["tune", str(spec_path), "--windows", str(windows), "--source", "hdfs", "--storage", str(storage)]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ADDRESS": "local"}  # its own local Ray
    proc = subprocess.Popen([sys.executable, "-m", "logad.cli", *args], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if experiment.is_dir() and len(_finished(_trial_rows(experiment))) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()
    killed_at = time.time()
    finished = _finished(_trial_rows(experiment))
    assert 2 <= len(finished) < len(grid), sorted(finished)

    assert main([*args, "--registry", str(tmp_path / "reg"), "--resume"]) == 0

    after = _trial_rows(experiment)
    assert len(after) == len(grid)
    assert _finished(after).keys() == after.keys()
    for name, rows in finished.items():  # not fitted again: same start, same final figures
        assert {r["trial_started"] for r in after[name]} == {rows[0]["trial_started"]}, name
        final = [r for r in after[name] if r.get("fit_complete")][-1]
        assert final["val_mean_score"] == rows[-1]["val_mean_score"] and final["threshold"] == rows[-1]["threshold"]
    rerun = {name for name, rows in after.items() if max(r["trial_started"] for r in rows) > killed_at}
    assert rerun == set(after) - set(finished)  # exactly the trials that had not finished
    assert sorted(r[-1]["config"]["variance"] for r in after.values()) == grid
    assert ModelRegistry(tmp_path / "reg").get("hdfs").method == "pca"

    spec = load_tune_spec(spec_path)
    with pytest.raises(ConfigError, match="nothing to resume"):
        run_sweep(spec, windows, "hdfs", storage=tmp_path / "elsewhere", resume=True, log=lambda _: None)


def test_colog_sweep_embeds_each_message_once_for_every_trial(tmp_path):
    """The shipped tune/colog.yaml with a tiny space: the driver embeds the messages once,
    the trials embed none, and the winner is registered."""
    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "tune" / "colog.yaml").read_text())
    spec_path = tmp_path / "colog.yaml"
    spec_path.write_text(yaml.safe_dump(shipped | {
        "num_samples": 1, "max_epochs": 2, "scheduler": {"type": "fifo"}, "max_concurrent_trials": 2,
        "protocol": "random-session", "split_params": {"train_fraction": 0.6, "val_fraction": 0.2},
        "config": shipped["config"] | {"hidden": 16, "adaptation_heads": 1, "device": "cpu"},
        "space": {"layers": {"type": "choice", "values": [1]}, "heads": {"type": "choice", "values": [2]},
                  "learning_rate": {"type": "grid", "values": [3e-3, 1e-3]}}}))
    spec = load_tune_spec(spec_path)
    said: list[str] = []
    result = run_sweep(spec, _windows_dir(tmp_path / "ingest"), "hdfs", storage=tmp_path / "tune",
                       registry=str(tmp_path / "reg"), log=said.append, verbose=0)
    assert len(result.trials) == 2 and all(t.error is None for t in result.trials)
    assert any("computed once for every trial: EmbeddingCache(" in s for s in said)
    winner = load_detector(ModelRegistry(tmp_path / "reg").fetch(result.registered))
    assert winner.name == "colog" and winner.fit_report.extra["messages_embedded"] == 0


def test_clad_sweep_frames_once_for_every_trial(tmp_path):
    """The shipped tune/clad.yaml with a tiny space: the driver trains the dictionary and
    compresses the windows once, the trials frame nothing, and the winner is registered."""
    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "tune" / "clad.yaml").read_text())
    spec_path = tmp_path / "clad.yaml"
    tiny = dict(byte_embedding=8, encoder_blocks=2, num_heads=2, mlstm_chunk=16, projection=8,
                pretrain_epochs=1, max_frame_bytes=512, dict_size_bytes=4096, device="cpu")
    spec_path.write_text(yaml.safe_dump(shipped | {
        "num_samples": 1, "max_epochs": 2, "scheduler": {"type": "fifo"}, "max_concurrent_trials": 2,
        "split_params": {"train_fraction": 0.6, "val_fraction": 0.2},
        "config": shipped["config"] | tiny,
        "space": {"encoder_width": {"type": "choice", "values": [16]}, "d_model": {"type": "choice", "values": [16]},
                  "learning_rate": {"type": "grid", "values": [3e-3, 1e-3]}}}))
    spec = load_tune_spec(spec_path)
    said: list[str] = []
    result = run_sweep(spec, _windows_dir(tmp_path / "ingest"), "hdfs", storage=tmp_path / "tune",
                       registry=str(tmp_path / "reg"), log=said.append, verbose=0)
    assert len(result.trials) == 2 and all(t.error is None for t in result.trials)
    assert any("computed once for every trial: clad frames: dictionary id" in s for s in said)
    winner = load_detector(ModelRegistry(tmp_path / "reg").fetch(result.registered))
    assert winner.name == "clad" and winner.fit_report.extra["frames_built_in_fit"] is False
