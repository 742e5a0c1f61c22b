"""Ingest on a one-machine multi-node Ray cluster against a single node.

Runs ``run_ingest`` on the same input, in this process, on two layouts:

* one node: a local Ray with ``--cpus`` logical CPUs;
* several nodes: ``ray.cluster_utils.Cluster`` with a CPU-less head (as in
  cluster.yaml) and ``--workers`` worker nodes of ``--cpus / --workers`` CPUs
  each, all raylets on this host.

Both layouts have the same number of logical CPUs on the same cores, so the
comparison shows what spreading over nodes costs (object transfers between
raylets, more processes) and that the output is the same, not a speed-up.
Reports stage times, the nodes each stage ran on, the peak memory of the
process tree and a digest of the windows table.

    python bench/ingest_multinode.py --lines 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402
from ingest_throughput import CONFIG, WORK, _tree_rss, ensure_input  # noqa: E402

from logad.ray_env import prepare_ray_env  # noqa: E402

prepare_ray_env()
os.environ.setdefault("RAY_ADDRESS", "local")  # start our own Ray, never join another `ray start` cluster


def digest(out: Path) -> tuple[str, int]:
    """A content hash of the windows table: ids, event ids, line count and bytes, label."""
    from logad.windows import read_windows

    w = read_windows(out).sort_values("window_id")
    h = hashlib.sha256()
    for r in w.itertuples():
        h.update(f"{r.window_id}|{list(r.event_ids)}|{len(r.lines)}|{sum(map(len, r.lines))}|{r.label}\n".encode())
    return h.hexdigest()[:16], len(w)


def run_layout(name: str, path: Path, cpus: int, workers: int, repeats: int, shard_bytes: int) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from logad.pipelines.ingest import run_ingest
    from logad.ray_env import init_ray
    from logad.sources.config import load_source_config

    peak = {"tree": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["tree"] = max(peak["tree"], _tree_rss(os.getpid())[0])
            time.sleep(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    cluster = None
    if workers == 0:
        init_ray(num_cpus=cpus, progress=False)
    else:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(workers):
            cluster.add_node(num_cpus=cpus // workers)
        cluster.wait_for_nodes()
        init_ray(address=cluster.address, progress=False)
    start_s = time.perf_counter() - t
    config = load_source_config(CONFIG)
    runs = []
    out = WORK / f"out_multinode_{name}"
    try:
        for i in range(repeats):
            s = run_ingest(config, [str(path)], str(out), shard_bytes=shard_bytes, progress=False,
                           log=lambda _: None)
            runs.append({"seconds": s.seconds, "lines": s.lines_read, "windows": s.windows,
                         "nodes": {k: len(v) for k, v in s.nodes.items()}})
            print(f"{name} run {i + 1}: {s.seconds}", flush=True)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        done.set()
        th.join()
    d, n = digest(out)
    best = min(r["seconds"]["total"] for r in runs)
    return {"layout": name, "cpus": cpus, "workers": workers, "start_s": round(start_s, 2), "runs": runs,
            "best_s": best, "lines_per_s": round(runs[0]["lines"] / best), "digest": d, "windows": n,
            "peak_rss_tree_mib": round(peak["tree"] / 2**20)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--cpus", type=int, default=2, help="logical CPUs in both layouts")
    ap.add_argument("--workers", type=int, default=2, help="worker nodes of the multi-node layout")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--shard-mib", type=int, default=16, help="read shard size (plain input is split)")
    args = ap.parse_args()
    plain, _ = ensure_input(args.lines)
    layouts = [
        run_layout("one node", plain, args.cpus, 0, args.repeats, args.shard_mib << 20),
        run_layout(f"head + {args.workers} workers", plain, args.cpus, args.workers, args.repeats,
                   args.shard_mib << 20),
    ]
    rows = [
        "| layout | nodes (CPU each) | lines | Ray start s | best ingest s | lines/s | parse s | mine s | match+group+write s "
        "| nodes used by parse / group | peak RSS, process tree (MiB) | windows | windows digest |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in layouts:
        b = min(r["runs"], key=lambda x: x["seconds"]["total"])
        nodes = f"1 ({r['cpus']})" if r["workers"] == 0 else f"head (0) + {r['workers']} × {r['cpus'] // r['workers']}"
        used = " / ".join(str(b["nodes"].get(k, 0)) for k in ("parse", "group"))
        rows.append(
            f"| {r['layout']} | {nodes} | {b['lines']:,} | {r['start_s']} | "
            f"{r['best_s']} | {r['lines_per_s']:,} | {b['seconds'].get('parse')} | {b['seconds'].get('mine')} | "
            f"{b['seconds'].get('match_group_write')} | {used} | {r['peak_rss_tree_mib']:,} | {r['windows']:,} | "
            f"`{r['digest']}` |"
        )
    same = layouts[0]["digest"] == layouts[1]["digest"]
    ratio = layouts[1]["best_s"] / layouts[0]["best_s"]
    notes = f"""
Both layouts have {args.cpus} logical CPUs on the same physical cores, so this measures what spreading
over Ray nodes costs and checks the output, not a speed-up. Ingest seconds are `run_ingest` alone
(best of {args.repeats}, Ray already started); input is plain text read in {args.shard_mib} MiB shards.
The digest hashes every window's id, event ids, line count, line bytes and label.

Windows tables identical: **{'yes' if same else 'NO'}**. Multi-node / one node time: **{ratio:.2f}×**.
"""
    record("Ingest on a one-machine multi-node cluster vs one node", "\n".join(rows) + "\n" + notes,
           {"layouts": layouts, "identical": same, "time_ratio": round(ratio, 3)}, "ingest_multinode.json")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
