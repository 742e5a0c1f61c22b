"""Compressed frames over HTTP: real Ray Serve on 127.0.0.1, a real CLAD model, nothing inflated.

A tiny CLAD model trained for a few steps on HDFS sessions (the bundled sample, real Drain3
parsing and block grouping, the sample's block labels) is promoted for ``hdfs-clad``; an
``unseen`` model for ``hdfs-text`` is a source whose model reads text. The one replica runs
a Ray worker process setup hook (tests/integration/no_decompress.py) that makes every
zstandard, zlib and gzip decompression entry point raise, so every frames answer here comes
from a process that cannot decompress, and a compressed ``/detect`` body shows the hook is on.
The service runs with an API token, as the generated-request checks need.
"""

from __future__ import annotations

import base64
import csv
import gzip
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import requests
import zstandard

from logad.serving.frames import id_frame

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DATA_PIPELINES = ROOT / "data_pipelines"

pytestmark = pytest.mark.usefixtures("ray_session")

TINY = dict(byte_embedding=8, encoder_width=16, encoder_blocks=2, d_model=16, num_layers=2, num_heads=2,
            mlstm_heads=2, mlstm_chunk=16, projection=8, pretrain_epochs=1, epochs=2, patience=1, batch_size=16,
            max_frame_bytes=512, dict_size_bytes=4096, show_progress=False, device="cpu", seed=0)
MAX_FRAMES = 64
LIMITS = {"max_body_bytes": 1 << 20, "max_frames": MAX_FRAMES, "alias_ttl_s": 0.5}
ZSTD = {"Content-Type": "application/zstd"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, hdfs_sample, hdfs_sample_lines):
    """The CLAD model (as the replica loads it), its windows and the registry."""
    import torch
    from test_serving import _mine

    from logad.methods import load_detector
    from logad.methods.clad import CLAD
    from logad.methods.unseen import Unseen
    from logad.registry import ModelRegistry
    from logad.sources.config import load_source_config
    from logad.windows.online import from_lines

    base = tmp_path_factory.mktemp("frames")
    anomalous = {r["BlockId"] for r in csv.DictReader(open(hdfs_sample[1])) if r["Label"] == "Anomaly"}
    lines = hdfs_sample_lines[:6000]
    config = load_source_config(DATA_PIPELINES / "hdfs.yaml")
    store = _mine(lines, config)
    windows, _ = from_lines(lines, config, store)
    windows["label"] = pd.array([int(w in anomalous) for w in windows["window_id"]], dtype="Int8")
    k = np.arange(len(windows)) % 4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two busy cores: more threads only fight each other
    try:
        det = CLAD(TINY)
        det.fit(windows[k < 3].reset_index(drop=True), windows[k == 3].reset_index(drop=True), progress=False)
    finally:
        torch.set_num_threads(threads)
    models = {"hdfs-clad": base / "clad", "hdfs-text": base / "unseen"}
    det.save(models["hdfs-clad"])
    text = Unseen()
    normal = windows[windows["label"] == 0].reset_index(drop=True)
    text.fit(normal, normal)
    text.save(models["hdfs-text"])
    reg = ModelRegistry(base / "registry")
    for name, folder in models.items():
        store.save(folder / "templates.json")
        (folder / "source.json").write_text(config.model_dump_json())
        reg.register(folder, name, promote=True)
    return SimpleNamespace(det=load_detector(models["hdfs-clad"]), windows=windows, lines=lines, config=config,
                           registry=reg, base=base)


@pytest.fixture(scope="module")
def service(trained):
    from ray import serve

    from logad.serving.local import free_port, start, stop

    token = secrets.token_urlsafe(32)
    token_file = trained.base / "api_token"
    token_file.write_text(token + "\n")
    from ray._private.ray_constants import WORKER_PROCESS_SETUP_HOOK_ENV_VAR

    path = os.pathsep.join(x for x in (str(HERE), os.environ.get("PYTHONPATH", "")) if x)
    # Ray runs a worker_process_setup_hook named in the *job's* runtime_env (ray.init) by
    # handing it to each worker in this variable; one in a Serve app's runtime_env is not
    # passed on (Ray 2.60), so the replica gets the variable itself. Only the replica's
    # worker runs the hook: the driver, controller and proxy keep decompressing.
    url = start(trained.registry.root, port=free_port(), config=ROOT / "serve" / "config.yaml",
                args={**LIMITS, "api_token_file": str(token_file)}, deployments={"Ingress": {"num_replicas": 1}},
                runtime_env={"env_vars": {"PYTHONPATH": path, WORKER_PROCESS_SETUP_HOOK_ENV_VAR: "no_decompress.poison"}},
                log=lambda _: None)
    yield SimpleNamespace(url=url, token=token, auth={"Authorization": f"Bearer {token}"})
    stop()
    serve.shutdown()


def _frames(service, body, headers=ZSTD, source="hdfs-clad", **kw):
    return requests.post(f"{service.url}/v1/sources/{source}/frames", data=body,
                         headers={**service.auth, **headers}, timeout=60, **kw)


def _scored(service, body, headers=ZSTD):
    r = _frames(service, body, headers)
    assert r.status_code == 200, r.text[:500]
    return r.json()


@pytest.fixture(scope="module")
def sample(trained):
    """Frames of 30 windows (the 5 longest among them), as the model cuts them, and their
    in-process scores."""
    w = trained.windows
    longest = np.argsort([-len(x) for x in w["lines"]], kind="stable")[:5]
    pick = [*longest, *(i for i in range(30) if i not in set(longest))][:30]
    wf = trained.det.frames_of(w.iloc[pick])
    return wf.frames, trained.det.score_frames(wf.frames)


# -- scores -----------------------------------------------------------------------------------------


def test_frames_are_scored_as_in_process_in_both_forms(service, trained, sample):
    frames, expect = sample
    det = trained.det
    out = _scored(service, b"".join(frames))
    assert out["source"] == "hdfs-clad"
    assert out["model"] == {"id": "hdfs-clad@clad/v1", "method": "clad", "version": 1,
                            "threshold": pytest.approx(det.threshold)}
    got = out["frames"]
    np.testing.assert_allclose([f["score"] for f in got], expect, rtol=1e-5, atol=1e-7)
    assert [f["id"] for f in got] == [str(i) for i in range(len(frames))]
    assert [f["offset"] for f in got] == np.concatenate(([0], np.cumsum([len(f) for f in frames])[:-1])).tolist()
    assert [f["bytes"] for f in got] == [len(f) for f in frames]
    for f in got:
        assert f["verdict"] == ("anomalous" if f["score"] > f["threshold"] else "normal")
    flagged = sum(f["verdict"] == "anomalous" for f in got)
    assert out["summary"] == {"frames": len(frames), "anomalous_frames": flagged,
                              "bytes": sum(map(len, frames))}
    assert set(out["timing_ms"]) == {"read", "check", "model", "total"}
    # application/octet-stream is the same body
    same = _scored(service, b"".join(frames), {"Content-Type": "application/octet-stream"})
    assert [f["score"] for f in same["frames"]] == [f["score"] for f in got]
    # JSON, with ids (and one without: its position)
    body = {"frames": [{"id": f"w{i}", "data": base64.b64encode(f).decode()} for i, f in enumerate(frames)]}
    del body["frames"][3]["id"]
    as_json = _scored(service, json.dumps(body).encode(), {"Content-Type": "application/json"})
    np.testing.assert_allclose([f["score"] for f in as_json["frames"]], expect, rtol=1e-5, atol=1e-7)
    assert [f["id"] for f in as_json["frames"]] == [f"w{i}" if i != 3 else "3" for i in range(len(frames))]
    assert all(f["offset"] is None for f in as_json["frames"])
    # id frames (skippable frames) name the frame after them; other skippable frames are skipped
    other = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    named = id_frame("blk_1#0") + frames[0] + other + frames[1] + id_frame("blk_2#0") + frames[2]
    out = _scored(service, named)
    assert [f["id"] for f in out["frames"]] == ["blk_1#0", "1", "blk_2#0"]
    assert [f["offset"] for f in out["frames"]] == [len(id_frame("blk_1#0")),
                                                    len(id_frame("blk_1#0")) + len(frames[0]) + len(other),
                                                    len(named) - len(frames[2])]
    np.testing.assert_allclose([f["score"] for f in out["frames"]], expect[:3], rtol=1e-5, atol=1e-7)


def test_the_dictionary_endpoint_gives_the_models_dictionary(service, trained):
    codec = trained.det.codec
    r = requests.get(f"{service.url}/v1/sources/hdfs-clad/dictionary", headers=service.auth, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.content == codec.dictionary
    assert r.headers["X-Logad-Codec"] == "zstd" and int(r.headers["X-Logad-Dict-Id"]) == codec.dict_id
    assert int(r.headers["X-Logad-Max-Frame-Bytes"]) == codec.max_frame_bytes == 512
    assert int(r.headers["X-Logad-Codec-Level"]) == codec.level
    assert r.headers["X-Logad-Dict-Sha256"] == codec.dict_sha256 and r.headers["X-Logad-Model"] == "hdfs-clad@clad/v1"
    j = requests.get(f"{service.url}/v1/sources/hdfs-clad/dictionary", params={"format": "json"},
                     headers=service.auth, timeout=30)
    assert j.status_code == 200 and j.headers["Content-Type"] == "application/json"
    got = j.json()
    assert got["codec"] == codec.to_json() and base64.b64decode(got["dictionary"]) == codec.dictionary
    assert got["model"] == {"id": "hdfs-clad@clad/v1", "method": "clad", "version": 1}
    # a shipper's frames, made with the fetched dictionary alone, score as the model's own
    lines = trained.lines[:40]
    shipper = zstandard.ZstdCompressor(level=got["codec"]["level"], write_content_size=True, write_checksum=False,
                                       dict_data=zstandard.ZstdCompressionDict(r.content))
    frame = shipper.compress("".join(x + "\n" for x in lines[:5]).encode())
    assert frame == codec.compress("".join(x + "\n" for x in lines[:5]).encode())
    np.testing.assert_allclose(_scored(service, frame)["frames"][0]["score"], trained.det.score_frames([frame])[0],
                               rtol=1e-5)
    for path, status, words in (("nope/dictionary", 404, "unknown source"), ("hdfs-text/dictionary", 409, "unseen"),
                                ("hdfs-clad/dictionary?format=xml", 422, "format"),
                                ("hdfs-clad/dictionary?fromat=json", 422, "unknown query parameter")):
        r = requests.get(f"{service.url}/v1/sources/{path}", headers=service.auth, timeout=30)
        assert r.status_code == status and words in r.json()["detail"], (path, r.status_code, r.text[:300])
    assert requests.get(f"{service.url}/v1/sources/hdfs-clad/dictionary", timeout=30).status_code == 401


def test_nothing_on_the_frames_path_decompresses(service, trained, sample):
    """The replica cannot decompress (its setup hook): frames are still scored, while a
    compressed text body fails there and the same body uncompressed is served."""
    frames, expect = sample
    out = _scored(service, b"".join(frames[:8]))
    np.testing.assert_allclose([f["score"] for f in out["frames"]], expect[:8], rtol=1e-5, atol=1e-7)
    lines = trained.lines[:300]
    text = ("\n".join(lines) + "\n").encode()
    detect = f"{service.url}/v1/sources/hdfs-clad/detect"
    for enc, body in (("zstd", zstandard.ZstdCompressor().compress(text)), ("gzip", gzip.compress(text))):
        r = requests.post(detect, data=body, timeout=60,
                          headers={**service.auth, "Content-Type": "text/plain", "Content-Encoding": enc})
        assert r.status_code == 500 and "DecompressionDisabled" in r.json()["detail"], (enc, r.status_code, r.text)
    # the text endpoint serves CLAD too: windows from the lines, scored as in process
    r = requests.post(detect, data=text, headers={**service.auth, "Content-Type": "text/plain"}, timeout=60)
    assert r.status_code == 200, r.text[:500]
    got = r.json()
    assert got["model"]["method"] == "clad" and got["windows"]
    from logad.parsing import TemplateStore
    from logad.windows.online import from_lines

    store = TemplateStore.load(Path(trained.registry.fetch(trained.registry.get("hdfs-clad"))) / "templates.json")
    windows, _ = from_lines(lines, trained.config, store)
    ref = dict(zip(windows["window_id"], trained.det.score(windows), strict=True))
    np.testing.assert_allclose([w["score"] for w in got["windows"]], [ref[w["window_id"]] for w in got["windows"]],
                               rtol=1e-5, atol=1e-7)
    assert got["summary"]["windows"] == len(ref)


# -- bad frames -------------------------------------------------------------------------------------


def _bad_cases(trained, frames):
    det = trained.det
    good = frames[0]
    other_dict = zstandard.ZstdCompressionDict(zstandard.train_dictionary(
        2048, [(f"other log {i} " * 20).encode() for i in range(300)]).as_bytes())
    foreign = zstandard.ZstdCompressor(dict_data=other_dict).compress(b"\n".join(x.encode() for x in trained.lines[:5]))
    plain = zstandard.ZstdCompressor().compress(b"a log line\n")
    small = det.codec.compress((trained.lines[0] + "\n").encode())
    big = det.codec.compress(os.urandom(600))  # incompressible: over the 512-byte limit
    assert len(big) > 512
    # the first block header of `good` with its type set to 3 (reserved)
    from logad.serving.frames import zstd_frame_header

    h = zstd_frame_header(good).size
    block = int.from_bytes(good[h:h + 3], "little") | 0b110
    reserved = good[:h] + block.to_bytes(3, "little") + good[h + 3:]
    js = {"Content-Type": "application/json"}

    def b64(x):
        return base64.b64encode(x).decode()

    at = len(good)
    return [
        ("not zstd", 400, "frame 0 at byte 0: not a zstd frame", b"hello, not a frame at all", ZSTD),
        ("garbage between frames", 400, f"frame 1 at byte {at:,}", good + b"\0\0junk" + good, ZSTD),
        ("truncated", 400, f"frame 1 at byte {at:,}: truncated", good + good[:-3], ZSTD),
        ("reserved block type", 400, "reserved block type", reserved, ZSTD),
        ("another dictionary", 422, f"frame 1 at byte {at:,} was compressed with dictionary id "
                                    f"{other_dict.dict_id()}", good + foreign, ZSTD),
        ("no dictionary", 422, "frame 0 at byte 0 was compressed with dictionary id 0", plain, ZSTD),
        ("too large", 413, f"frame 1 at byte {at:,} is {len(big):,} bytes, over the model's frame limit",
         good + big, ZSTD),
        ("too many frames", 413, f"more than {MAX_FRAMES} frames", good * (MAX_FRAMES + 1), ZSTD),
        ("empty body", 422, "no frame", b"", ZSTD),
        ("body too large", 413, "over the limit", good * ((1 << 20) // len(good) + 1), ZSTD),
        ("bad base64", 400, "frame 1 (id 'b'): \"data\" is not valid base64",
         json.dumps({"frames": [{"id": "a", "data": b64(good)}, {"id": "b", "data": "not*base64"}]}), js),
        ("JSON frame not zstd", 400, "frame 0 (id 'x'): not a zstd frame",
         json.dumps({"frames": [{"id": "x", "data": b64(b"plain text")}]}), js),
        ("JSON frame truncated", 400, "frame 1: truncated",
         json.dumps({"frames": [{"data": b64(good)}, {"data": b64(good[:-2])}]}), js),
        ("two frames in one entry", 400, "after the end of its zstd frame",
         json.dumps({"frames": [{"data": b64(small + small)}]}), js),
        ("JSON frame of another dictionary", 422, "frame 0 (id 'f') was compressed with dictionary id",
         json.dumps({"frames": [{"id": "f", "data": b64(foreign)}]}), js),
        ("JSON no frames", 422, "no frame", json.dumps({"frames": []}), js),
        ("JSON of another shape", 422, "unknown key 'lines'", json.dumps({"lines": ["x"]}), js),
        ("JSON frame with another key", 422, "frame 0 has an unknown key 'text'",
         json.dumps({"frames": [{"data": b64(good), "text": "x"}]}), js),
        ("invalid JSON", 400, "not valid JSON", '{"frames": [', js),
        ("compressed body", 415, "Content-Encoding", good, {**ZSTD, "Content-Encoding": "zstd"}),
        ("text", 415, "unsupported Content-Type", good, {"Content-Type": "text/plain"}),
    ]


def test_bad_frames_get_a_4xx_naming_the_frame_and_the_service_keeps_serving(service, trained, sample):
    frames, _ = sample
    ref = _scored(service, b"".join(frames[:4]))
    for what, status, words, body, headers in _bad_cases(trained, frames):
        r = _frames(service, body, headers)
        assert r.status_code == status, (what, r.status_code, r.text[:300])
        assert words in r.json()["detail"], (what, r.json()["detail"])
        again = _scored(service, b"".join(frames[:4]))  # and the next good request is scored as before
        assert again["frames"] == ref["frames"], what
    for source, status, words in (("hdfs-text", 409, "method 'unseen' reads log text"), ("nope", 404, "unknown source")):
        r = _frames(service, frames[0], source=source)
        assert r.status_code == status and words in r.json()["detail"], (source, r.text[:300])
    r = _frames(service, frames[0], params={"explain": "all"})
    assert r.status_code == 422 and "unknown query parameter" in r.json()["detail"]
    assert requests.post(f"{service.url}/v1/sources/hdfs-clad/frames", data=frames[0], headers=ZSTD,
                         timeout=30).status_code == 401


# -- the client -------------------------------------------------------------------------------------


def test_cli_detect_frames_posts_a_frame_file_as_it_is(service, trained, sample, tmp_path):
    frames, expect = sample
    f = tmp_path / "shipped.zst"
    f.write_bytes(b"".join(frames))
    env = {**os.environ, "LOGAD_API_TOKEN": service.token,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "logad.cli", "detect", "hdfs-clad", str(f), "--frames", "--url",
                           service.url, "--batch-frames", "16", "--show-normal"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip().splitlines()
    requests_sent = -(-len(frames) // 16)
    flagged = int((expect > trained.det.threshold).sum())
    assert out[-1].startswith(f"detect hdfs-clad: {len(frames):,} frames ({sum(map(len, frames)):,} bytes) in "
                              f"{requests_sent} request(s), {flagged:,} anomalous; model hdfs-clad@clad/v1; "), out[-1]
    shown = out[:-1]
    assert len(shown) == len(frames)  # --show-normal: every frame, with its place in the file
    assert shown[1].startswith("NORMAL    frame 1 ") or shown[1].startswith("ANOMALOUS frame 1 ")
    assert shown[1].endswith(f"{f} frame 1 at byte {len(frames[0]):,}")
    # a zstd file that is not the source's frames is refused before anything is sent
    plain = tmp_path / "plain.log.zst"
    plain.write_bytes(zstandard.ZstdCompressor().compress(b"a line\n"))
    bad = subprocess.run([sys.executable, "-m", "logad.cli", "detect", "hdfs-clad", str(plain), "--frames", "--url",
                          service.url], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "--chunk-lines" in bad.stderr, bad.stderr


def test_cli_detect_frames_frames_a_text_log_with_the_fetched_dictionary(service, trained, tmp_path, capsys,
                                                                         monkeypatch):
    from logad.cli import main

    monkeypatch.setenv("LOGAD_API_TOKEN", service.token)
    lines = trained.lines[:450]
    log = tmp_path / "today.log"
    log.write_text("\n".join(lines) + "\n")
    argv = ["detect", "hdfs-clad", str(log), "--frames", "--url", service.url, "--json"]
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    answers = [json.loads(x) for x in printed[:-1]]
    got = [f for a in answers for f in a["frames"]]
    # what the client sent: chunks of 100 lines, each framed by the model's own codec
    codec = trained.det.codec
    expect, spans = [], []
    for start in range(0, len(lines), 100):
        fs, sp = codec.frame_lines(lines[start:start + 100])
        expect += fs
        spans += [(start + a + 1, start + max(a, b - 1) + 1) for a, b in sp]
    assert [(f["file"], f["first_line"], f["last_line"]) for f in got] == [(str(log), a, b) for a, b in spans]
    np.testing.assert_allclose([f["score"] for f in got], trained.det.score_frames(expect), rtol=1e-5, atol=1e-7)
    assert printed[-1].startswith(f"detect hdfs-clad: {len(expect):,} frames ({sum(map(len, expect)):,} bytes, "
                                  f"from 450 lines) in 1 request(s), ")
    # without --json: flagged frames with the lines they hold, and the same summary
    assert main([*argv[:-1], "--chunk-lines", "50", "--show-normal"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"{log}:1-" in printed[0] and printed[-1].startswith("detect hdfs-clad: ")
    assert "from 450 lines) in 1 request(s)" in printed[-1]


# -- generated requests, checked against the live schema ------------------------------------------

FRAME_OPERATIONS = ["POST /v1/sources/{source}/frames", "GET /v1/sources/{source}/dictionary"]


@pytest.mark.parametrize("label", FRAME_OPERATIONS)
@pytest.mark.parametrize("source", [None, "hdfs-clad"])
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_generated_requests_get_documented_answers_and_no_5xx(service, label, source, mode):
    """Schemathesis's checks on requests generated from the live /openapi.json, as
    test_serving_hostile.py runs them for detect. A positive frames body is refused all the
    same: any bytes are a `format: binary` body, and only real frames of the source's
    dictionary are accepted, which no schema can say."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    operation = schema.find_operation_by_label(label)
    fixed = {"path_parameters": {"source": source}} if source else {}
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    excluded = [positive_data_acceptance] if label.startswith("POST") else []
    seen: dict[int, int] = {}

    @given(case=operation.as_strategy(generation_mode=generation, **fixed))
    @settings(max_examples=15, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case):
        status = case.call_and_validate(headers=service.auth, timeout=60, excluded_checks=excluded).status_code
        seen[status] = seen.get(status, 0) + 1

    check()
    print(f"{label} {mode} source={source}: {seen}")
    assert sum(seen.values()) >= 5, seen
    if source and mode == "positive":  # the served source: real answers, not only 404s
        assert seen.get(200 if label.startswith("GET") else 400), seen
