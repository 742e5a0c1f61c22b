"""Public datasets: download the full Loghub sets, and turn shipped layouts into raw logs.

* :func:`download_loghub` fetches one Loghub dataset from its Zenodo record
  (https://zenodo.org/records/8196385), checks the size and MD5 that Zenodo
  publishes for the file, and unpacks it.
* :func:`prepare_liberty` turns LogLLM-style Liberty CSVs (one row per window,
  messages joined by `` ;-; ``, a per-message label list) into a log file that
  ``data_pipelines/liberty.yaml`` reads: ``<window> <label> <message>``.
* :func:`prepare_hadoop` unpacks the Loghub Hadoop application logs and writes
  their application labels (from ``abnormal_label.txt``) as a label CSV for
  ``data_pipelines/hadoop_apps.yaml``.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import re
import shutil
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import zstandard

from logad.errors import DataError

__all__ = [
    "LOGHUB_DATASETS",
    "LOGHUB_RECORD_API",
    "download_loghub",
    "prepare_hadoop",
    "prepare_liberty",
]

LOGHUB_RECORD_API = "https://zenodo.org/api/records/8196385"
# dataset name → file in the Zenodo record (Loghub, Zhu et al., ISSRE 2023)
LOGHUB_DATASETS = {
    "android": "Android_v1.zip", "apache": "Apache.tar.gz", "bgl": "BGL.zip", "hadoop": "Hadoop.zip",
    "hdfs": "HDFS_v1.zip", "hdfs-v2": "HDFS_v2.zip", "healthapp": "HealthApp.tar.gz", "hpc": "HPC.zip",
    "linux": "Linux.tar.gz", "mac": "Mac.tar.gz", "openssh": "SSH.tar.gz", "openstack": "OpenStack.tar.gz",
    "proxifier": "Proxifier.tar.gz", "spark": "Spark.tar.gz", "thunderbird": "Thunderbird.tar.gz",
    "windows": "Windows.tar.gz", "zookeeper": "Zookeeper.tar.gz",
}


def _get(url: str, timeout_s: float = 60.0):
    req = urllib.request.Request(url, headers={"User-Agent": "logad", "Accept": "application/json, */*"})
    return urllib.request.urlopen(req, timeout=timeout_s)  # noqa: S310 - http(s) URLs only, checked below


def _record_file(name: str, api_url: str) -> dict:
    if name not in LOGHUB_DATASETS:
        raise DataError(f"unknown Loghub dataset {name!r}; known: {', '.join(sorted(LOGHUB_DATASETS))}")
    if not api_url.startswith(("https://", "http://")):
        raise DataError(f"the record URL must be http(s): {api_url}")
    try:
        with _get(api_url) as resp:
            record = json.load(resp)
    except OSError as exc:
        raise DataError(f"cannot reach {api_url}: {exc}; download the file by hand and unpack it") from exc
    key = LOGHUB_DATASETS[name]
    for f in record.get("files", []):
        if f.get("key") == key:
            return f
    raise DataError(f"{key} is not in the record {api_url} any more; see https://github.com/logpai/loghub")


def download_loghub(
    name: str, dest: str | Path, *, api_url: str = LOGHUB_RECORD_API,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download and unpack one Loghub dataset into ``dest/<name>/``; return that folder.

    The file is checked against the size and MD5 the record publishes; a
    mismatch removes the partial file and raises. An existing, complete
    download is reused.
    """
    info = _record_file(name, api_url)
    url = info.get("links", {}).get("self") or f"{api_url.rsplit('/api/', 1)[0]}/records/8196385/files/{info['key']}"
    size = int(info.get("size", 0))
    algo, _, digest = str(info.get("checksum", "")).partition(":")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / info["key"]
    if not (archive.exists() and _matches(archive, size, algo, digest)):
        part = archive.with_name(archive.name + ".part")
        try:
            with _get(url, timeout_s=600) as resp, open(part, "wb") as out:
                done = 0
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, size)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise DataError(f"download of {url} failed: {exc}") from exc
        if not _matches(part, size, algo, digest):
            part.unlink(missing_ok=True)
            raise DataError(f"{info['key']} does not match the record's size/checksum ({algo}:{digest}); try again")
        part.replace(archive)
    target = dest / name
    target.mkdir(exist_ok=True)
    _unpack(archive, target)
    return target


def _matches(path: Path, size: int, algo: str, digest: str) -> bool:
    if size and path.stat().st_size != size:
        return False
    if not digest:
        return True
    h = hashlib.new(algo or "md5")
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest() == digest


def _safe_members(names: list[str], root: Path) -> None:
    for n in names:
        if not (root / n).resolve().is_relative_to(root.resolve()):
            raise DataError(f"archive member {n!r} would land outside {root}; refusing to unpack")


def _unpack(archive: Path, target: Path) -> None:
    name = archive.name
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            _safe_members(zf.namelist(), target)
            zf.extractall(target)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            _safe_members(tf.getnames(), target)
            tf.extractall(target, filter="data")
    elif name.endswith(".tar.zst"):
        with open(archive, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as zr, \
                tarfile.open(fileobj=zr, mode="r|") as tf:
            tf.extractall(target, filter="data")
    else:
        shutil.copy(archive, target / name)


def prepare_liberty(csv_paths: list[str | Path], out_dir: str | Path) -> tuple[Path, int]:
    """LogLLM-style Liberty CSV(s) → ``liberty.log`` with ``<window> <label> <message>`` lines.

    Window ids are ``<csv stem>:<row>``; the per-message labels become the
    line labels, so a window is anomalous when any of its messages is. Rows
    whose message count differs from their label count (some copies keep one
    message of a 100-message window) cannot align the two: every line of such
    a row gets the row's label, and the rows are counted.

    Returns:
        The log file and the number of rows whose labels could not be aligned.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "liberty.log"
    csv.field_size_limit(1 << 30)
    n_rows = unaligned = 0
    with open(target, "w", encoding="utf-8") as fo:
        for path in csv_paths:
            p = Path(path)
            with open(p, newline="", encoding="utf-8") as fh:
                for i, row in enumerate(csv.DictReader(fh)):
                    msgs = row["Content"].split(" ;-; ")
                    labels = ast.literal_eval(row["item_Label"])
                    if len(labels) != len(msgs):
                        labels = [int(row["Label"])] * len(msgs)
                        unaligned += 1
                    wid = f"{p.stem}:{i}"
                    for m, lab in zip(msgs, labels, strict=True):
                        fo.write(f"{wid} {int(lab)} {' '.join(m.split())}\n")
                    n_rows += 1
    if not n_rows:
        raise DataError(f"no rows in {csv_paths}")
    return target, unaligned


_APP = re.compile(r"application_\d+_\d+")


def prepare_hadoop(archive: str | Path, labels_txt: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Unpack Loghub Hadoop application logs; write ``labels.csv`` (Application,Label).

    Returns the logs folder and the label file. Labels: Normal → Normal,
    anything else (Machine down, Network disconnection, Disk full) → Anomaly.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _unpack(Path(archive), out)
    labels: dict[str, str] = {}
    kind = None
    for line in Path(labels_txt).read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if s.endswith(":") and not s.startswith("+"):
            kind = s[:-1].strip()
        elif s.startswith("+") and kind and (m := _APP.search(s)):
            labels[m.group(0)] = "Normal" if kind.lower() == "normal" else "Anomaly"
    if not labels:
        raise DataError(f"no application labels found in {labels_txt}")
    label_file = out / "labels.csv"
    with open(label_file, "w", encoding="utf-8") as fh:
        fh.write("Application,Label\n")
        for app, lab in sorted(labels.items()):
            fh.write(f"{app},{lab}\n")
    return out, label_file
