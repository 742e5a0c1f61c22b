"""`logad detect`'s HTTP client resends lost requests, and only those (real HTTP on 127.0.0.1).

A scripted server answers each request with the next step of a script: a status with a
body, or a dropped connection (the socket closed with no answer, as when the process
behind it dies). The Serve-level case, a replica SIGKILLed under load, is in
tests/integration/test_serving_faults.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from logad.commands.detect import post
from logad.errors import LogadError

OK = (200, "application/json", json.dumps({"summary": {}, "windows": []}), {})
PLAIN_500 = (500, "text/plain; charset=utf-8", "Internal Server Error", {})  # Serve's proxy, replica gone
APP_500 = (500, "application/json", json.dumps({"detail": "internal error: KeyError: 'x'"}), {})
BUSY_503 = (503, "application/json", json.dumps({"detail": "no replica"}), {"Retry-After": "0"})
BAD_400 = (400, "application/json", json.dumps({"detail": "corrupt zstd frame at byte 7"}), {})
DROP = "drop"


@contextmanager
def scripted(*steps) -> Iterator[tuple[str, list[bytes]]]:
    """A server answering request k with ``steps[k]``; yields its URL and the bodies it got."""
    script, seen = list(steps), []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server name
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            step = script.pop(0) if script else OK
            if step == DROP:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            status, ctype, body, headers = step
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _post(url: str, **kw) -> dict:
    return post(url, "hdfs", b"line\n", {"Content-Type": "text/plain"}, backoff_s=0.01, timeout=5, **kw)


@pytest.mark.parametrize("lost", [PLAIN_500, BUSY_503, (502, "text/plain", "Bad Gateway", {}),
                                  (504, "text/plain", "", {}), DROP])
def test_a_lost_request_is_sent_again(lost):
    retries = []
    with scripted(lost, lost, OK) as (url, seen):
        assert _post(url, on_retry=lambda n, why, wait: retries.append((n, why)))["windows"] == []
    assert len(seen) == 3 and seen[0] == seen[2] == b"line\n"  # the same body each time
    assert [n for n, _ in retries] == [1, 2]


@pytest.mark.parametrize("answer", [APP_500, BAD_400, (401, "application/json", '{"detail": "bad token"}', {})])
def test_the_service_s_own_errors_are_not_retried(answer):
    with scripted(answer) as (url, seen), pytest.raises(LogadError, match=f"answered {answer[0]}"):
        _post(url)
    assert len(seen) == 1


def test_retries_are_bounded_and_say_why():
    with scripted(*[PLAIN_500] * 5) as (url, seen), \
            pytest.raises(LogadError, match=r"answered 500: Internal Server Error \(after 3 retries\)"):
        _post(url, retries=3)
    assert len(seen) == 4
    with scripted(PLAIN_500) as (url, seen), pytest.raises(LogadError):
        _post(url, retries=0)
    assert len(seen) == 1


def test_a_refused_connection_is_retried_then_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(LogadError, match=r"cannot reach .*after 2 retries"):
        _post(f"http://127.0.0.1:{port}", retries=2)
