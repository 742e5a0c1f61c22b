"""Tune trials on several Ray nodes: concurrent trials spread over the workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from logad.methods import load_detector
from logad.tuning import load_tune_spec, run_sweep
from logad.windows import read_windows, validate_windows

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hdfs_eventid"


def _windows_dir(path: Path) -> Path:
    seqs = [[int(x) for x in line.split()] for line in (FIXTURE / "hdfs_train").read_text().splitlines()][:300]
    start = pd.Timestamp("2008-11-09") + pd.to_timedelta(np.arange(len(seqs)), unit="s")
    frame = pd.DataFrame({"source": "hdfs", "window_id": [f"blk_{i}" for i in range(len(seqs))],
                          "start": start, "end": start, "event_ids": seqs,
                          "lines": [[f"E{e}" for e in s] for s in seqs],
                          "label": pd.array([0] * len(seqs), dtype="Int8")})
    (path / "windows").mkdir(parents=True)
    pq.write_table(validate_windows(pa.Table.from_pandas(frame, preserve_index=False)),
                   path / "windows" / "part-0.parquet")
    return path


def test_trials_spread_over_worker_nodes(multinode_cluster, tmp_path):
    spec_file = tmp_path / "sweep.yaml"
    spec_file.write_text(yaml.safe_dump({
        "method": "deeplog", "metric": "val_loss", "mode": "min", "num_samples": 1, "max_epochs": 3,
        "scheduler": {"type": "fifo"}, "resources_per_trial": {"cpu": 1},
        "protocol": "chronological", "config": {"hidden_size": 16, "embedding_size": 8, "num_layers": 1},
        "space": {"lr": {"type": "grid", "values": [1e-3, 2e-3, 3e-3, 4e-3]}},
    }))
    windows = _windows_dir(tmp_path / "ingest")
    result = run_sweep(load_tune_spec(spec_file), windows, "hdfs", storage=tmp_path / "tune",
                       registry=str(tmp_path / "reg"), log=lambda _: None, verbose=0)
    nodes = {t.node_id for t in result.trials}
    assert all(t.completed for t in result.trials)
    # one CPU per trial, one CPU per worker, none on the head: both workers ran trials
    assert nodes == set(multinode_cluster.worker_ids), (nodes, multinode_cluster.worker_ids)
    assert result.max_concurrent_seen == 2
    data = read_windows(windows)
    assert load_detector(result.model_dir).score(data).shape == (len(data),)
