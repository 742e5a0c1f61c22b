"""The HTTP service end to end: real Ray Serve on 127.0.0.1, real models from a real registry.

Two sources (HDFS sessions, BGL sliding windows) with tiny FastLogAD models
trained for a few steps on the bundled data, and a third (BGL again, as
``bgl-lines``) with the line-level ``unseen`` model, and ``bgl-classical`` with the classical pipeline. Requests go over real HTTP.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import requests
import zstandard

from logad.parsing import TemplateMiner, TemplateStore, mask_contents
from logad.sources.config import load_source_config
from logad.sources.lines import LineSplitter
from logad.windows import read_windows
from logad.windows.online import from_lines

ROOT = Path(__file__).resolve().parents[2]
DATA_PIPELINES = ROOT / "data_pipelines"
FIXTURES = ROOT / "tests" / "fixtures"

pytestmark = pytest.mark.usefixtures("ray_session")

TINY = dict(
    hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
    generator_hidden_size=16, generator_num_layers=1, generator_num_heads=2,
    generator_intermediate_size=32, batch_size=32, warmup_epochs=1, epochs=2, min_hst_steps=0,
    learning_rate=1e-3, hst_learning_rate=1e-2, device="cpu", show_progress=False, seed=0,
)
LIMITS = {"max_body_bytes": 1 << 20, "max_decompressed_bytes": 4 << 20, "max_lines": 50_000,
          "alias_ttl_s": 0.5}


def _as_kept(line: str) -> str:
    """A BGL line as windows keep it: without its leading label field (the dataset's, not the log's)."""
    return line.split(" ", 1)[1] if " " in line else line


def _zst_lines(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh).read().decode().splitlines()


def _mine(lines: list[str], config) -> TemplateStore:
    sl = LineSplitter(config).split(pa.array(lines))
    miner = TemplateMiner(config.parsing)
    miner.add(mask_contents(sl.content, config.parsing).to_pylist())
    return miner.freeze()


def _train(out: Path, lines: list[str], config, normal_ids: set[str] | None) -> Path:
    from logad.methods.fastlogad import FastLogAD

    store = _mine(lines, config)
    windows, _ = from_lines(lines, config, store)
    keep = windows["window_id"].isin(normal_ids) if normal_ids is not None else windows["label"].fillna(0) == 0
    normal = windows[keep].reset_index(drop=True)
    cut = int(len(normal) * 0.8)
    det = FastLogAD(TINY)
    det.fit(normal.iloc[:cut], normal.iloc[cut:])
    det.save(out)
    store.save(out / "templates.json")
    (out / "source.json").write_text(config.model_dump_json())
    return out


def _train_unseen(out: Path, lines: list[str], config) -> Path:
    """The line-level rule on every normal window (validated on them too: threshold 0)."""
    from logad.methods.unseen import Unseen

    store = _mine(lines, config)
    windows, _ = from_lines(lines, config, store)
    normal = windows[windows["label"].fillna(0) == 0].reset_index(drop=True)
    det = Unseen()
    det.fit(normal, normal)
    det.save(out)
    store.save(out / "templates.json")
    (out / "source.json").write_text(config.model_dump_json())
    return out


def _train_classical(out: Path, lines: list[str], config) -> Path:
    """The classical pipeline per line (BGL labels its lines), a few trees."""
    from logad.methods.classical import Classical

    store = _mine(lines, config)
    windows, _ = from_lines(lines, config, store, file_name="bgl.log")
    k = np.arange(len(windows)) % 4
    det = Classical(n_estimators=30, max_depth=4, cv_folds=0, n_jobs=1, device="cpu")
    det.fit(windows[k < 3], windows[k == 3])
    det.save(out)
    store.save(out / "templates.json")
    (out / "source.json").write_text(config.model_dump_json())
    return out


def _train_colog(out: Path, lines: list[str], config) -> Path:
    """A tiny CoLog per line (BGL labels its lines), a few epochs."""
    from logad.methods.colog import CoLog

    store = _mine(lines, config)
    windows, _ = from_lines(lines, config, store, file_name="bgl.log")
    k = np.arange(len(windows)) % 4
    det = CoLog(hidden=16, layers=1, heads=2, adaptation_heads=1, epochs=3, batch_size=32, learning_rate=3e-3,
                device="cpu", show_progress=False)
    det.fit(windows[k < 3], windows[k == 3])
    det.save(out)
    store.save(out / "templates.json")
    (out / "source.json").write_text(config.model_dump_json())
    return out


@pytest.fixture(scope="module")
def sources(hdfs_sample, hdfs_sample_lines):
    hdfs_normal = {r["BlockId"] for r in csv.DictReader(open(hdfs_sample[1])) if r["Label"] != "Anomaly"}
    return {
        "hdfs": (hdfs_sample_lines[:12000], load_source_config(DATA_PIPELINES / "hdfs.yaml"), hdfs_normal),
        "bgl": (_zst_lines(FIXTURES / "loghub_2k" / "BGL_2k.log.zst"),
                load_source_config(DATA_PIPELINES / "bgl.yaml"), None),
    }


@pytest.fixture(scope="module")
def registry(tmp_path_factory, sources):
    from logad.registry import ModelRegistry

    base = tmp_path_factory.mktemp("serving")
    reg = ModelRegistry(base / "registry")
    models = {}
    for name, (lines, config, normal) in sources.items():
        models[name] = _train(base / f"model-{name}", lines, config, normal)
        reg.register(models[name], name, promote=True)
    lines, config, _ = sources["bgl"]
    models["bgl-lines"] = _train_unseen(base / "model-bgl-lines", lines, config)
    reg.register(models["bgl-lines"], "bgl-lines", promote=True)
    models["bgl-classical"] = _train_classical(base / "model-bgl-classical", lines[:1500], config)
    reg.register(models["bgl-classical"], "bgl-classical", promote=True)
    models["bgl-colog"] = _train_colog(base / "model-bgl-colog", lines[:1500], config)
    reg.register(models["bgl-colog"], "bgl-colog", promote=True)
    return reg, models


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url(registry):
    from ray import serve

    from logad.serving.local import start, stop

    reg, _ = registry
    base = start(reg.root, port=_free_port(), config=ROOT / "serve" / "config.yaml", args=LIMITS,
                 log=lambda _: None)
    yield base
    stop()
    serve.shutdown()


def _detect(url, source, lines, **params):
    r = requests.post(f"{url}/v1/sources/{source}/detect", json={"lines": lines}, params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _in_process(model_dir: Path, lines: list[str], config) -> dict[str, float]:
    from logad.methods import load_detector

    det = load_detector(model_dir)
    windows, _ = from_lines(lines, config, TemplateStore.load(model_dir / "templates.json"))
    return dict(zip(windows["window_id"], det.score(windows), strict=True))


# -- from_lines is the ingest pipeline, per request ---------------------------------------------


@pytest.mark.parametrize("name", ["hdfs", "bgl"])
def test_from_lines_gives_the_windows_of_ingest(tmp_path, sources, name):
    from logad.pipelines.ingest import run_ingest

    lines, config, _ = sources[name]
    lines = lines[:3000]
    store = _mine(lines, config)
    store.save(tmp_path / "templates.json")
    log = tmp_path / "request"  # the file name fixed windows would be numbered under
    log.write_text("\n".join(lines) + "\n")
    run_ingest(config, [str(log)], str(tmp_path / "out"), templates=str(tmp_path / "templates.json"),
               progress=False, log=lambda _: None)
    ingested = read_windows(tmp_path / "out")
    online, stats = from_lines(lines, config, store)
    assert stats.windows == len(ingested) > 10
    expect = {r.window_id: (list(r.event_ids), list(r.lines)) for r in ingested.itertuples()}
    got = {r.window_id: (list(r.event_ids), list(r.lines)) for r in online.itertuples()}
    assert got == expect


# -- the API ----------------------------------------------------------------------------------------


def test_detect_scores_match_in_process_scoring_for_two_sources(url, registry, sources):
    _, models = registry
    for name in ("hdfs", "bgl"):
        lines, config, _ = sources[name]
        batch = lines[:800]
        out = _detect(url, name, batch, explain="all")
        expect = _in_process(models[name], batch, config)
        got = {w["window_id"]: w["score"] for w in out["windows"]}
        assert got.keys() == expect.keys() and out["summary"]["windows"] == len(expect)
        np.testing.assert_allclose([got[k] for k in expect], list(expect.values()), rtol=1e-5, atol=1e-6)
        assert out["model"] == {"id": f"{name}@fastlogad/v1", "method": "fastlogad", "version": 1,
                                "threshold": out["windows"][0]["threshold"],
                                "line_level": False, "line_threshold": None}
        assert "anomalous_lines" not in out["summary"]
        assert out["summary"]["lines"] == 800
        for w in out["windows"]:
            assert w["verdict"] == ("anomalous" if w["score"] > w["threshold"] else "normal")
            assert w["model_version"] == 1 and w["method"] == "fastlogad"
            assert "anomalous_lines" not in w and "line_threshold" not in w  # window-level model
            kept = set(batch) if name == "hdfs" else {_as_kept(x) for x in batch}
            for ev in w.get("evidence", []):  # evidence lines are the window's own lines
                assert ev["line"] in kept and 0 <= ev["probability"] <= 1


def test_text_gzip_and_zstd_bodies_give_the_same_answer(url, sources):
    lines = sources["hdfs"][0][:500]
    ref = _detect(url, "hdfs", lines)
    text = ("\n".join(lines) + "\n").encode()
    for enc, body in (("identity", text), ("gzip", gzip.compress(text)),
                      ("zstd", zstandard.ZstdCompressor().compress(text))):
        r = requests.post(f"{url}/v1/sources/hdfs/detect", data=body, timeout=60,
                          headers={"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": enc})
        assert r.status_code == 200, (enc, r.text)
        assert r.json()["windows"] == ref["windows"]


def test_sources_healthz_and_openapi(url):
    listed = requests.get(f"{url}/v1/sources", timeout=10).json()["sources"]
    assert {s["source"]: s["version"] for s in listed} == {"bgl": 1, "bgl-lines": 1, "bgl-classical": 1, "bgl-colog": 1,
                                                                     "hdfs": 1}
    assert all(isinstance(s["threshold"], float) for s in listed)
    assert requests.get(f"{url}/healthz", timeout=10).json()["status"] == "ok"
    spec = requests.get(f"{url}/openapi.json", timeout=10).json()
    assert "/v1/sources/{source}/detect" in spec["paths"]
    assert requests.get(f"{url}/docs", timeout=10).status_code == 200


def test_lines_that_make_no_window_are_counted_not_an_error(url):
    lines = ["081109 203615 148 INFO dfs.FSNamesystem: a line that names no block", "not even a header"]
    out = _detect(url, "hdfs", lines)
    assert out["windows"] == []
    s = out["summary"]
    assert (s["lines"], s["windows"], s["lines_without_window"], s["malformed_lines"]) == (2, 0, 2, 1)


def test_bad_requests_get_a_4xx_with_a_reason_and_the_service_keeps_working(url, sources):
    lines = sources["hdfs"][0][:50]
    good = _detect(url, "hdfs", lines)
    zc = zstandard.ZstdCompressor()
    text = ("\n".join(lines) + "\n").encode()
    detect = f"{url}/v1/sources/hdfs/detect"
    cases = [
        ("unknown source", 404, dict(url=f"{url}/v1/sources/nope/detect", json={"lines": lines})),
        ("unsafe source name", 404, dict(url=f"{url}/v1/sources/..%2F..%2Fetc/detect", json={"lines": lines})),
        ("body too large", 413, dict(data=b"x" * (2 << 20), headers={"Content-Type": "text/plain"})),
        ("zstd bomb", 413, dict(data=zc.compress(b"a\n" * (8 << 20)),
                                headers={"Content-Type": "text/plain", "Content-Encoding": "zstd"})),
        ("gzip bomb", 413, dict(data=gzip.compress(b"a\n" * (8 << 20)),
                                headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"})),
        ("too many lines", 413, dict(json={"lines": ["x"] * 60_000})),
        ("wrong content type", 415, dict(data=text, headers={"Content-Type": "application/xml"})),
        ("no content type", 415, dict(data=text, headers={"Content-Type": ""})),
        ("unknown coding", 415, dict(data=text, headers={"Content-Type": "text/plain", "Content-Encoding": "br"})),
        ("corrupt zstd", 400, dict(data=b"not zstd at all",
                                   headers={"Content-Type": "text/plain", "Content-Encoding": "zstd"})),
        ("truncated zstd", 400, dict(data=zc.compress(text)[:-7],
                                     headers={"Content-Type": "text/plain", "Content-Encoding": "zstd"})),
        ("truncated gzip", 400, dict(data=gzip.compress(text)[:-9],
                                     headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"})),
        ("invalid json", 400, dict(data=b'{"lines": [', headers={"Content-Type": "application/json"})),
        ("json of the wrong shape", 422, dict(json={"line": lines})),
        ("json lines not strings", 422, dict(json={"lines": [1, 2]})),
        ("empty batch", 422, dict(json={"lines": []})),
        ("blank lines only", 422, dict(data=b"\n \n\n", headers={"Content-Type": "text/plain"})),
        ("bad query", 422, dict(json={"lines": lines}, params={"explain": "everything"})),
    ]
    for what, status, kw in cases:
        r = requests.post(kw.pop("url", detect), timeout=60, **kw)
        assert r.status_code == status, (what, r.status_code, r.text[:300])
        assert r.json().get("detail"), what  # a reason, for people
        again = _detect(url, "hdfs", lines)  # and the next good request still works
        assert again["windows"] == good["windows"], what


def test_promotion_is_picked_up_without_a_restart(url, registry, sources, tmp_path):
    reg, models = registry
    lines = sources["hdfs"][0][:300]
    before = _detect(url, "hdfs", lines)
    assert before["model"]["version"] == 1
    v2 = tmp_path / "v2"
    shutil.copytree(models["hdfs"], v2)
    state = json.loads((v2 / "state.json").read_text())
    state["threshold"] = -1.0  # flags every window: easy to see
    (v2 / "state.json").write_text(json.dumps(state))
    reg.register(v2, "hdfs", promote=True)
    deadline = time.monotonic() + 20
    while True:
        after = _detect(url, "hdfs", lines)
        if after["model"]["version"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert after["model"] == {"id": "hdfs@fastlogad/v2", "method": "fastlogad", "version": 2, "threshold": -1.0,
                              "line_level": False, "line_threshold": None}
    assert all(w["verdict"] == "anomalous" and w["model_version"] == 2 for w in after["windows"])
    # same weights, so the same scores
    assert [w["score"] for w in after["windows"]] == [w["score"] for w in before["windows"]]
    reg.promote("hdfs", "fastlogad", 1)  # back, for the other tests
    deadline = time.monotonic() + 20
    while _detect(url, "hdfs", lines)["model"]["version"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.25)


def test_a_killed_replica_is_replaced(url, sources):
    import ray
    from ray import serve

    lines = sources["bgl"][0][:200]
    ref = _detect(url, "bgl", lines)
    victims = [a for a in ray.util.list_named_actors(all_namespaces=True) if "#Ingress#" in a["name"]]
    assert victims, ray.util.list_named_actors(all_namespaces=True)
    for a in victims:
        ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]), no_restart=True)
    deadline = time.monotonic() + 90
    ok = None
    while time.monotonic() < deadline:
        try:
            r = requests.post(f"{url}/v1/sources/bgl/detect", json={"lines": lines}, timeout=30)
            if r.status_code == 200:
                ok = r.json()
                break
            assert r.status_code in (500, 502, 503), r.text  # only while the replica is replaced
        except requests.RequestException:
            pass
        time.sleep(0.5)
    assert ok is not None and ok["windows"] == ref["windows"]
    while time.monotonic() < deadline:
        dep = serve.status().applications["logad"].deployments["Ingress"]
        if dep.status == "HEALTHY":
            break
        time.sleep(0.5)
    assert dep.status == "HEALTHY"
    names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Ingress#" in a["name"]}
    assert names and not names & {a["name"] for a in victims}
    for _ in range(3):
        assert _detect(url, "bgl", lines)["windows"] == ref["windows"]


def test_cli_detect_prints_flagged_windows_and_a_summary(url, sources, tmp_path):
    lines = sources["hdfs"][0][:2000]
    f = tmp_path / "part.log.zst"
    f.write_bytes(zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "logad.cli", "detect", "hdfs", str(f), "--url", url, "--batch-lines", "700"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("detect hdfs: 2,000 lines in 3 request(s)") and "hdfs@fastlogad/v1" in summary
    bad = subprocess.run(
        [sys.executable, "-m", "logad.cli", "detect", "nope", str(f), "--url", url],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert bad.returncode == 2 and "404" in bad.stderr and "unknown source" in bad.stderr


NOVEL = "zebra quantum flux capacitor overheated at warp nine; engaging the dilithium bypass"


@pytest.fixture(scope="module")
def line_batch(registry, sources):
    """BGL lines whose templates all occurred in training, a blank line, then one of a message
    training never saw (with the header of the line before it, so it lands in its windows);
    and the novel line's 0-based index in the batch."""
    from logad.methods import load_detector

    _, models = registry
    lines, config, _ = sources["bgl"]
    lines = lines[:300]
    det = load_detector(models["bgl-lines"])
    store = TemplateStore.load(models["bgl-lines"] / "templates.json")
    windows, _ = from_lines(lines, config, store)
    scores = iter(det.score_lines(windows))
    unseen = {n - 1 for nums in windows["line_numbers"] for n in nums if next(scores) > det.line_threshold}
    seen = [x for i, x in enumerate(lines) if i not in unseen]
    at = len(seen) // 2
    novel = " ".join(seen[at - 1].split(" ", 9)[:9] + [NOVEL])
    batch = [*seen[:at], "", novel, *seen[at:]]
    return batch, at + 1


def test_a_line_level_model_marks_the_lines_it_flags(url, line_batch):
    batch, novel = line_batch
    out = _detect(url, "bgl-lines", batch)
    assert out["model"] == {"id": "bgl-lines@unseen/v1", "method": "unseen", "version": 1,
                            "threshold": 0.0, "line_level": True, "line_threshold": 0.5}
    flagged = [w for w in out["windows"] if w["anomalous_lines"]]
    assert flagged and all(w["line_threshold"] == 0.5 for w in out["windows"])
    for w in flagged:  # only the novel line, by its place in the request, in each window it is in
        assert w["anomalous_lines"] == [{"index": novel, "line": _as_kept(batch[novel]), "score": 1.0}]
        assert w["verdict"] == "anomalous"
        assert [ev["line"] for ev in w["evidence"]] == [_as_kept(batch[novel])]  # explain still works
    assert all(w["verdict"] == "normal" and "evidence" not in w for w in out["windows"] if w not in flagged)
    # sliding windows: the line is in several, and counts once
    assert len(flagged) > 1 and out["summary"]["anomalous_lines"] == 1
    assert out["summary"]["anomalous_windows"] == len(flagged)
    # lines are marked whatever `explain` says; evidence is not
    quiet = _detect(url, "bgl-lines", batch, explain="none")
    assert [w["anomalous_lines"] for w in quiet["windows"]] == [w["anomalous_lines"] for w in out["windows"]]
    assert not any("evidence" in w for w in quiet["windows"])
    # none flagged: empty lists, a count of 0
    clean = _detect(url, "bgl-lines", batch[:novel] + batch[novel + 1:])
    assert clean["windows"] and all(w["anomalous_lines"] == [] for w in clean["windows"])
    assert clean["summary"]["anomalous_lines"] == 0 and clean["summary"]["anomalous_windows"] == 0
    # no window at all: still a line-level model, with nothing scored
    empty = _detect(url, "bgl-lines", ["not even a header"])
    assert empty["windows"] == [] and empty["summary"]["anomalous_lines"] == 0
    assert empty["model"]["line_level"] is True and empty["model"]["line_threshold"] is None


def test_cli_detect_prints_flagged_lines_as_file_and_line(url, line_batch, tmp_path, capsys):
    from logad.cli import main

    batch, novel = line_batch
    split = novel - 5  # the novel line is line 6 of the second file
    size = novel * 2 // 3  # a.log takes two requests (the second a short one), b.log.zst the next
    assert size < split < novel < 2 * size
    first, second = tmp_path / "a.log", tmp_path / "b.log.zst"
    first.write_text("\n".join(batch[:split]) + "\n")
    second.write_bytes(zstandard.ZstdCompressor().compress(("\n".join(batch[split:]) + "\n").encode()))
    argv = ["detect", "bgl-lines", str(first), str(second), "--url", url, "--batch-lines", str(size)]
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    marked = [x for x in printed if x.startswith("    LINE  ")]
    assert marked and set(marked) == {f"    LINE  {second}:6  score 1  {_as_kept(batch[novel])[:160]}"}
    requests_sent = -(-split // size) + -(-(len(batch) - split) // size)  # a request holds one file's lines
    assert printed[-1].startswith(f"detect bgl-lines: {len(batch):,} lines in {requests_sent} request(s), ")
    assert "anomalous, 1 anomalous lines;" in printed[-1]
    # --json: the service's answer, each flagged line with its file and line added
    assert main([*argv, "--json"]) == 0
    answers = [json.loads(x) for x in capsys.readouterr().out.splitlines()[:-1]]
    assert len(answers) == requests_sent
    hits = [al for a in answers for w in a["windows"] for al in w["anomalous_lines"]]
    assert hits and all(al == {"index": 5, "line": _as_kept(batch[novel]), "score": 1.0,
                               "file": str(second), "file_line": 6} for al in hits)


def test_a_broken_model_answers_503_and_other_sources_keep_working(url, registry, sources):
    reg, models = registry
    mv = reg.register(models["bgl"], "broken", promote=True)
    weights = Path(reg.fetch(mv)) / "model.safetensors"
    weights.write_bytes(b"not safetensors")  # the manifest's checksum no longer matches
    r = requests.post(f"{url}/v1/sources/broken/detect", json={"lines": sources["bgl"][0][:20]}, timeout=60)
    assert r.status_code == 503 and "broken@fastlogad/v1" in r.json()["detail"]
    assert _detect(url, "bgl", sources["bgl"][0][:20])["summary"]["windows"] > 0


def test_serve_and_probe_for_the_demo(url, registry, sources):
    """The one call the demo makes; runs last (it redeploys the app with default settings)."""
    from logad.serving.local import serve_and_probe

    reg, _ = registry
    lines = sources["hdfs"][0][:400]
    out = serve_and_probe(reg.root, "hdfs", lines, keep_running=True, log=lambda _: None)
    assert out["url"] == url  # Serve's HTTP options are fixed for the cluster's lifetime
    assert out["model"]["id"] == "hdfs@fastlogad/v1" and out["summary"]["lines"] == 400
    assert out["windows"] == _detect(url, "hdfs", lines)["windows"]


def test_a_classical_model_serves_line_verdicts_with_their_top_features(url, registry, sources):
    """The scorer gets the lines, times and message offsets the features need (not only template
    ids): its scores are the in-process ones, and flagged windows name the features that drove
    them, with their values and SHAP values."""
    from logad.methods import load_detector

    _, models = registry
    lines, config, _ = sources["bgl"]
    batch = lines[:400]
    out = _detect(url, "bgl-classical", batch)
    assert out["model"]["method"] == "classical" and out["model"]["line_level"] is True
    det = load_detector(models["bgl-classical"])
    store = TemplateStore.load(models["bgl-classical"] / "templates.json")
    windows, _ = from_lines(batch, config, store)
    np.testing.assert_allclose([w["score"] for w in out["windows"]], det.score(windows), rtol=1e-6)
    flagged = [w for w in out["windows"] if w["verdict"] == "anomalous"]
    assert flagged, "the BGL fixture's first 400 lines hold labelled anomalies the model flags"
    for w in flagged:
        assert w["anomalous_lines"] and w["evidence"]
        top = w["top_features"]
        assert 0 < len(top) <= 5 and all(set(f) == {"name", "value", "shap"} for f in top)
        assert all(f["name"] in det.feature_names for f in top)
        assert [abs(f["shap"]) for f in top] == sorted((abs(f["shap"]) for f in top), reverse=True)
    assert not any("top_features" in w for w in out["windows"] if w["verdict"] == "normal")


def test_the_file_a_request_names_reaches_the_model(url, registry, sources):
    """?file=NAME: a model that learned file types (this CoLog trained on bgl.log: type "bgl")
    scores the lines as lines of that type, as in-process scoring of the same lines read from
    that file does; without it they are lines of a file named "request", a type it never saw
    (its shared row, which training never moved)."""
    from logad.methods import load_detector

    _, models = registry
    lines, config, _ = sources["bgl"]
    batch = lines[:200]
    det = load_detector(models["bgl-colog"])
    store = TemplateStore.load(models["bgl-colog"] / "templates.json")
    assert det.file_types == ["bgl"]
    named = _detect(url, "bgl-colog", batch, file="bgl.log.1")
    windows, _ = from_lines(batch, config, store, file_name="bgl.log.1")
    np.testing.assert_allclose([w["score"] for w in named["windows"]], det.score(windows), rtol=1e-5)
    anonymous = _detect(url, "bgl-colog", batch)
    windows, _ = from_lines(batch, config, store)
    np.testing.assert_allclose([w["score"] for w in anonymous["windows"]], det.score(windows), rtol=1e-5)
    assert not np.allclose([w["score"] for w in named["windows"]], [w["score"] for w in anonymous["windows"]])


def test_a_colog_model_serves_line_verdicts_with_the_context_it_attended_to(url, registry, sources):
    """CoLog behind the service: the in-process scores, per-line marks, and evidence lines that
    name the neighbouring lines the verdict attended to (weights summing to 1)."""
    from logad.methods import load_detector

    _, models = registry
    lines, config, _ = sources["bgl"]
    batch = lines[:400]
    out = _detect(url, "bgl-colog", batch, explain="all")
    assert out["model"]["method"] == "colog" and out["model"]["line_level"] is True
    det = load_detector(models["bgl-colog"])
    store = TemplateStore.load(models["bgl-colog"] / "templates.json")
    windows, _ = from_lines(batch, config, store)
    np.testing.assert_allclose([w["score"] for w in out["windows"]], det.score(windows), rtol=1e-5)
    marked = [al for w in out["windows"] for al in w["anomalous_lines"]]
    assert all(al["score"] > out["model"]["line_threshold"] for al in marked)
    for w in out["windows"]:
        for ev in w["evidence"]:
            assert ev["context"] and abs(sum(c["weight"] for c in ev["context"]) - 1) < 1e-3
            assert {c["offset"] for c in ev["context"]} <= {-1, 0, 1}
            assert any(c["offset"] == 0 and c["line"] == ev["line"] for c in ev["context"])
