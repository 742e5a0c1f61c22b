"""Serving latency and throughput: HTTP detect vs in-process scoring of the same lines.

Starts the service from serve/config.yaml on 127.0.0.1 (loopback only) with one
replica (fixed, so the numbers are about one replica),
sends bounded bursts of HDFS requests of 10, 100 and 1,000 lines at
concurrency 1, 4 and 16, and compares them with parsing + scoring the same
lines in this process (from_lines + explain, what the replicas run). Then
throughput against replicas (1, 2) for 1,000-line requests at
concurrency 16. Client, proxy and replicas share the machine.

    python bench/serve_latency.py [--seconds 4] [--max-requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import ROOT, record  # noqa: E402
from _serve_setup import BENCH_MODEL, build_registry, free_port, hdfs_chunks, in_child  # noqa: E402

SIZES = (10, 100, 1000)
CONCURRENCY = (1, 4, 16)


async def burst(url: str, bodies: list[bytes], concurrency: int, seconds: float, max_requests: int) -> dict:
    import aiohttp

    lat: list[float] = []
    server: list[float] = []
    lines = 0
    errors = 0
    stop = time.perf_counter() + seconds
    sent = 0

    async def worker(session: aiohttp.ClientSession, k: int) -> None:
        nonlocal sent, lines, errors
        i = k
        while time.perf_counter() < stop and sent < max_requests:
            sent += 1
            body = bodies[i % len(bodies)]
            i += concurrency
            t = time.perf_counter()
            async with session.post(url, data=body, headers={"Content-Type": "text/plain"}) as r:
                out = await r.json()
            if r.status != 200:
                errors += 1
                continue
            lat.append(time.perf_counter() - t)
            server.append(out["timing_ms"]["total"])
            lines += out["summary"]["lines"]

    t0 = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1e3
    return {"requests": len(lat), "errors": errors, "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "lines_per_s": lines / wall, "rps": len(lat) / wall,
            "server_p50_ms": float(np.percentile(server, 50)), "server_p99_ms": float(np.percentile(server, 99))}


async def healthz(url: str, n: int = 100) -> dict:
    """``GET /healthz`` one at a time: the fixed cost of a request through the proxy."""
    import aiohttp

    lat = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            t = time.perf_counter()
            async with session.get(url) as r:
                await r.read()
            lat.append(time.perf_counter() - t)
    a = np.array(lat[5:]) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def in_process(model_dir: Path, chunks: dict[int, list[list[str]]], reps: int) -> dict[int, dict]:
    from logad.methods import load_detector
    from logad.parsing import TemplateStore
    from logad.sources.config import SourceConfig
    from logad.windows.online import WindowBuilder

    det = load_detector(model_dir)
    builder = WindowBuilder(SourceConfig.model_validate_json((model_dir / "source.json").read_text()),
                            TemplateStore.load(model_dir / "templates.json"))
    out = {}
    for size, batch in chunks.items():
        lat = []
        for i in range(reps):
            t = time.perf_counter()
            frame, _ = builder(batch[i % len(batch)])
            det.explain(frame)
            lat.append(time.perf_counter() - t)
        a = np.array(lat[2:]) * 1e3  # first calls warm caches
        out[size] = {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
                     "lines_per_s": size / float(np.mean(a) / 1e3)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="per cell (bounded)")
    ap.add_argument("--max-requests", type=int, default=300, help="per cell (bounded)")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="app arg torch_threads (0: Ray's default, 1 torch thread for a 0.25-CPU replica)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    from ray import serve

    from logad.serving.local import start, stop

    work = Path(tempfile.mkdtemp(prefix="logad-serve-bench-"))
    t = time.perf_counter()
    lines = build_registry(work / "registry", work, BENCH_MODEL)["hdfs"]
    print(f"registry with default-size models built in {time.perf_counter() - t:.0f}s")
    chunks = {s: hdfs_chunks(lines, s, 40) for s in SIZES}
    bodies = {s: [("\n".join(c) + "\n").encode() for c in cs] for s, cs in chunks.items()}
    local = in_child(in_process, work / "hdfs", chunks, 40)  # torch stays out of the client's process

    fixed = {"Ingress": {"num_replicas": 1}}
    app_args = {"torch_threads": args.torch_threads}
    url = start(work / "registry", port=free_port(), config=ROOT / "serve" / "config.yaml",
                deployments=fixed, args=app_args, log=lambda _: None)
    detect = f"{url}/v1/sources/hdfs/detect"
    asyncio.run(burst(detect, bodies[100], 2, 2.0, 30))  # warm-up: model load, caches
    health = asyncio.run(healthz(f"{url}/healthz"))
    print(f"GET /healthz p50 {health['p50_ms']:.1f} ms  p99 {health['p99_ms']:.1f} ms")
    rows = []
    for size in SIZES:
        for conc in CONCURRENCY:
            r = asyncio.run(burst(detect, bodies[size], conc, args.seconds, args.max_requests))
            r.update(size=size, concurrency=conc)
            rows.append(r)
            print(f"{size:>5} lines  c={conc:<3} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                  f"{r['lines_per_s']:9,.0f} lines/s  ({r['requests']} req, {r['errors']} err)")

    scaling = []
    for replicas in (1, 2):
        start(work / "registry", port=int(url.rsplit(":", 1)[1]), config=ROOT / "serve" / "config.yaml",
              deployments={"Ingress": {"num_replicas": replicas}},
              args=app_args, log=lambda _: None)
        deadline = time.monotonic() + 120
        while serve.status().applications["logad"].deployments["Ingress"].replica_states.get("RUNNING", 0) != replicas:
            if time.monotonic() > deadline:
                raise SystemExit(f"the service did not reach {replicas} replicas in 120 s")
            time.sleep(0.5)
        asyncio.run(burst(detect, bodies[1000], 4, 1.5, 20))
        r = asyncio.run(burst(detect, bodies[1000], 16, args.seconds * 1.5, args.max_requests))
        r.update(replicas=replicas)
        scaling.append(r)
        print(f"replicas {replicas}: {r['lines_per_s']:,.0f} lines/s, p50 {r['p50_ms']:.0f} ms")
    stop()
    serve.shutdown()

    md = ["HDFS requests over HTTP (text/plain) to one replica (0.25 CPU; it parses and scores), "
          f"vs the same parse + explain in one process. Default-size FastLogAD (hidden 128, 2 layers); "
          f"torch_threads={args.torch_threads}. "
          "Client, Serve proxy and replicas share the machine's cores.", "",
          "`server` is the replica's own time per request (the response's `timing_ms.total`: body read, "
          "parse, score, answer built); the rest of the HTTP time is the client and Serve's proxy. "
          f"GET /healthz (no work): p50 {health['p50_ms']:.1f} ms, p99 {health['p99_ms']:.1f} ms.", "",
          "| lines/request | concurrency | HTTP p50 ms | HTTP p99 ms | server p50 ms | server p99 ms | HTTP lines/s | in-process p50 ms | in-process p99 ms | in-process lines/s |",
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lo = local[r["size"]]
        md.append(f"| {r['size']:,} | {r['concurrency']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                  f"{r['server_p50_ms']:.1f} | {r['server_p99_ms']:.1f} | "
                  f"{r['lines_per_s']:,.0f} | {lo['p50_ms']:.1f} | {lo['p99_ms']:.1f} | {lo['lines_per_s']:,.0f} |")
    goal = [r for r in rows if r["size"] == 1000 and r["concurrency"] == 1][0]
    md += ["", f"Goal p99 < 50 ms for 1,000-line requests at concurrency 1: "
           f"{'met' if goal['p99_ms'] < 50 else 'not met'} (p99 {goal['p99_ms']:.1f} ms).", "",
           "Throughput vs replicas (1,000-line requests, concurrency 16):", "",
           "| replicas | lines/s | requests/s | p50 ms | p99 ms |", "|---:|---:|---:|---:|---:|"]
    for r in scaling:
        md.append(f"| {r['replicas']} | {r['lines_per_s']:,.0f} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} |")
    text = "\n".join(md)
    if args.no_record:
        print(text)
    else:
        record(f"Serving latency: HTTP detect vs in-process (torch_threads={args.torch_threads})", text,
               {"http": rows, "healthz": health, "in_process": local, "replicas": scaling}, f"serve_latency_threads{args.torch_threads}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
