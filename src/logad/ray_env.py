"""Starting or joining Ray the way logad needs it.

Ray 2.60 turns token authentication on for every new local cluster, and a
client must know that *before* ``import ray``. Call :func:`prepare_ray_env`
(or :func:`init_ray`) before anything imports ray.
"""

from __future__ import annotations

import os

__all__ = ["init_ray", "prepare_ray_env"]

_SERVE_ENV = {
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}


def prepare_ray_env() -> None:
    """Set the environment Ray needs, without overriding what the user set."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Serve's request path, read by the proxy and the replicas of a cluster this process
    # starts (a cluster started by `ray start` needs them in its environment: cluster.yaml
    # sets them). gRPC from proxy to replica, user code and routing on the replica's and
    # proxy's own event loops: GET /healthz 8.6 -> 2-4 ms p50 on 2 cores (docs/serving.md).
    for name, value in _SERVE_ENV.items():
        os.environ.setdefault(name, value)


def init_ray(address: str | None = None, num_cpus: int | None = None, *, progress: bool = True) -> None:
    """Join the cluster at ``address`` / ``$RAY_ADDRESS``, or start a local one.

    With neither, Ray joins a cluster started by ``ray start`` on this machine
    if there is one (as on a cluster's head node), else starts a local one.
    ``"local"`` always starts a new local Ray with ``num_cpus`` CPUs.
    Does nothing when Ray is already initialised in this process.
    """
    prepare_ray_env()
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        kwargs: dict = {"include_dashboard": False, "log_to_driver": True}
        if address and address != "local":
            ray.init(address=address, **kwargs)
        elif address == "local":
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = False
