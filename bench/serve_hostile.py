"""Hostile requests against a running service: what they get back, and what they cost it.

Starts the service from serve/config.yaml on 127.0.0.1 with its default limits, an API
token and one replica (fixed, so there is one serving process to watch), then fires
each kind of hostile request a few times (decompression bombs, bodies, line counts and
lines over the limits, deep JSON, corrupt frames, odd source names and query values,
missing or wrong tokens) while a second client keeps sending good 1,000-line requests.
Records the answers by kind and by status (the goal: no 5xx), the replica's and the
proxy's peak RSS (VmHWM) during the attack, and how many of the good requests
succeeded. Last, one request at the limits (max_lines HDFS lines) shows what the
largest accepted request costs.

    python bench/serve_hostile.py [--repeat 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import gzip
import os
import secrets
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import ROOT, record  # noqa: E402
from _serve_setup import BENCH_MODEL, build_registry, free_port  # noqa: E402

MiB = 1 << 20


def descendants(title: str) -> list[int]:
    """This process's descendants whose process title holds ``title``."""
    parents, titles = {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                status = (d / "status").read_text()
                titles[int(d.name)] = (d / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
            except OSError:
                continue
            parents[int(d.name)] = int(next(x for x in status.splitlines() if x.startswith("PPid:")).split()[1])

    def mine(pid: int) -> bool:
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 1)
        return False

    return [p for p, t in titles.items() if title in t and mine(p)]


def mem_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def gzip_zeros(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return b"".join([*(c.compress(bytes(MiB)) for _ in range(size // MiB)), c.flush()])


def zstd_repeat(block: bytes, times: int) -> bytes:
    import zstandard

    c = zstandard.ZstdCompressor(level=1).compressobj()
    return b"".join([*(c.compress(block) for _ in range(times)), c.flush()])


def hostile_kinds(line: str, limits: dict, token: str) -> list[tuple[str, dict]]:
    """(kind, requests.request keyword arguments); every one should get a 4xx."""
    import zstandard

    text = {"Content-Type": "text/plain"}
    js = {"Content-Type": "application/json"}
    auth = {"Authorization": f"Bearer {token}"}
    zstd_text = zstandard.ZstdCompressor().compress((line + "\n").encode() * 50)
    too_many = limits["max_lines"] + 1
    body_cap = limits["max_body_bytes"]
    kinds = [
        ("gzip bomb (1 GiB of zeros)", dict(data=gzip_zeros(1 << 30), headers={**text, "Content-Encoding": "gzip"})),
        ("zstd bomb (10 GiB of zeros)", dict(data=zstd_repeat(bytes(MiB), 10 << 10),
                                            headers={**text, "Content-Encoding": "zstd"})),
        ("zstd bomb (1 GiB of 2-byte lines)", dict(data=zstd_repeat(b"a\n" * (MiB // 2), 1 << 10),
                                                   headers={**text, "Content-Encoding": "zstd"})),
        (f"{too_many:,} text lines (under the byte limits)",
         dict(data=zstandard.ZstdCompressor().compress(b"ab\n" * too_many), headers={**text, "Content-Encoding": "zstd"})),
        (f"{too_many:,} JSON lines (under the byte limits)",
         dict(data=gzip.compress(b'{"lines": [' + b'"ab",' * too_many + b'"ab"]}'),
              headers={**js, "Content-Encoding": "gzip"})),
        ("body over max_body_bytes (declared)", dict(data=b"x" * (body_cap + 1), headers=text)),
        ("body over max_body_bytes (chunked)", dict(data_factory=lambda: (bytes(MiB) for _ in range(body_cap // MiB + 2)),
                                                    headers=text)),
        ("one line over max_line_chars", dict(data=(line + "\n" + "x" * (limits["max_line_chars"] + 1) + "\n").encode(),
                                              headers=text)),
        ("100k nested JSON arrays", dict(data=b"[" * 100_000 + b"]" * 100_000, headers=js)),
        ("100k nested arrays as a line", dict(data=b'{"lines": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", headers=js)),
        ("100k nested objects", dict(data=b'{"a":' * 100_000 + b"1" + b"}" * 100_000, headers=js)),
        ("invalid UTF-8 in JSON", dict(data=b'{"lines": ["\xff\xfe"]}', headers=js)),
        ("corrupt zstd frame", dict(data=zstd_text + b"\xff" * 32, headers={**text, "Content-Encoding": "zstd"})),
        ("truncated zstd frame", dict(data=zstd_text[:-9], headers={**text, "Content-Encoding": "zstd"})),
        ("gzip header then garbage", dict(data=b"\x1f\x8b" + os.urandom(4096), headers={**text, "Content-Encoding": "gzip"})),
        ("unknown Content-Encoding", dict(data=b"a\n", headers={**text, "Content-Encoding": "br"})),
        ("wrong Content-Type", dict(data=b"<a/>", headers={"Content-Type": "application/xml"})),
        ("source ../x (encoded)", dict(path="..%2Fx")),
        ("source .. (encoded)", dict(path="%2E%2E")),
        ("source unicode", dict(path="%E6%97%A5%E6%9C%AC%E8%AA%9E")),
        ("source 5,000 characters", dict(path="s" * 5000)),
        ("source empty", dict(path="")),
        ("source NUL", dict(path="%00")),
        ("query explain=bogus", dict(query="explain=bogus")),
        ("query max_evidence=-1", dict(query="max_evidence=-1")),
        ("query max_evidence=1e99", dict(query="max_evidence=1e99")),
        ("query max_evidence of 400 digits", dict(query="max_evidence=" + "9" * 400)),
        ("query explain of 5,000 characters", dict(query="explain=" + "a" * 5000)),
        ("no token", dict(no_auth=True)),
        ("wrong token", dict(auth={"Authorization": f"Bearer {secrets.token_urlsafe(32)}"})),
        ("zstd bomb without a token", dict(no_auth=True, data=zstd_repeat(bytes(MiB), 10 << 10),
                                           headers={**text, "Content-Encoding": "zstd"})),
    ]
    out = []
    for kind, kw in kinds:
        kw.setdefault("auth", auth)
        out.append((kind, kw))
    return out


def fire(session, url: str, kw: dict, good_body: dict) -> int:
    path = kw.get("path", "hdfs")
    target = f"{url}/v1/sources/{path}/detect" + (f"?{kw['query']}" if "query" in kw else "")
    headers = {} if kw.get("no_auth") else dict(kw["auth"])
    headers.update(kw.get("headers", {}))
    data = kw["data_factory"]() if "data_factory" in kw else kw.get("data")
    if data is None:
        return session.post(target, json=good_body, headers=headers, timeout=300).status_code
    return session.post(target, data=data, headers=headers, timeout=300).status_code


def good_loop(url: str, body: bytes, token: str, stop: threading.Event, log: list) -> None:
    import requests

    s = requests.Session()
    headers = {"Content-Type": "text/plain", "Authorization": f"Bearer {token}"}
    while not stop.is_set():
        t = time.perf_counter()
        try:
            ok = s.post(f"{url}/v1/sources/hdfs/detect", data=body, headers=headers, timeout=120).status_code == 200
        except requests.RequestException:
            ok = False
        log.append((ok, time.perf_counter() - t))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1e3 if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="requests per hostile kind")
    ap.add_argument("--baseline-s", type=float, default=10.0, help="good requests alone, before the attack")
    ap.add_argument("--work", help="reuse this folder's registry (default: a new temporary one)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    import requests
    import yaml
    from ray import serve

    from logad.serving.local import start, stop

    work = Path(args.work or tempfile.mkdtemp(prefix="logad-serve-hostile-"))
    t = time.perf_counter()
    lines = build_registry(work / "registry", work, BENCH_MODEL)["hdfs"]
    print(f"registry ready in {time.perf_counter() - t:.0f}s")
    token = secrets.token_urlsafe(32)
    (work / "api_token").write_text(token + "\n")
    config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    limits = {k: config["applications"][0]["args"][k]
              for k in ("max_body_bytes", "max_decompressed_bytes", "max_lines", "max_line_chars")}
    url = start(work / "registry", port=free_port(), config=ROOT / "serve" / "config.yaml",
                deployments={"Ingress": {"num_replicas": 1}}, args={"api_token_file": str(work / "api_token")},
                log=lambda _: None, log_level="WARNING")
    replica, = descendants("ServeReplica:logad:Ingress")
    proxies = descendants("ProxyActor")
    good = ("\n".join(lines[:1000]) + "\n").encode()
    session = requests.Session()
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    for _ in range(5):  # warm-up: the model loads, caches fill
        assert session.post(f"{url}/v1/sources/hdfs/detect", data=good, headers=auth, timeout=120).status_code == 200

    # good requests alone, then with the attack running beside them
    stop_good, baseline = threading.Event(), []
    th = threading.Thread(target=good_loop, args=(url, good, token, stop_good, baseline))
    th.start()
    time.sleep(args.baseline_s)
    stop_good.set()
    th.join()
    kinds = hostile_kinds(lines[0], limits, token)
    rss_before = mem_mib(replica, "VmRSS")
    for pid in (replica, *proxies):
        reset_peak(pid)
    during: list = []
    stop_good.clear()
    th = threading.Thread(target=good_loop, args=(url, good, token, stop_good, during))
    th.start()
    by_kind: dict[str, Counter] = {}
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        for kind, kw in kinds:
            try:
                status = fire(session, url, kw, {"lines": lines[:50]})
            except requests.RequestException as exc:
                status = f"no answer ({type(exc).__name__})"
            by_kind.setdefault(kind, Counter())[status] += 1
    attack_s = time.perf_counter() - t0
    stop_good.set()
    th.join()
    peak = mem_mib(replica, "VmHWM")
    proxy_peak = max((mem_mib(p, "VmHWM") for p in proxies), default=float("nan"))
    rss_after = mem_mib(replica, "VmRSS")
    alive = descendants("ServeReplica:logad:Ingress") == [replica]

    # the largest request the limits accept
    reset_peak(replica)
    import zstandard

    n = limits["max_lines"]
    big = ("\n".join((lines * (n // len(lines) + 1))[:n]) + "\n").encode()  # the sample, repeated
    big_sent = zstandard.ZstdCompressor(level=3).compress(big)
    t = time.perf_counter()
    r = session.post(f"{url}/v1/sources/hdfs/detect?explain=none", data=big_sent, timeout=600,
                     headers={**auth, "Content-Encoding": "zstd"})
    big_s = time.perf_counter() - t
    big_peak = mem_mib(replica, "VmHWM")
    big_status = r.status_code
    stop()
    serve.shutdown()

    statuses = Counter()
    for c in by_kind.values():
        statuses.update(c)
    fivexx = sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500)
    unanswered = sum(v for k, v in statuses.items() if not isinstance(k, int))
    good_ok = sum(ok for ok, _ in during)
    md = [f"One replica (0.25 CPU) with serve/config.yaml's limits (max_body_bytes {limits['max_body_bytes']:,}, "
          f"max_decompressed_bytes {limits['max_decompressed_bytes']:,}, max_lines {limits['max_lines']:,}, "
          f"max_line_chars {limits['max_line_chars']:,}) and an API token; default-size FastLogAD on HDFS. "
          f"{len(kinds)} kinds of hostile request, {args.repeat} of each, one at a time, while a second client "
          "kept sending good 1,000-line requests. Client, proxy and replica share the machine's cores.", "",
          "| kind | requests | answers |", "|---|---:|---|"]
    for kind, c in by_kind.items():
        md.append(f"| {kind} | {sum(c.values())} | {', '.join(f'{k}: {v}' for k, v in sorted(c.items(), key=str))} |")
    md += ["", f"Answers by status: {', '.join(f'{k}: {v}' for k, v in sorted(statuses.items(), key=str))}; "
           f"5xx: {fivexx}; unanswered: {unanswered}.", "",
           f"Replica RSS {rss_before:.0f} MiB before the attack, peak {peak:.0f} MiB during it "
           f"(+{peak - rss_before:.0f} MiB), {rss_after:.0f} MiB after; the same replica process throughout: "
           f"{'yes' if alive else 'no'}. Proxy peak RSS {proxy_peak:.0f} MiB.", "",
           f"Good requests during the attack ({attack_s:.0f} s): {good_ok} of {len(during)} succeeded "
           f"({good_ok / max(1, len(during)):.1%}); p50 {pct([d for ok, d in during if ok], 50):.0f} ms, "
           f"p99 {pct([d for ok, d in during if ok], 99):.0f} ms, against p50 {pct([d for _, d in baseline], 50):.0f} ms, "
           f"p99 {pct([d for _, d in baseline], 99):.0f} ms with no attack.", "",
           f"Largest accepted request ({n:,} HDFS lines, {len(big) / MiB:.1f} MiB of text, "
           f"{len(big_sent) / MiB:.1f} MiB as zstd): status {big_status} in "
           f"{big_s:.1f} s, replica peak RSS {big_peak:.0f} MiB."]
    text = "\n".join(md)
    figures = {
        "limits": limits, "repeat": args.repeat, "kinds": len(kinds),
        "requests_by_kind": {k: {str(s): v for s, v in c.items()} for k, c in by_kind.items()},
        "responses_by_status": {str(k): v for k, v in statuses.items()},
        "hostile_requests": sum(statuses.values()), "server_errors_5xx": fivexx, "unanswered": unanswered,
        "replica_rss_before_mib": round(rss_before, 1), "replica_peak_rss_mib": round(peak, 1),
        "replica_rss_after_mib": round(rss_after, 1), "replica_survived": alive,
        "proxy_peak_rss_mib": round(proxy_peak, 1), "attack_s": round(attack_s, 1),
        "good_requests": len(during), "good_succeeded": good_ok,
        "good_success_fraction": round(good_ok / max(1, len(during)), 4),
        "good_p50_ms": round(pct([d for ok, d in during if ok], 50), 1),
        "good_p99_ms": round(pct([d for ok, d in during if ok], 99), 1),
        "baseline_requests": len(baseline),
        "baseline_p50_ms": round(pct([d for _, d in baseline], 50), 1),
        "baseline_p99_ms": round(pct([d for _, d in baseline], 99), 1),
        "largest_request_lines": n, "largest_request_status": big_status,
        "largest_request_s": round(big_s, 2), "largest_request_peak_rss_mib": round(big_peak, 1),
    }
    if args.no_record:
        print(text)
    else:
        record("Serving under hostile requests", text, figures, "serve_hostile.json")
    return 0 if fivexx == 0 and unanswered == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
