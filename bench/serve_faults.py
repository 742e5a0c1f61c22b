"""A replica killed under steady load: what the clients see, and how long until it is replaced.

Serves the benchmark registry (default-size FastLogAD, bench/_serve_setup.py) from
serve/config.yaml with the Ingress pinned at --replicas replicas on 127.0.0.1, and
runs CONCURRENCY closed-loop clients that post HDFS requests (zstd-compressed text,
as `logad detect` sends them) through `logad detect`'s own HTTP client
(``logad.commands.detect.post``, which resends lost requests). After --before
seconds one replica's worker process, found with Ray's state API, is killed with
SIGKILL. The load goes on until Serve has the replica count back, then --after
seconds more.

Every request's first attempt is what a client without retries would have got, so
one run gives both figures: requests failed without the retry (first attempt lost)
and with it (still failed after the retries). Latency includes the retries, and is
split by when the request started: before the kill, while a replica was missing,
and after the replacement was running.

    python bench/serve_faults.py [--replicas 2] [--concurrency 8] [--lines 200] [--before 15] [--after 15]
                                 [--path grpc|actor]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import ROOT, record  # noqa: E402
from _serve_setup import BENCH_MODEL, build_registry, free_port, hdfs_chunks  # noqa: E402


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--lines", type=int, default=200, help="lines per request")
    ap.add_argument("--before", type=float, default=15.0, help="seconds of load before the kill")
    ap.add_argument("--after", type=float, default=15.0, help="seconds of load after the replacement runs")
    ap.add_argument("--max-wait", type=float, default=120.0, help="give up waiting for the replacement after this")
    ap.add_argument("--retries", type=int, default=5, help="the client's --retries")
    ap.add_argument("--path", choices=["grpc", "actor"], default="grpc",
                    help="proxy to replica: gRPC (what logad serve sets up) or Ray actor calls (Serve's default)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.replicas < 2:
        ap.error("--replicas must be at least 2: with one, the kill leaves no replica to serve")

    if args.path == "actor":
        os.environ["RAY_SERVE_USE_GRPC_BY_DEFAULT"] = "0"
    from logad.ray_env import prepare_ray_env

    prepare_ray_env()  # Serve's request path as `logad serve` has it, set before Ray starts
    import ray

    # a Ray of its own, with the dashboard: the state API (list_actors) finds replica processes
    ray.init(address="local", include_dashboard=True, log_to_driver=False)
    from ray import serve

    from logad.commands.detect import _encode, post
    from logad.serving.local import replica_pids, start, stop

    work = Path(tempfile.mkdtemp(prefix="logad-serve-faults-"))
    lines = build_registry(work / "registry", work, BENCH_MODEL)["hdfs"]
    bodies = [_encode(c, "zstd") for c in hdfs_chunks(lines, args.lines, 50)]
    url = start(work / "registry", port=free_port(), config=ROOT / "serve" / "config.yaml",
                deployments={"Ingress": {"num_replicas": args.replicas}}, log_level="WARNING",
                log=lambda _: None)

    t0 = time.perf_counter()
    stop_load = threading.Event()
    requests: list[dict] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        i = k
        while not stop_load.is_set():
            body, headers = bodies[i % len(bodies)]
            i += args.concurrency
            reasons: list[str] = []
            start_t = time.perf_counter() - t0
            ok = True
            try:
                post(url, "hdfs", body, headers, explain="anomalous", timeout=60, retries=args.retries,
                     on_retry=lambda n, why, wait, seen=reasons: seen.append(why))
            except Exception as exc:  # noqa: BLE001 - counted: a request the retries did not save
                ok = False
                reasons.append(str(exc))
            with lock:
                requests.append({"start": start_t, "end": time.perf_counter() - t0, "ok": ok,
                                 "attempts": len(reasons) + (1 if ok else 0), "reasons": reasons[:3]})

    timeline: list[dict] = []

    def watch() -> None:
        while not stop_load.is_set():
            dep = serve.status().applications["logad"].deployments["Ingress"]
            states = dict(dep.replica_states)
            timeline.append({"t": round(time.perf_counter() - t0, 2), "running": states.get("RUNNING", 0),
                             "starting": states.get("STARTING", 0), "status": str(dep.status.value)})
            stop_load.wait(0.25)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.concurrency)]
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for t in threads:
        t.start()

    time.sleep(args.before)
    pids = replica_pids()
    victim_actor, victim = next(iter(pids.items()))
    os.kill(victim, signal.SIGKILL)
    kill_t = time.perf_counter() - t0
    print(f"t={kill_t:.1f}s: SIGKILL replica process {victim} (actor {victim_actor[:12]}); "
          f"{len(pids)} replicas before")

    back_t = None
    deadline = time.perf_counter() + args.max_wait
    while time.perf_counter() < deadline:
        now = replica_pids()
        dep = serve.status().applications["logad"].deployments["Ingress"]
        if (victim not in now.values() and len(now) == args.replicas
                and dep.replica_states.get("RUNNING", 0) == args.replicas):
            back_t = time.perf_counter() - t0
            break
        time.sleep(0.25)
    print(f"t={(back_t or float('nan')):.1f}s: {args.replicas} replicas running again")
    time.sleep(args.after)
    stop_load.set()
    for t in threads:
        t.join(timeout=120)
    watcher.join(timeout=10)
    stop()
    serve.shutdown()
    ray.shutdown()

    end_of_gap = back_t if back_t is not None else float("inf")
    phases = {
        "before": [r for r in requests if r["start"] < kill_t],
        "during": [r for r in requests if kill_t <= r["start"] < end_of_gap],
        "after": [r for r in requests if r["start"] >= end_of_gap],
    }
    first_lost = [r for r in requests if r["attempts"] > 1 or not r["ok"]]
    summary = {
        "replicas": args.replicas, "concurrency": args.concurrency, "lines_per_request": args.lines,
        "client_retries": args.retries, "proxy_to_replica": args.path, "kill_at_s": round(kill_t, 2),
        "replicas_back_at_s": None if back_t is None else round(back_t, 2),
        "replica_replaced_s": None if back_t is None else round(back_t - kill_t, 2),
        "requests_sent": len(requests),
        "failed_without_retry": len(first_lost),
        "failed_with_retry": sum(1 for r in requests if not r["ok"]),
        "retries": sum(r["attempts"] - 1 for r in requests if r["ok"]) + sum(
            len(r["reasons"]) - 1 for r in requests if not r["ok"]),
        "first_attempt_errors": sorted({why.split("; ")[0].replace(url, "URL")
                                        for r in first_lost for why in r["reasons"][:1]}),
        "phases": {
            name: {"requests": len(rs),
                   "p50_ms": _pct([(r["end"] - r["start"]) * 1e3 for r in rs if r["ok"]], 50),
                   "p99_ms": _pct([(r["end"] - r["start"]) * 1e3 for r in rs if r["ok"]], 99),
                   "retried": sum(1 for r in rs if r["attempts"] > 1)}
            for name, rs in phases.items()
        },
        "state_api": "ray.util.state.list_actors",
    }
    md = [
        f"{args.concurrency} clients posted {args.lines}-line HDFS requests (zstd) to {args.replicas} Ingress "
        f"replicas (serve/config.yaml, 0.25 CPU each, default-size FastLogAD) through `logad detect`'s "
        f"client (`--retries {args.retries}`), proxy to replica over "
        f"{'gRPC (as `logad serve` sets it up)' if args.path == 'grpc' else 'Ray actor calls (Serve default)'}; "
        f"one replica's process was SIGKILLed at t={kill_t:.1f}s.", "",
        f"- requests sent: {len(requests):,}; failed without the retry (first attempt lost): "
        f"{summary['failed_without_retry']}; failed with it: {summary['failed_with_retry']}",
        f"- what the lost first attempts got: {', '.join(summary['first_attempt_errors']) or 'nothing lost'}; "
        f"{summary['retries']} retries in all",
        f"- replica count back at {args.replicas}: {summary['replica_replaced_s']} s after the kill", "",
        "| requests started | requests | p50 (ms) | p99 (ms) | retried |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {"before": "before the kill", "during": "while a replica was missing",
              "after": "after the replacement ran"}
    for name, ph in summary["phases"].items():
        p50 = "-" if ph["p50_ms"] is None else f"{ph['p50_ms']:.0f}"
        p99 = "-" if ph["p99_ms"] is None else f"{ph['p99_ms']:.0f}"
        md.append(f"| {labels[name]} | {ph['requests']:,} | {p50} | {p99} | {ph['retried']} |")
    text = "\n".join(md)
    if args.no_record:
        print(text)
    else:
        title = "Serving: a replica killed under load" + ("" if args.path == "grpc" else " (actor-call path)")
        record(title, text, {"summary": summary, "timeline": timeline},
               "serve_faults.json" if args.path == "grpc" else "serve_faults_actor.json")
    return 0 if summary["failed_with_retry"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
