"""The HTTP service on several Ray nodes: replicas spread over the workers and answer.

A tiny FastLogAD is trained in this process on the bundled HDFS sample and
registered; Serve then runs on ``multinode_cluster`` (a CPU-less head and two
one-CPU workers) with two replicas of its one deployment. The replicas must
land on both workers (never the head), answer over real HTTP with the scores
in-process scoring gives, and keep answering after a worker node is removed.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import requests

from logad.parsing import TemplateMiner, mask_contents
from logad.sources.config import load_source_config
from logad.sources.lines import LineSplitter
from logad.windows.online import from_lines

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(
    hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
    generator_hidden_size=16, generator_num_layers=1, generator_num_heads=2,
    generator_intermediate_size=32, batch_size=32, warmup_epochs=1, epochs=2, min_hst_steps=0,
    learning_rate=1e-3, hst_learning_rate=1e-2, device="cpu", show_progress=False, seed=0,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory, hdfs_sample_lines):
    from logad.methods.fastlogad import FastLogAD
    from logad.registry import ModelRegistry

    config = load_source_config(ROOT / "data_pipelines" / "hdfs.yaml")
    lines = hdfs_sample_lines[:8000]
    miner = TemplateMiner(config.parsing)
    miner.add(mask_contents(LineSplitter(config).split(pa.array(lines)).content, config.parsing).to_pylist())
    store = miner.freeze()
    windows, _ = from_lines(lines, config, store)
    cut = int(len(windows) * 0.8)
    det = FastLogAD(TINY)
    det.fit(windows.iloc[:cut], windows.iloc[cut:])
    base = tmp_path_factory.mktemp("serve-multinode")
    det.save(base / "model")
    store.save(base / "model" / "templates.json")
    (base / "model" / "source.json").write_text(config.model_dump_json())
    reg = ModelRegistry(base / "registry")
    reg.register(base / "model", "hdfs", promote=True)
    probe = hdfs_sample_lines[8000:9500]
    expected_windows, _ = from_lines(probe, config, store)
    expected = dict(zip(expected_windows["window_id"], det.score(expected_windows), strict=True))
    return reg, probe, expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replica_nodes(deployment: str) -> list[str]:
    # straight from the GCS: the state API (ray.util.state) needs the dashboard, off here
    from ray._private import state

    return sorted(
        a["Address"]["NodeID"] for a in state.actors().values()
        if a["ActorClassName"] == f"ServeReplica:logad:{deployment}" and a["State"] == "ALIVE"
    )


def _detect(url: str, lines: list[str]) -> dict:
    r = requests.post(f"{url}/v1/sources/hdfs/detect", json={"lines": lines}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_replicas_spread_over_workers_and_survive_a_lost_node(multinode_cluster, model):
    from ray import serve

    from logad.serving.local import start, stop

    reg, probe, expected = model
    pinned = {"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.25}}
    # one proxy on the head: every node of this fake cluster shares the host's ports
    url = start(reg.root, port=_free_port(), config=ROOT / "serve" / "config.yaml",
                deployments={"Ingress": pinned}, log=lambda _: None)
    try:
        workers = set(multinode_cluster.worker_ids)
        for name in ("Ingress",):
            nodes = _replica_nodes(name)
            assert len(nodes) == 2 and set(nodes) <= workers, (name, nodes)
            assert len(set(nodes)) == 2, f"both {name} replicas on one node: {nodes}"

        for _ in range(6):  # several requests, so both replicas answer
            got = {w["window_id"]: w["score"] for w in _detect(url, probe)["windows"]}
            assert got.keys() == expected.keys()
            np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-5)

        # a worker node dies: its replicas are replaced on the other worker
        lost_id, survivor_id = multinode_cluster.worker_ids[1], multinode_cluster.worker_ids[0]
        lost = next(n for n in multinode_cluster.cluster.list_all_nodes() if n.node_id == lost_id)
        multinode_cluster.cluster.remove_node(lost)
        deadline, answered = time.monotonic() + 120, 0
        while time.monotonic() < deadline and answered < 3:
            try:
                r = requests.post(f"{url}/v1/sources/hdfs/detect", json={"lines": probe}, timeout=30)
                answered = answered + 1 if r.status_code == 200 else 0
            except requests.RequestException:
                answered = 0
            time.sleep(0.5)
        assert answered == 3, "the service did not recover after a worker node was removed"
        survivor = {survivor_id}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            len(_replica_nodes("Ingress")) == 2 and set(_replica_nodes("Ingress")) <= survivor
        ):
            time.sleep(1)
        assert set(_replica_nodes("Ingress")) <= survivor
    finally:
        stop()
        serve.shutdown()
