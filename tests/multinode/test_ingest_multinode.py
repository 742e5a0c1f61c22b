"""The ingest pipeline on several Ray nodes gives the windows one node gives.

The same input (the bundled HDFS sample as plain text, read in 1 MiB shards
so there are several read tasks) is ingested twice: on a single-node local
Ray with 2 CPUs, then on ``multinode_cluster`` (a CPU-less head and two
one-CPU workers, 2 CPUs in all). The stages must run on both workers, never
on the head, and the windows tables and counts must be identical.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import zstandard

from logad.pipelines.ingest import run_ingest
from logad.sources.config import load_source_config
from logad.windows import read_windows

ROOT = Path(__file__).resolve().parents[2]
SHARD_BYTES = 1 << 20
PARTITIONS = 4
COUNTS = ("lines_read", "lines_parsed", "lines_malformed", "lines_unknown_template", "lines_without_window",
          "windows", "windows_anomalous", "windows_normal", "templates")


@pytest.fixture(scope="module")
def plain_input(tmp_path_factory, hdfs_sample) -> Path:
    path = tmp_path_factory.mktemp("in") / "hdfs_sample.log"
    with open(hdfs_sample[0], "rb") as src, open(path, "wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    return path


def _ingest(inputs: Path, out: Path, labels: Path):
    config = load_source_config(ROOT / "data_pipelines" / "hdfs.yaml")
    return run_ingest(config, [str(inputs)], str(out), labels=str(labels), shard_bytes=SHARD_BYTES,
                      num_partitions=PARTITIONS, progress=False, log=lambda _: None)


def _table(out: Path) -> pd.DataFrame:
    w = read_windows(out).sort_values("window_id").reset_index(drop=True)
    for col in w.columns:  # list columns (event ids, lines) as tuples, so frames compare by value
        if w[col].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any():
            w[col] = w[col].map(tuple)
    return w


@pytest.fixture(scope="module")
def single_node_run(tmp_path_factory, plain_input, hdfs_sample):
    """The reference: a single-node local Ray (the session one if it is up)."""
    import ray

    from logad.ray_env import init_ray

    init_ray(num_cpus=2, progress=False)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 1
    out = tmp_path_factory.mktemp("single")
    return _ingest(plain_input, out, hdfs_sample[1]), _table(out)


@pytest.fixture(scope="module")
def multinode_run(single_node_run, multinode_cluster, tmp_path_factory, plain_input, hdfs_sample):
    # single_node_run comes first: multinode_cluster disconnects from the single-node Ray
    out = tmp_path_factory.mktemp("multi")
    return _ingest(plain_input, out, hdfs_sample[1]), _table(out)


def test_stages_run_on_every_worker_and_never_on_the_head(multinode_run, multinode_cluster):
    summary, _ = multinode_run
    c = multinode_cluster
    assert set(summary.nodes) >= {"read", "parse", "group"}
    used = set().union(*summary.nodes.values())
    assert used == set(c.worker_ids), summary.nodes
    assert c.head_id not in used
    # the parallel stages themselves spread, not just one of them
    assert len(set(summary.nodes["parse"]) | set(summary.nodes["group"])) == 2, summary.nodes


def test_multinode_windows_equal_single_node_windows(single_node_run, multinode_run):
    single, single_table = single_node_run
    multi, multi_table = multinode_run
    assert len(single.nodes["parse"]) == 1
    assert {k: getattr(multi, k) for k in COUNTS} == {k: getattr(single, k) for k in COUNTS}
    assert multi.windows > 0 and not multi.errors and not single.errors
    pd.testing.assert_frame_equal(multi_table, single_table)
