"""Several Ray nodes on one machine, for tests of how work spreads over a cluster.

Ray's ``cluster_utils.Cluster`` starts one raylet per node in this host's
process space: no autoscaler, no cloud, but real node ids, per-node resources
and per-node scheduling. See docs/operating.md for the real cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class MultiNodeCluster:
    """A running ``ray.cluster_utils.Cluster`` this process is connected to.

    Attributes:
        cluster: the ``Cluster`` (``add_node``/``remove_node`` for failure tests).
        address: its GCS address.
        head_id: node id of the head (advertises ``CPU: 0``, like cluster.yaml's head).
        worker_ids: node ids of the worker nodes, in the order they were added.
        worker_resources: the custom resources of each worker, same order.
    """

    cluster: object
    address: str
    head_id: str
    worker_ids: list[str] = field(default_factory=list)
    worker_resources: list[dict[str, float]] = field(default_factory=list)


# The workers: what `multinode_cluster` starts. Each worker has one logical CPU
# (two workers on this 2-core box equal the single-node fixture's 2 CPUs) and a
# custom resource naming it, so a test can pin work to one node. The second
# worker carries a fake one-GPU resource (`accelerator_type:A10G`) and the
# `pool: gpu` label, like cluster.yaml's gpu_worker, for placement tests that
# need no real GPU.
WORKERS = (
    {"num_cpus": 1, "resources": {"node_w1": 1}, "labels": {"pool": "cpu"}},
    {"num_cpus": 1, "resources": {"node_w2": 1, "accelerator_type:A10G": 1}, "labels": {"pool": "gpu"}},
)


@pytest.fixture(scope="module")
def multinode_cluster() -> Iterator[MultiNodeCluster]:
    """A head and two worker nodes on this machine, with this process connected.

    Layout (see ``WORKERS``): the head advertises ``CPU: 0`` (coordinator only,
    as in cluster.yaml), so every task or actor that needs a CPU runs on a
    worker; worker 1 has ``{CPU: 1, node_w1: 1}`` and label ``pool=cpu``,
    worker 2 has ``{CPU: 1, node_w2: 1, accelerator_type:A10G: 1}`` and label
    ``pool=gpu``. Ask for ``resources={"node_w2": 1}`` to pin work to worker 2.

    Module-scoped: a module that uses it gets its own cluster (≈ 5 s to start,
    ≈ 0.6 GB). It disconnects this process from any Ray it was connected to
    first (such as the integration tests' ``ray_session``; tests that run
    later and call ``init_ray`` start a fresh local Ray) and shuts everything
    down afterwards (``ray.shutdown`` and ``Cluster.shutdown``; never
    ``ray stop``, which would kill other users' Ray on a shared host).

    Use it for placement tests: Ray Data stages, Tune trials or Serve replicas
    spreading over nodes (compare node ids with ``head_id``/``worker_ids``),
    and node loss (``cluster.remove_node``).
    """
    import ray
    from ray.cluster_utils import Cluster

    from logad.ray_env import init_ray

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        nodes = [cluster.add_node(**spec) for spec in WORKERS]
        cluster.wait_for_nodes()
        init_ray(address=cluster.address, progress=False)
        yield MultiNodeCluster(
            cluster=cluster,
            address=cluster.address,
            head_id=cluster.head_node.node_id,
            worker_ids=[n.node_id for n in nodes],
            worker_resources=[dict(spec["resources"]) for spec in WORKERS],
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


def pytest_collection_modifyitems(items):
    for item in items:
        if "multinode" in str(item.fspath):
            item.add_marker(pytest.mark.ray)
