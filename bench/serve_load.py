"""Autoscaling under load: replicas go up with the load and back down after it.

Starts the service from serve/config.yaml (autoscaling as configured there) on
127.0.0.1, stays idle a few seconds, sends HDFS requests from CONCURRENCY
clients for LOAD seconds, then idles until the replicas are back at their minimum
(or COOLDOWN seconds pass). Everything is bounded: loopback only, at most
--max-requests requests. A watcher samples, twice a second, the requests in
flight (client side) and the replicas from ``serve.status()``.

    python bench/serve_load.py [--concurrency 16] [--load 30] [--cooldown 45] [--lines 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def replicas(status, name: str) -> tuple[int, int]:
    """(running, target-ish: running + starting) replicas of one deployment."""
    dep = status.applications["logad"].deployments[name]
    states = dep.replica_states
    running = states.get("RUNNING", 0)
    return running, running + states.get("STARTING", 0) + states.get("PENDING_MIGRATION", 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--load", type=float, default=30.0, help="seconds of load")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds idle before the load")
    ap.add_argument("--cooldown", type=float, default=45.0, help="at most this long after the load")
    ap.add_argument("--lines", type=int, default=200, help="lines per request")
    ap.add_argument("--max-requests", type=int, default=20_000)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    import aiohttp
    from ray import serve

    from logad.serving.local import start, stop

    work = Path(tempfile.mkdtemp(prefix="logad-serve-load-"))
    lines = build_registry(work / "registry", work, BENCH_MODEL)["hdfs"]
    bodies = [("\n".join(c) + "\n").encode() for c in hdfs_chunks(lines, args.lines, 50)]
    url = start(work / "registry", port=free_port(), config=ROOT / "serve" / "config.yaml", log=lambda _: None)
    detect = f"{url}/v1/sources/hdfs/detect"

    inflight = 0
    timeline: list[dict] = []
    t0 = time.perf_counter()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            st = serve.status()
            run, total = replicas(st, "Ingress")
            timeline.append({"t": round(time.perf_counter() - t0, 1), "in_flight": inflight,
                             "running": run, "starting": total - run})
            done.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(args.idle)

    lat: list[float] = []
    errors = 0

    async def load() -> None:
        nonlocal inflight, errors
        stop_at = time.perf_counter() + args.load
        sent = 0

        async def worker(session, k):
            nonlocal inflight, errors, sent
            i = k
            while time.perf_counter() < stop_at and sent < args.max_requests:
                sent += 1
                inflight += 1
                t = time.perf_counter()
                try:
                    async with session.post(detect, data=bodies[i % len(bodies)],
                                            headers={"Content-Type": "text/plain"}) as r:
                        await r.read()
                        if r.status == 200:
                            lat.append(time.perf_counter() - t)
                        else:
                            errors += 1
                finally:
                    inflight -= 1
                i += args.concurrency

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            await asyncio.gather(*(worker(session, k) for k in range(args.concurrency)))

    load_start = time.perf_counter() - t0
    asyncio.run(load())
    load_end = time.perf_counter() - t0
    deadline = time.perf_counter() + args.cooldown
    while time.perf_counter() < deadline:
        time.sleep(1)
        if timeline and timeline[-1]["running"] <= 1 and timeline[-1]["starting"] == 0 \
                and time.perf_counter() - t0 > load_end + 3:
            break
    time.sleep(1)
    done.set()
    watcher.join()
    stop()
    serve.shutdown()

    peak = max(r["running"] for r in timeline)
    up = next((r["t"] for r in timeline if r["running"] > 1), None)
    back = next((r["t"] for r in timeline if r["t"] > load_end and r["running"] <= 1), None)
    a = np.array(lat) * 1e3
    summary = {
        "concurrency": args.concurrency, "lines_per_request": args.lines, "load_s": args.load,
        "load_start_s": round(load_start, 1), "load_end_s": round(load_end, 1), "requests": len(lat),
        "errors": errors, "p50_ms": float(np.percentile(a, 50)) if len(a) else None,
        "p99_ms": float(np.percentile(a, 99)) if len(a) else None,
        "rps": len(lat) / args.load, "peak_replicas": peak,
        "first_scale_up_s": up, "back_to_one_s": back,
    }
    # the timeline, thinned to rows where something changed (and one every 5 s)
    rows, last, last_t = [], None, -10.0
    for r in timeline:
        key = (min(r["in_flight"], 1), r["running"], r["starting"])
        if key != last or r["t"] - last_t >= 5:
            rows.append(r)
            last, last_t = key, r["t"]
    md = [f"{args.concurrency} clients sent {args.lines}-line HDFS requests from t={load_start:.1f}s to "
          f"t={load_end:.1f}s; autoscaling as in serve/config.yaml (1–4 replicas, target 4 "
          "ongoing requests, upscale delay 2 s, downscale delay 10 s, 0.25 CPU each).", "",
          f"- requests {len(lat):,} ({errors} errors), {summary['rps']:.1f} req/s, p50 "
          f"{summary['p50_ms']:.0f} ms, p99 {summary['p99_ms']:.0f} ms",
          f"- replicas: peak {peak}; first above 1 at t={up}s; back to 1 at t={back}s", "",
          "| t (s) | requests in flight | replicas running | replicas starting |",
          "|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['t']} | {r['in_flight']} | {r['running']} | {r['starting']} |")
    text = "\n".join(md)
    if args.no_record:
        print(text)
    else:
        record("Serving under load: autoscaling timeline", text, {"summary": summary, "timeline": timeline},
               "serve_load.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
