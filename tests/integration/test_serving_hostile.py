"""The HTTP service under generated and hostile requests, with its API token on.

One real deployment (Ray Serve on 127.0.0.1, a tiny FastLogAD trained on the bundled
HDFS sample, the token in a file named in the app's args). Schemathesis generates
requests from the live /openapi.json and checks every answer against it; then the
requests no generator finds: decompression bombs, bodies and lines over the limits,
deep JSON, odd source names and query values, each answered 4xx with a reason while
the replica's memory stays bounded and the next good request is still served; and
the token: 401 without it, the open endpoints, and `logad detect` sending it.
"""

from __future__ import annotations

import csv
import gzip
import os
import secrets
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import schemathesis
import zstandard
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

ROOT = Path(__file__).resolve().parents[2]
DATA_PIPELINES = ROOT / "data_pipelines"

pytestmark = pytest.mark.usefixtures("ray_session")

LIMITS = {"max_body_bytes": 1 << 20, "max_decompressed_bytes": 4 << 20, "max_lines": 50_000,
          "max_line_chars": 8192, "alias_ttl_s": 0.5, "max_held_body_bytes": 3 << 19}  # 1.5 MiB
MiB = 1 << 20


def _replica_pids() -> list[int]:
    """The logad Ingress replicas among this process's descendants (the Ray it started)."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            status = (d / "status").read_text()
            titles[int(d.name)] = (d / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        ppid = next(x for x in status.splitlines() if x.startswith("PPid:"))
        parents[int(d.name)] = int(ppid.split()[1])

    def mine(pid: int) -> bool:
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 1)
        return False

    return [p for p, t in titles.items() if "ServeReplica:logad:Ingress" in t and mine(p)]


def _mem_kib(pid: int, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture(scope="module")
def service(tmp_path_factory, hdfs_sample, hdfs_sample_lines):
    from ray import serve
    from test_serving import _train

    from logad.registry import ModelRegistry
    from logad.serving.local import free_port, start, stop
    from logad.sources.config import load_source_config

    base = tmp_path_factory.mktemp("hostile")
    normal = {r["BlockId"] for r in csv.DictReader(open(hdfs_sample[1])) if r["Label"] != "Anomaly"}
    lines = hdfs_sample_lines[:6000]
    model = _train(base / "model", lines, load_source_config(DATA_PIPELINES / "hdfs.yaml"), normal)
    reg = ModelRegistry(base / "registry")
    reg.register(model, "hdfs", promote=True)
    token = secrets.token_urlsafe(32)
    token_file = base / "api_token"
    token_file.write_text(token + "\n")
    url = start(reg.root, port=free_port(), config=ROOT / "serve" / "config.yaml",
                args={**LIMITS, "api_token_file": str(token_file)},
                deployments={"Ingress": {"num_replicas": 1}}, log=lambda _: None)
    pids = _replica_pids()
    assert len(pids) == 1, pids
    yield SimpleNamespace(url=url, token=token, token_file=token_file, lines=lines, pid=pids[0],
                          auth={"Authorization": f"Bearer {token}"}, registry=reg.root)
    stop()
    serve.shutdown()


def _detect(service, lines, **kw):
    r = requests.post(f"{service.url}/v1/sources/hdfs/detect", json={"lines": lines}, headers=service.auth,
                      timeout=60, **kw)
    assert r.status_code == 200, r.text[:500]
    return r.json()


# -- generated requests, checked against the live schema ------------------------------------------

OPERATIONS = ["GET /healthz", "GET /v1/sources", "POST /v1/sources/{source}/detect"]
CASES: dict[tuple[str, str], dict[int, int]] = {}  # (operation, variant) -> status -> count


@pytest.fixture(scope="module")
def api_schema(service):
    return schemathesis.openapi.from_url(f"{service.url}/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label, source", [(OPERATIONS[0], None), (OPERATIONS[1], None),
                                           (OPERATIONS[2], None), (OPERATIONS[2], "hdfs")])
def test_generated_requests_get_documented_answers_and_no_5xx(api_schema, service, label, source, mode):
    """Every check schemathesis has, on requests generated from the live /openapi.json: no 5xx,
    status codes, content types, headers and bodies as documented, valid input accepted and
    invalid input refused, and the token enforced where the schema says it is needed. With
    ``source`` the path names the served source, so bodies and queries reach the model."""
    operation = api_schema.find_operation_by_label(label)
    if mode is GenerationMode.NEGATIVE and not (operation.path_parameters or operation.query or operation.body):
        pytest.skip("nothing to make invalid")
    fixed = {"path_parameters": {"source": source}} if source else {}
    key = (label, f"{mode.value}{', source hdfs' if source else ''}")

    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(max_examples=25, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case):
        # a text/plain body is any text: a "type-violating" value serialised to text (`false`)
        # is a valid one-line log, so refusing it is not expected of the service
        excluded = [negative_data_rejection] if getattr(case, "media_type", None) == "text/plain" else []
        status = case.call_and_validate(headers=service.auth, timeout=60, excluded_checks=excluded).status_code
        seen = CASES.setdefault(key, {})
        seen[status] = seen.get(status, 0) + 1

    check()


# -- what no generator sends ------------------------------------------------------------------------


def _gzip_zeros(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MiB)
    return b"".join([*(c.compress(chunk) for _ in range(size // MiB)), c.flush()])


def _zstd_repeat(block: bytes, times: int) -> bytes:
    c = zstandard.ZstdCompressor(level=1).compressobj()
    return b"".join([*(c.compress(block) for _ in range(times)), c.flush()])


TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}


def _hostile(line: str) -> list[tuple[str, int, str, dict]]:
    """(what, status, words the reason holds, requests.post keyword arguments)."""
    zstd_text = zstandard.ZstdCompressor().compress((line + "\n").encode() * 20)
    long_line = line + " " + "x" * 9000
    return [
        ("gzip bomb, 1 GiB of zeros in 1 MB", 413, "decompressed body is larger",
         dict(data=_gzip_zeros(1 << 30), headers={**TEXT, "Content-Encoding": "gzip"})),
        ("zstd bomb, 10 GiB of zeros in 330 kB", 413, "decompressed body is larger",
         dict(data=_zstd_repeat(bytes(MiB), 10 << 10), headers={**TEXT, "Content-Encoding": "zstd"})),
        ("zstd bomb of 1 GiB of short lines", 413, "decompressed body is larger",
         dict(data=_zstd_repeat(b"a\n" * (MiB // 2), 1 << 10), headers={**TEXT, "Content-Encoding": "zstd"})),
        ("1M tiny text lines, under the size limits", 413, "over the limit of 50,000",
         dict(data=zstandard.ZstdCompressor().compress(b"a\n" * MiB), headers={**TEXT, "Content-Encoding": "zstd"})),
        ("600k tiny JSON lines, under the size limits", 413, "over 50,000 lines",
         dict(data=gzip.compress(b'{"lines": [' + b'"a",' * 600_000 + b'"a"]}'),
              headers={**JSON, "Content-Encoding": "gzip"})),
        ("body over max_body_bytes, chunked (no Content-Length)", 413, "over the limit",
         dict(data=(bytes(64 << 10) for _ in range(40)), headers=TEXT)),
        ("body over max_body_bytes, declared", 413, "over the limit", dict(data=b"x" * (2 * MiB), headers=TEXT)),
        ("one over-long text line", 413, "line 2 (0-based) is 9,",
         dict(data=f"{line}\n{line}\n{long_line}\n".encode(), headers=TEXT)),
        ("one over-long JSON line", 413, "line 1 (0-based) is 9,", dict(json={"lines": [line, long_line]})),
        ("100k nested JSON arrays", 422, "found an array at character 0",
         dict(data=b"[" * 100_000 + b"]" * 100_000, headers=JSON)),
        ("100k nested arrays as lines", 422, "found an array at character 11",
         dict(data=b'{"lines": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", headers=JSON)),
        ("100k nested objects", 422, "unknown key",
         dict(data=b'{"a":' * 100_000 + b"1" + b"}" * 100_000, headers=JSON)),
        ("an extra key", 422, "unknown key 'meta'", dict(json={"lines": [line], "meta": {"a": 1}})),
        ("invalid UTF-8 in JSON", 400, "bad UTF-8 at byte 12", dict(data=b'{"lines": ["\xff\xfe"]}', headers=JSON)),
        ("corrupt zstd in the middle", 400, "corrupt zstd body",
         dict(data=zstd_text[:20] + b"\xff" * 16 + zstd_text[36:], headers={**TEXT, "Content-Encoding": "zstd"})),
        ("truncated zstd", 400, "in the middle of the frame that starts at byte 0",
         dict(data=zstd_text[:-5], headers={**TEXT, "Content-Encoding": "zstd"})),
        ("gzip of garbage", 400, "corrupt gzip body", dict(data=b"\x1f\x8b" + b"\0" * 64,
                                                          headers={**TEXT, "Content-Encoding": "gzip"})),
    ]


ODD_SOURCES = [("..%2Fx", 404), ("%2E%2E", 422), ("..", 404), ("%E6%97%A5%E6%9C%AC", 422), ("x" * 5000, 422),
               ("", 404), ("%00", 422), ("a%20b", 422), ("-x", 422), ("nope", 404)]
ODD_QUERIES = ["explain=everything", "max_evidence=-1", "max_evidence=1e99", "max_evidence=abc",
               "max_evidence=" + "9" * 400, "explain=all&explain=bogus", "explain=%00", "explain=" + "a" * 5000,
               "file=", "file=a%00b", "file=%0Aauth.log", "file=" + "a" * 5000]


def test_hostile_requests_get_a_4xx_with_a_reason_in_bounded_memory(service):
    line = service.lines[0]
    good = service.lines[:200]
    ref = _detect(service, good)
    cases = _hostile(line)
    pid = service.pid
    before = _mem_kib(pid, "VmRSS")
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart the peak (VmHWM) from now
    except OSError:
        pass
    detect = f"{service.url}/v1/sources/hdfs/detect"
    for what, status, words, kw in cases:
        r = requests.post(detect, timeout=120, headers={**service.auth, **kw.pop("headers", {})}, **kw)
        assert r.status_code == status, (what, r.status_code, r.text[:300])
        assert words in r.json()["detail"], (what, r.json())
        assert _detect(service, good)["windows"] == ref["windows"], what
    for name, status in ODD_SOURCES:
        r = requests.post(f"{service.url}/v1/sources/{name}/detect", json={"lines": good}, headers=service.auth,
                          timeout=60)
        assert r.status_code == status and r.json()["detail"], (name[:40], r.status_code, r.text[:300])
    for query in ODD_QUERIES:
        r = requests.post(f"{detect}?{query}", json={"lines": good}, headers=service.auth, timeout=60)
        detail = r.json()["detail"]
        assert r.status_code == 422 and isinstance(detail, str) and "query" in detail, (query[:40], r.text[:300])
        assert len(detail) < 1000  # a 5,000-character value is not echoed back whole
    peak = _mem_kib(pid, "VmHWM")
    print(f"replica RSS before {before / 1024:.0f} MiB, peak during {len(cases)} hostile requests "
          f"{peak / 1024:.0f} MiB")
    # each bomb would expand to 1-10 GiB; the limits let one request hold a few MiB
    assert (peak - before) * 1024 < 256 * MiB, (before, peak)
    assert _replica_pids() == [pid]  # the replica never died
    out = _detect(service, good)
    assert out["windows"] == ref["windows"]


def _slow_upload(service, declared: int, sent: bytes):
    """A detect request that declares ``declared`` body bytes, sends ``sent`` and waits."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(service.url)
    sock = socket.create_connection((u.hostname, u.port), timeout=30)
    sock.sendall((f"POST /v1/sources/hdfs/detect HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                  f"Authorization: Bearer {service.token}\r\nContent-Type: text/plain\r\n"
                  f"Content-Length: {declared}\r\n\r\n").encode() + sent)
    return sock


def _until(status: int, send, timeout_s: float = 30.0) -> requests.Response:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        r = send()
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_bodies_held_at_once_are_capped_per_replica_and_released(service):
    """Two slow uploads of 1 MiB each would hold 2 MiB in the replica (the cap is 1.5):
    the second gets 503 with Retry-After while the first is held, and once the first
    ends (its client hangs up halfway) the replica holds nothing and serves again."""
    body = "\n".join(service.lines).encode()[: 900 << 10]
    body = body[: body.rfind(b"\n") + 1]
    assert len(body) > 600 << 10

    def send() -> requests.Response:
        return requests.post(f"{service.url}/v1/sources/hdfs/detect", data=body, timeout=60,
                             headers={**service.auth, **TEXT})

    assert send().status_code == 200
    holder = _slow_upload(service, MiB, body[:4096])
    try:
        r = _until(503, send)  # the holder's request reaches the replica within moments
        assert r.status_code == 503, (r.status_code, r.text[:300])
        assert "retry" in r.json()["detail"] and r.headers.get("Retry-After") == "1"
    finally:
        holder.close()  # the client goes away in the middle of its body
    r = _until(200, send)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert _replica_pids() == [service.pid]


def test_a_lone_surrogate_escape_is_replaced_and_counted(service):
    line = service.lines[0]
    r = requests.post(f"{service.url}/v1/sources/hdfs/detect", headers={**service.auth, **JSON},
                      data=b'{"lines": ["' + line.encode() + b' \\ud800"]}', timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["summary"]["lines_with_replaced_bytes"] == 1


# -- the API token ------------------------------------------------------------------------------------


def test_v1_needs_the_token_and_the_open_endpoints_stay_open(service):
    url = service.url
    body = {"lines": service.lines[:50]}
    wrong = secrets.token_urlsafe(32)
    for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": f"Bearer {service.token[:-1]}"},
                    {"Authorization": f"Bearer {service.token}x"}, {"Authorization": f"Basic {service.token}"},
                    {"Authorization": service.token}, {"Authorization": "Bearer"}):
        for r in (requests.post(f"{url}/v1/sources/hdfs/detect", json=body, headers=headers, timeout=30),
                  requests.get(f"{url}/v1/sources", headers=headers, timeout=30)):
            assert r.status_code == 401, (headers, r.status_code, r.text)
            assert r.headers["WWW-Authenticate"].startswith("Bearer") and r.json()["detail"]
    # refused before the body is read: a client without the token cannot make it decompress
    r = requests.post(f"{url}/v1/sources/hdfs/detect", data=_zstd_repeat(bytes(MiB), 1024), timeout=30,
                      headers={**TEXT, "Content-Encoding": "zstd"})
    assert r.status_code == 401
    # and before the query is checked
    assert requests.post(f"{url}/v1/sources/hdfs/detect?explain=bogus", json=body, timeout=30).status_code == 401
    assert requests.get(f"{url}/v1/sources", headers=service.auth, timeout=30).json()["sources"][0]["source"] == "hdfs"
    assert _detect(service, body["lines"])["summary"]["lines"] == 50
    for path in ("/healthz", "/openapi.json", "/docs"):
        assert requests.get(f"{url}{path}", timeout=30).status_code == 200, path
    spec = requests.get(f"{url}/openapi.json", timeout=30).json()
    assert spec["paths"]["/v1/sources/{source}/detect"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_cli_detect_sends_the_token(service, tmp_path):
    f = tmp_path / "part.log"
    f.write_text("\n".join(service.lines[:300]) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LOGAD_API_TOKEN", "LOGAD_TOKEN")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "logad.cli", "detect", "hdfs", str(f), "--url", service.url]

    def run(*extra, **more_env):
        return subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=120,
                              env={**env, **more_env})

    missing = run()
    assert missing.returncode == 2 and "401" in missing.stderr and "API token" in missing.stderr
    for proc in (run(LOGAD_API_TOKEN=service.token), run("--token-file", str(service.token_file))):
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1].startswith("detect hdfs: 300 lines in 1 request(s)")
    wrong = run("--token", "x" * 32)
    assert wrong.returncode == 2 and "not the one this service was started with" in wrong.stderr


def test_the_generated_tests_reached_every_operation():
    """Runs after them (file order)."""
    assert {label for label, _ in CASES} == set(OPERATIONS), CASES
    assert CASES[OPERATIONS[2], "positive, source hdfs"].get(200), CASES
    print(f"generated cases: {sum(sum(c.values()) for c in CASES.values())} {CASES}")


# -- TLS in Serve itself (runs last: it replaces the module's deployment) -----------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own authority, and its key."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "logad test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_serve_can_terminate_tls_itself(service, tmp_path):
    """http_options ssl_certfile/ssl_keyfile: the deploy waits on https, clients verify the
    certificate, and plain HTTP gets no answer from the service."""
    import yaml
    from ray import serve

    from logad.serving.local import free_port, start, stop

    cert, key = _self_signed(tmp_path)
    config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    config["http_options"].update(ssl_certfile=str(cert), ssl_keyfile=str(key))
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    stop()
    serve.shutdown()  # Serve's HTTP options are fixed while it runs
    try:
        url = start(service.registry, port=free_port(), config=tmp_path / "serve.yaml",
                    args={**LIMITS, "api_token_file": str(service.token_file)},
                    deployments={"Ingress": {"num_replicas": 1}}, log=lambda _: None)
        assert url.startswith("https://127.0.0.1:")
        assert requests.get(f"{url}/healthz", verify=str(cert), timeout=30).json()["status"] == "ok"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/healthz", timeout=30)  # not a certificate the system trusts
        try:
            plain = requests.get(f"{url.replace('https', 'http', 1)}/healthz", timeout=10).status_code
        except requests.RequestException:
            plain = None
        assert plain != 200
        f = tmp_path / "part.log"
        f.write_text("\n".join(service.lines[:100]) + "\n")
        env = {**os.environ, "LOGAD_API_TOKEN": service.token, "SSL_CERT_FILE": str(cert),
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([sys.executable, "-m", "logad.cli", "detect", "hdfs", str(f), "--url", url],
                              capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1].startswith("detect hdfs: 100 lines in 1 request(s)")
    finally:
        stop()
        serve.shutdown()
