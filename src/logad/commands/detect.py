"""`logad detect`: the client of the HTTP API; sends log files in batches, prints flagged windows."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["iter_lines", "register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``detect`` subcommand."""
    p = subparsers.add_parser(
        "detect",
        help="score log files with a running `logad serve` (HTTP client)",
        description=(
            "Read FILEs (plain, .gz or .zst), post their lines in batches to "
            "URL/v1/sources/SOURCE/detect (zstd-compressed by default), and print the windows "
            "the service flags, with the lines that drove each score, then a summary. Windows "
            "are built per batch: a session whose lines fall into two batches is scored as two "
            "parts, so raise --batch-lines for long sessions."
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="log source name, as registered")
    p.add_argument("files", nargs="+", metavar="FILE", help="log files (plain, .gz, .zst)")
    p.add_argument("--url", default=os.environ.get("LOGAD_URL", "http://127.0.0.1:8000"),
                   help="service base URL (default $LOGAD_URL or http://127.0.0.1:8000)")
    p.add_argument("--batch-lines", type=int, default=5000, metavar="N", help="lines per request (default 5000)")
    p.add_argument("--compress", choices=["zstd", "gzip", "none"], default="zstd",
                   help="Content-Encoding of the request bodies (default zstd)")
    p.add_argument("--explain", choices=["anomalous", "all", "none"], default="anomalous",
                   help="which windows list their evidence lines (default anomalous)")
    p.add_argument("--show-normal", action="store_true", help="print normal windows too")
    p.add_argument("--json", action="store_true", help="print each response as one JSON line")
    p.add_argument("--token", default=os.environ.get("LOGAD_TOKEN"),
                   help="bearer token for a gateway in front of the service (default $LOGAD_TOKEN); "
                   "Ray Serve's own HTTP proxy needs none")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per request")
    p.set_defaults(func=run)


def iter_lines(path: str | Path) -> Iterator[str]:
    """Lines of a plain, gzip or zstd file, streamed, without line breaks."""
    p = Path(path)
    if not p.is_file():
        from logad.errors import DataError

        raise DataError(f"no such file {p}")
    raw = open(p, "rb")  # noqa: SIM115 - closed below with the wrapper
    try:
        if p.suffix == ".gz":
            stream = gzip.GzipFile(fileobj=raw)
        elif p.suffix in (".zst", ".zstd"):
            import zstandard

            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        else:
            stream = raw
        for line in io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=""):
            yield line.rstrip("\r\n")
    finally:
        raw.close()


def _batches(files: list[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for f in files:
        for line in iter_lines(f):
            batch.append(line)
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


def _encode(lines: list[str], compress: str) -> tuple[bytes, dict[str, str]]:
    body = ("\n".join(lines) + "\n").encode("utf-8")
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if compress == "zstd":
        import zstandard

        body = zstandard.ZstdCompressor(level=3).compress(body)
        headers["Content-Encoding"] = "zstd"
    elif compress == "gzip":
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return body, headers


def post(url: str, source: str, body: bytes, headers: dict[str, str], *, explain: str = "anomalous",
         token: str | None = None, timeout: float = 120.0) -> dict:
    """POST one body; the decoded response.

    Raises:
        LogadError: the service is unreachable or answered with an error (its reason included).
    """
    from logad.errors import LogadError

    if token:
        headers = {**headers, "Authorization": f"Bearer {token}"}
    req = urllib.request.Request(f"{url.rstrip('/')}/v1/sources/{source}/detect?explain={explain}",
                                 data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("detail")
        except (ValueError, AttributeError):
            reason = exc.reason
        raise LogadError(f"{url} answered {exc.code}: {reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LogadError(f"cannot reach {url}: {exc}; is `logad serve` running?") from None


def run(args: argparse.Namespace) -> int:
    from logad.errors import ConfigError

    if args.batch_lines < 1:
        raise ConfigError("--batch-lines must be at least 1")
    totals = {"requests": 0, "lines": 0, "malformed_lines": 0, "unknown_template_lines": 0,
              "windows": 0, "anomalous_windows": 0}
    models: set[str] = set()
    t0 = time.perf_counter()
    for lines in _batches(args.files, args.batch_lines):
        body, headers = _encode(lines, args.compress)
        out = post(args.url, args.source, body, headers, explain=args.explain, token=args.token,
                   timeout=args.timeout)
        totals["requests"] += 1
        for k in ("lines", "malformed_lines", "unknown_template_lines", "windows", "anomalous_windows"):
            totals[k] += out["summary"].get(k, 0)
        models.add(out["model"]["id"])
        if args.json:
            print(json.dumps(out))
            continue
        for w in out["windows"]:
            if w["verdict"] != "anomalous" and not args.show_normal:
                continue
            print(f"{w['verdict'].upper():9} {w['window_id']}  score {w['score']:.4g} "
                  f"(threshold {w['threshold']:.4g}, {w['num_lines']} lines, "
                  f"{w['method']} v{w['model_version']})")
            for ev in w.get("evidence", []):
                print(f"    line {ev['index']:>4}  p={ev['probability']:.2f}  {ev['line'][:160]}")
    secs = time.perf_counter() - t0
    print(
        f"detect {args.source}: {totals['lines']:,} lines in {totals['requests']} request(s), "
        f"{totals['windows']:,} windows, {totals['anomalous_windows']:,} anomalous; "
        f"malformed {totals['malformed_lines']:,}, unknown template {totals['unknown_template_lines']:,}; "
        f"model {', '.join(sorted(models)) or '-'}; {secs:.1f}s"
    )
    return 0
