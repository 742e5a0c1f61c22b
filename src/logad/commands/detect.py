"""`logad detect`: the client of the HTTP API; sends log files in batches, prints flagged windows.

With ``--frames`` it posts compressed frames to the frames endpoint of a CLAD model instead:
a file that is already a stream of zstd frames (made with the source's dictionary by a log
shipper) as it is, and a text log cut into chunks of lines, each compressed into frames with
the dictionary fetched from the source's dictionary endpoint.
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import http.client
import io
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

__all__ = ["RETRY_STATUS", "Origins", "fetch_dictionary", "iter_lines", "post", "register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``detect`` subcommand."""
    p = subparsers.add_parser(
        "detect",
        help="score log files with a running `logad serve` (HTTP client)",
        description=(
            "Read FILEs (plain, .gz or .zst), post their lines in batches to "
            "URL/v1/sources/SOURCE/detect (zstd-compressed by default), and print the windows "
            "the service flags, with the lines that drove each score, then a summary. A request "
            "holds one FILE's lines and names it by its base name (?file=auth.log), which models "
            "that learned file types read. A "
            "line-level model's flagged lines are printed under their window as FILE:LINE. Windows "
            "are built per batch: a session whose lines fall into two batches is scored as two "
            "parts, so raise --batch-lines for long sessions. With --frames (CLAD models), "
            "compressed frames go to URL/v1/sources/SOURCE/frames instead: a FILE that is a stream "
            "of zstd frames made with the source's dictionary (it starts with the zstd magic "
            "number) is posted as it is, in batches of --batch-frames frames; any other FILE (or "
            "every FILE, with --chunk-lines) is read as lines, cut into chunks of --chunk-lines "
            "lines, and each chunk compressed into frames with the source's dictionary, fetched "
            "from URL/v1/sources/SOURCE/dictionary. Flagged frames are printed with the lines of "
            "the file they hold, or their place in a frame file."
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
    p.add_argument("--show-normal", action="store_true", help="print normal windows (or frames) too")
    p.add_argument("--frames", action="store_true",
                   help="post compressed frames to the frames endpoint (CLAD models), not lines to detect")
    p.add_argument("--chunk-lines", type=int, default=None, metavar="N",
                   help="with --frames: frame N lines at a time (default 100), even a FILE that is a "
                   "stream of zstd frames (then its lines are read and framed again)")
    p.add_argument("--batch-frames", type=int, default=1000, metavar="N",
                   help="with --frames: frames per request (default 1000; at most 8 MiB a request)")
    p.add_argument("--json", action="store_true", help="print each response as one JSON line")
    p.add_argument("--token-file", metavar="PATH",
                   help="file holding the API token of a service started with one (`logad serve "
                   "--token-file`), sent as `Authorization: Bearer`; default $LOGAD_API_TOKEN")
    p.add_argument("--token", help="the API token itself (visible to other users in `ps`: prefer "
                   "--token-file or $LOGAD_API_TOKEN)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per request")
    p.add_argument("--retries", type=int, default=5, metavar="N",
                   help="resend a request whose answer was lost (connection refused or reset, 429, "
                   "502, 503, 504, or a replica that died under it) up to N times, backing off "
                   "from 0.25 s to 4 s (default 5; 0: never)")
    p.set_defaults(func=run)


def iter_lines(path: str | Path) -> Iterator[str]:
    """Lines of a plain, gzip or zstd file, streamed, without their ``"\n"``.

    Lines end at ``"\n"`` only, as ``logad ingest`` reads them, so the n-th line here is
    line n of the file there; the service drops a trailing ``"\r"`` itself."""
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
        for line in io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="\n"):
            yield line[:-1] if line.endswith("\n") else line
    finally:
        raw.close()


class Origins:
    """Where the lines of one batch came from: request index (0-based) → (file, 1-based line).

    One entry per run of lines from one file: ``(first request index, file, its line number)``.
    """

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.runs: list[tuple[str, int]] = []

    def add(self, index: int, file: str, line_no: int) -> None:
        self.starts.append(index)
        self.runs.append((file, line_no))

    def __call__(self, index: int | None) -> tuple[str, int] | None:
        """The file and line of request line ``index``; None where unknown."""
        if index is None or index < 0 or not self.starts:
            return None
        k = bisect.bisect_right(self.starts, index) - 1
        if k < 0:
            return None
        file, first = self.runs[k]
        return file, first + index - self.starts[k]


def _batches(files: list[str], size: int) -> Iterator[tuple[list[str], Origins, str]]:
    """Batches of at most ``size`` lines of one file each, with where their lines came from and
    the file's base name (sent with the request: the service names windows after it, and
    models that learned file types read it). A batch never spans two files, so a line's
    context on the service is its own file's lines."""
    for f in files:
        batch: list[str] = []
        origins = Origins()
        name = Path(f).name
        for no, line in enumerate(iter_lines(f), 1):
            if not batch:
                origins.add(0, f, no)
            batch.append(line)
            if len(batch) >= size:
                yield batch, origins, name
                batch, origins = [], Origins()
        if batch:
            yield batch, origins, name


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


RETRY_STATUS = frozenset({429, 502, 503, 504})
"""Answers a request is retried on: overloaded, or no replica there to take it."""


class _Retryable(Exception):
    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.wait_s = reason, wait_s


def _service_error(body: bytes) -> str | None:
    """The service's own reason (``{"detail": ...}``), or None for any other body."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return None
    return None if detail is None else str(detail)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def post(url: str, source: str, body: bytes, headers: dict[str, str], *, explain: str = "anomalous",
         file: str | None = None, endpoint: str = "detect", token: str | None = None, timeout: float = 120.0,
         retries: int = 5,
         backoff_s: float = 0.25, max_backoff_s: float = 4.0,
         on_retry: Callable[[int, str, float], None] | None = None) -> dict:
    """POST one body to ``/v1/sources/SOURCE/ENDPOINT`` (``detect``, with ``explain`` and the
    lines' ``file`` name where given, or ``frames``); the decoded response, retrying where the
    request was lost.

    Scoring a body has no side effects, so a request whose answer never came is
    sent again, up to ``retries`` more times, after ``backoff_s`` doubling up to
    ``max_backoff_s`` (with jitter; a ``Retry-After`` header is honoured within
    that cap). Retried: a refused or reset connection, 429, 502, 503, 504, and a
    500 that is not the service's own JSON error, which is what Ray Serve's proxy
    answers for the requests a replica held when its process died. A timeout is
    not retried (the request may still be running), nor is any other answer.
    ``on_retry(attempt, reason, delay_s)`` is called before each retry.

    Raises:
        LogadError: the service is unreachable or answered with an error (its reason
            included), after the retries where the failure was retryable.
    """
    if token:
        headers = {**headers, "Authorization": f"Bearer {token}"}
    params = {"explain": explain} | ({"file": file} if file is not None else {})
    query = f"?{urlencode(params)}" if endpoint == "detect" else ""
    target = f"{url.rstrip('/')}/v1/sources/{source}/{endpoint}{query}"
    return _with_retries(lambda: _post_once(target, url, body, headers, timeout), retries=retries,
                         backoff_s=backoff_s, max_backoff_s=max_backoff_s, on_retry=on_retry)


def fetch_dictionary(url: str, source: str, *, token: str | None = None, timeout: float = 120.0,
                     retries: int = 5, on_retry: Callable[[int, str, float], None] | None = None) -> dict:
    """``GET /v1/sources/SOURCE/dictionary?format=json``: the source's codec settings
    (``codec``) and dictionary (``dictionary``, base64), retried as :func:`post` retries.

    Raises:
        LogadError: as :func:`post`.
    """
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    target = f"{url.rstrip('/')}/v1/sources/{source}/dictionary?format=json"
    return _with_retries(lambda: _post_once(target, url, None, headers, timeout, method="GET"),
                         retries=retries, backoff_s=0.25, max_backoff_s=4.0, on_retry=on_retry)


def _with_retries(send: Callable[[], dict], *, retries: int, backoff_s: float, max_backoff_s: float,
                  on_retry: Callable[[int, str, float], None] | None) -> dict:
    from logad.errors import LogadError

    delay = backoff_s
    for attempt in range(retries + 1):
        try:
            return send()
        except _Retryable as exc:
            if attempt >= retries:
                raise LogadError(exc.reason + (f" (after {retries} retries)" if retries else "")) from None
            wait = min(max_backoff_s, exc.wait_s if exc.wait_s is not None else delay * random.uniform(0.5, 1.0))
            if on_retry is not None:
                on_retry(attempt + 1, exc.reason, wait)
            time.sleep(wait)
            delay = min(max_backoff_s, delay * 2)
    raise AssertionError("unreachable")  # pragma: no cover


def _post_once(target: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float,
               method: str = "POST") -> dict:
    from logad.errors import LogadError

    req = urllib.request.Request(target, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            payload = exc.read()
        except (OSError, http.client.HTTPException):
            payload = b""
        reason = _service_error(payload)
        if exc.code in RETRY_STATUS or (exc.code == 500 and reason is None):
            raise _Retryable(f"{url} answered {exc.code}: {reason or exc.reason}",
                             _retry_after(exc.headers.get("Retry-After"))) from None
        raise LogadError(f"{url} answered {exc.code}: {reason or exc.reason}") from None
    except (TimeoutError, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(cause, TimeoutError):
            raise LogadError(f"{url} did not answer within {timeout:g} s; raise --timeout or "
                             "send smaller batches (--batch-lines)") from None
        if isinstance(cause, (ConnectionError, http.client.HTTPException)):
            raise _Retryable(f"cannot reach {url}: {cause}; is `logad serve` running?") from None
        raise LogadError(f"cannot reach {url}: {cause}; is `logad serve` running?") from None


def run(args: argparse.Namespace) -> int:
    from logad.errors import ConfigError

    if args.batch_lines < 1:
        raise ConfigError("--batch-lines must be at least 1")
    if args.retries < 0:
        raise ConfigError("--retries must be 0 or more")
    token = _token(args)
    if args.frames:
        return _run_frames(args, token)
    if args.chunk_lines is not None:
        raise ConfigError("--chunk-lines goes with --frames")
    totals = {"requests": 0, "lines": 0, "malformed_lines": 0, "unknown_template_lines": 0,
              "windows": 0, "anomalous_windows": 0, "anomalous_lines": 0}
    models: set[str] = set()
    line_level = False
    t0 = time.perf_counter()
    for lines, origins, name in _batches(args.files, args.batch_lines):
        body, headers = _encode(lines, args.compress)
        out = post(args.url, args.source, body, headers, explain=args.explain, file=name, token=token,
                   timeout=args.timeout, retries=args.retries, on_retry=_tell_retry(totals["requests"] + 1))
        totals["requests"] += 1
        for k in ("lines", "malformed_lines", "unknown_template_lines", "windows", "anomalous_windows",
                  "anomalous_lines"):
            totals[k] += out["summary"].get(k, 0)
        models.add(out["model"]["id"])
        line_level = line_level or bool(out["model"].get("line_level"))
        if args.json:
            for w in out["windows"]:  # the request index means nothing outside this batch
                for al in w.get("anomalous_lines", []):
                    where = origins(al["index"])
                    al["file"], al["file_line"] = where if where else (None, None)
            print(json.dumps(out))
            continue
        for w in out["windows"]:
            marked = w.get("anomalous_lines", [])
            if w["verdict"] != "anomalous" and not marked and not args.show_normal:
                continue
            print(f"{w['verdict'].upper():9} {w['window_id']}  score {_num(w['score'])} "
                  f"(threshold {_num(w['threshold'])}, {w['num_lines']} lines, "
                  f"{w['method']} v{w['model_version']})")
            shown = {al["line"] for al in marked}
            for ev in w.get("evidence", []):
                if ev["line"] not in shown:  # a flagged line is printed below, once
                    print(f"    line {ev['index']:>4}  p={ev['probability']:.2f}  {ev['line'][:160]}")
                near = [c for c in ev.get("context") or [] if c["offset"] != 0]
                if near:  # context-aware models: the neighbour the verdict leaned on most
                    c = near[0]
                    print(f"      attended line {c['offset']:+d} (weight {c['weight']:.2f})  {c['line'][:140]}")
            for al in marked:
                where = origins(al["index"])
                ref = f"{where[0]}:{where[1]}" if where else f"request line {al['index']}"
                print(f"    LINE  {ref}  score {_num(al['score'])}  {al['line'][:160]}")
    secs = time.perf_counter() - t0
    flagged = f", {totals['anomalous_lines']:,} anomalous lines" if line_level else ""
    print(
        f"detect {args.source}: {totals['lines']:,} lines in {totals['requests']} request(s), "
        f"{totals['windows']:,} windows, {totals['anomalous_windows']:,} anomalous{flagged}; "
        f"malformed {totals['malformed_lines']:,}, unknown template {totals['unknown_template_lines']:,}; "
        f"model {', '.join(sorted(models)) or '-'}; {secs:.1f}s"
    )
    return 0


# -- --frames: compressed frames to the frames endpoint (CLAD) --------------------------------------

_MAX_REQUEST_BYTES = 8 << 20
"""Largest body --frames sends (the service's default limit is 16 MiB)."""


def _frame_stream(path: str) -> bool:
    """Whether a file starts with a zstd frame or a skippable frame (a stream of frames)."""
    from logad.errors import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"no such file {p}")
    with open(p, "rb") as fh:
        head = fh.read(4)
    return len(head) == 4 and (head == b"\x28\xb5\x2f\xfd" or (head[1:] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50))


class _FramePoster:
    """Collects frames with where they came from, posts them in batches, prints and counts."""

    def __init__(self, args: argparse.Namespace, token: str | None, settings: dict) -> None:
        self.args, self.token, self.settings = args, token, settings
        self.frames: list[bytes] = []
        self.ids: list[str | None] = []  # a frame's own id (from an id frame), else None
        self.origins: list[dict] = []
        self.size = 0
        self.totals = {"requests": 0, "frames": 0, "bytes": 0, "anomalous_frames": 0}
        self.models: set[str] = set()

    def add(self, frame: bytes, origin: dict, frame_id: str | None = None) -> None:
        if self.frames and (len(self.frames) >= self.args.batch_frames
                            or self.size + len(frame) + 300 > _MAX_REQUEST_BYTES):
            self.flush()
        self.frames.append(frame)
        self.ids.append(frame_id)
        self.origins.append(origin)
        self.size += len(frame) + (len(frame_id) + 8 if frame_id else 0)

    def flush(self) -> None:
        if not self.frames:
            return
        import base64

        from logad.serving.frames import id_frame

        if self.settings["codec"] == "zstd":  # the binary form: the frames one after the other
            body = b"".join((id_frame(i) if i else b"") + f for f, i in zip(self.frames, self.ids, strict=True))
            headers = {"Content-Type": "application/zstd"}
        else:  # zlib streams do not say where they end: JSON
            body = json.dumps({"frames": [{"data": base64.b64encode(f).decode("ascii")} | ({"id": i} if i else {})
                                          for f, i in zip(self.frames, self.ids, strict=True)]}).encode()
            headers = {"Content-Type": "application/json"}
        a = self.args
        out = post(a.url, a.source, body, headers, endpoint="frames", token=self.token, timeout=a.timeout,
                   retries=a.retries, on_retry=_tell_retry(self.totals["requests"] + 1))
        self.totals["requests"] += 1
        self.totals["frames"] += out["summary"]["frames"]
        self.totals["bytes"] += out["summary"]["bytes"]
        self.totals["anomalous_frames"] += out["summary"]["anomalous_frames"]
        self.models.add(out["model"]["id"])
        for f, origin in zip(out["frames"], self.origins, strict=True):
            f.update(origin)
        if a.json:
            print(json.dumps(out))
        else:
            for f in out["frames"]:
                if f["verdict"] == "anomalous" or a.show_normal:
                    print(f"{f['verdict'].upper():9} frame {f['id']}  score {_num(f['score'])} "
                          f"(threshold {_num(f['threshold'])}, {f['bytes']} bytes)  {_where(f)}")
        self.frames, self.ids, self.origins, self.size = [], [], [], 0


def _where(f: dict) -> str:
    if f.get("first_line") is not None:
        last = f["last_line"]
        lines = f"{f['first_line']}" if last == f["first_line"] else f"{f['first_line']}-{last}"
        return f"{f['file']}:{lines}"
    return f"{f['file']} frame {f['file_frame']} at byte {f['file_offset']:,}"


def _run_frames(args: argparse.Namespace, token: str | None) -> int:
    """``--frames``: frame files posted as they are, text framed with the source's dictionary."""
    import base64
    import hashlib

    from logad.errors import ConfigError, DataError
    from logad.serving.frames import FrameBodyError, split_zstd_frames

    if args.batch_frames < 1:
        raise ConfigError("--batch-frames must be at least 1")
    if args.chunk_lines is not None and args.chunk_lines < 1:
        raise ConfigError("--chunk-lines must be at least 1")
    t0 = time.perf_counter()
    answer = fetch_dictionary(args.url, args.source, token=token, timeout=args.timeout, retries=args.retries,
                              on_retry=_tell_retry(0))
    settings = answer["codec"]
    poster = _FramePoster(args, token, settings)
    codec = None
    lines_read = 0
    for path in args.files:
        if args.chunk_lines is None and _frame_stream(path):
            try:
                frames = split_zstd_frames(Path(path).read_bytes())
            except FrameBodyError as exc:
                raise DataError(f"{path} is not a stream of whole zstd frames: {exc.reason}") from None
            for f in frames:
                if f.dict_id != settings["dict_id"]:
                    raise DataError(f"{path}: frame {f.index} at byte {f.offset:,} names dictionary id "
                                    f"{f.dict_id}, not the source's {settings['dict_id']}: it is not a stream of "
                                    "this source's frames; pass --chunk-lines N to read its lines and frame "
                                    "them with the source's dictionary")
                own = f.id if f.id != str(f.index) else None
                poster.add(f.data, {"file": path, "file_frame": f.index, "file_offset": f.offset}, own)
            continue
        if codec is None:
            from logad.methods.clad.frames import FrameCodec

            dictionary = base64.b64decode(answer["dictionary"])
            if hashlib.sha256(dictionary).hexdigest() != settings["dict_sha256"]:
                raise DataError(f"the dictionary {args.url} sent does not match its sha256")
            codec = FrameCodec(settings["codec"], int(settings["level"]), dictionary, int(settings["max_frame_bytes"]))
            if codec.dict_id != settings["dict_id"]:
                raise DataError(f"the dictionary {args.url} sent has id {codec.dict_id}, not {settings['dict_id']}")
        size = args.chunk_lines or 100
        chunk: list[str] = []
        first = 1
        for no, line in enumerate(iter_lines(path), 1):
            chunk.append(line)
            lines_read += 1
            if len(chunk) >= size:
                _frame_chunk(poster, codec, chunk, path, first)
                chunk, first = [], no + 1
        if chunk:
            _frame_chunk(poster, codec, chunk, path, first)
    poster.flush()
    t = poster.totals
    secs = time.perf_counter() - t0
    read = f", from {lines_read:,} lines" if lines_read else ""
    print(f"detect {args.source}: {t['frames']:,} frames ({t['bytes']:,} bytes{read}) in {t['requests']} "
          f"request(s), {t['anomalous_frames']:,} anomalous; model {', '.join(sorted(poster.models)) or '-'}; "
          f"{secs:.1f}s")
    return 0


def _frame_chunk(poster: _FramePoster, codec, chunk: list[str], path: str, first: int) -> None:
    frames, spans = codec.frame_lines(chunk)
    for f, (a, b) in zip(frames, spans, strict=True):
        poster.add(f, {"file": path, "first_line": first + a, "last_line": first + max(a, b - 1)})


def _tell_retry(request: int) -> Callable[[int, str, float], None]:
    def tell(attempt: int, reason: str, delay: float) -> None:
        print(f"request {request}: {reason}; retry {attempt} in {delay:.2f} s", file=sys.stderr)
    return tell


def _token(args: argparse.Namespace) -> str | None:
    """``--token``, else what ``--token-file`` holds, else ``$LOGAD_API_TOKEN`` (or the
    older ``$LOGAD_TOKEN``); None for none."""
    from logad.errors import ConfigError

    if args.token:
        return args.token.strip()
    if args.token_file:
        try:
            return Path(args.token_file).expanduser().read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the token file {args.token_file}: {exc}") from None
    return (os.environ.get("LOGAD_API_TOKEN") or os.environ.get("LOGAD_TOKEN") or "").strip() or None


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"
