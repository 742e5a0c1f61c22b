"""Dataset download (real HTTP on 127.0.0.1) and the Liberty / Hadoop preparation."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
import zstandard

from logad.errors import DataError
from logad.sources import datasets
from logad.sources.config import load_source_config
from logad.sources.lines import LineSplitter

ROOT = Path(__file__).resolve().parents[2]


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("HDFS.log", "081109 203615 148 INFO dfs.DataNode: hello blk_1\n")
        zf.writestr("anomaly_label.csv", "BlockId,Label\nblk_1,Normal\n")
    return buf.getvalue()


@pytest.fixture
def zenodo(tmp_path):
    """A local stand-in for the Zenodo records API and file download, over real HTTP."""
    payload = _zip_bytes()
    state = {"md5": hashlib.md5(payload).hexdigest(), "hits": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            base = f"http://127.0.0.1:{self.server.server_port}"
            if self.path == "/api/records/8196385":
                body = json.dumps({"files": [{"key": "HDFS_v1.zip", "size": len(payload),
                                              "checksum": f"md5:{state['md5']}",
                                              "links": {"self": f"{base}/files/HDFS_v1.zip"}}]}).encode()
            elif self.path == "/files/HDFS_v1.zip":
                state["hits"] += 1
                body = payload
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/records/8196385", state
    server.shutdown()


def test_download_checks_the_checksum_unpacks_and_reuses(tmp_path, zenodo):
    api, state = zenodo
    out = datasets.download_loghub("hdfs", tmp_path, api_url=api)
    assert (out / "HDFS.log").read_text().startswith("081109")
    datasets.download_loghub("hdfs", tmp_path, api_url=api)
    assert state["hits"] == 1  # a complete download is reused


def test_download_refuses_a_file_whose_checksum_differs(tmp_path, zenodo):
    api, state = zenodo
    state["md5"] = "0" * 32
    with pytest.raises(DataError, match="does not match"):
        datasets.download_loghub("hdfs", tmp_path, api_url=api)
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "HDFS_v1.zip").exists()


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(DataError, match="known: android, apache"):
        datasets.download_loghub("nope", tmp_path, api_url="http://127.0.0.1:9/x")


def test_prepare_liberty_gives_lines_the_liberty_config_reads(tmp_path):
    log, unaligned = datasets.prepare_liberty([ROOT / "tests/fixtures/liberty/liberty_sample.csv"], tmp_path)
    assert unaligned == 0
    lines = log.read_text().splitlines()
    config = load_source_config(ROOT / "data_pipelines" / "liberty.yaml")
    import pyarrow as pa

    sl = LineSplitter(config).split(pa.array(lines))
    assert sl.header_ok.all()
    windows = {ln.split(" ", 1)[0] for ln in lines}
    assert len(windows) == 8
    anomalous = {ln.split(" ", 1)[0] for ln, lab in zip(lines, sl.line_label.to_pylist(), strict=True) if lab == 1}
    assert len(anomalous) == 3


def test_prepare_hadoop_unpacks_and_writes_application_labels(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for app in ("application_1445087491445_0005", "application_1445087491445_0001"):
            data = b"2015-10-17 15:37:56,547 INFO [main] org.apache.Foo: started\n"
            info = tarfile.TarInfo(f"Hadoop/{app}/container_{app[12:]}_01_000001.log")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (tmp_path / "h.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    (tmp_path / "labels.txt").write_text(
        "### WordCount\nNormal:\n+ application_1445087491445_0005\n\nMachine down:\n+ application_1445087491445_0001\n"
    )
    logs, labels = datasets.prepare_hadoop(tmp_path / "h.tar.zst", tmp_path / "labels.txt", tmp_path / "out")
    assert (logs / "Hadoop" / "application_1445087491445_0005").is_dir()
    assert labels.read_text().splitlines() == [
        "Application,Label", "application_1445087491445_0001,Anomaly", "application_1445087491445_0005,Normal"
    ]
