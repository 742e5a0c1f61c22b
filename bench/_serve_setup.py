"""Build a small model registry for the serving benchmarks: real models, trained briefly."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pyarrow as pa
import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from logad.parsing import TemplateMiner, mask_contents  # noqa: E402
from logad.sources.config import load_source_config  # noqa: E402
from logad.sources.lines import LineSplitter  # noqa: E402
from logad.windows.online import from_lines  # noqa: E402

HDFS_LOG = ROOT / "src" / "logad" / "data" / "hdfs_sample.log.zst"
HDFS_LABELS = ROOT / "src" / "logad" / "data" / "hdfs_sample_labels.csv"
BGL_LOG = ROOT / "tests" / "fixtures" / "loghub_2k" / "BGL_2k.log.zst"


def read_zst_lines(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh).read().decode().splitlines()


def train_model(out: Path, lines: list[str], config_path: Path, normal_ids: set[str] | None,
                model_config: dict) -> Path:
    """Mine a store on ``lines``, window them, fit FastLogAD on normal windows, save with
    templates.json and source.json (what the service needs to parse raw lines)."""
    from logad.methods.fastlogad import FastLogAD

    cfg = load_source_config(config_path)
    sl = LineSplitter(cfg).split(pa.array(lines))
    miner = TemplateMiner(cfg.parsing)
    miner.add(mask_contents(sl.content, cfg.parsing).to_pylist())
    store = miner.freeze()
    windows, _ = from_lines(lines, cfg, store)
    if normal_ids is not None:
        normal = windows[windows["window_id"].isin(normal_ids)]
    else:
        normal = windows[windows["label"].fillna(0) == 0]
    normal = normal.reset_index(drop=True)
    cut = int(len(normal) * 0.8)
    det = FastLogAD(model_config)
    det.fit(normal.iloc[:cut], normal.iloc[cut:])
    det.save(out)
    store.save(out / "templates.json")
    (out / "source.json").write_text(cfg.model_dump_json(indent=1))
    return out


def hdfs_normal_ids() -> set[str]:
    with open(HDFS_LABELS) as fh:
        return {r["BlockId"] for r in csv.DictReader(fh) if r["Label"] != "Anomaly"}


def in_child(fn, *args):
    """``fn(*args)`` in a fresh (spawned) process. The benchmarks time an HTTP client in
    their own process: training or scoring with torch there first leaves torch's thread
    pool and heap behind, which measurably slowed both the client and the replicas
    sharing these cores."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def build_registry(root: Path, work: Path, model_config: dict) -> dict[str, list[str]]:
    """Register an hdfs and a bgl model in ``root`` (trained in a child process);
    returns each source's lines."""
    in_child(_train_and_register, root, work, model_config)
    return {"hdfs": read_zst_lines(HDFS_LOG), "bgl": read_zst_lines(BGL_LOG)}


def _train_and_register(root: Path, work: Path, model_config: dict) -> None:
    from logad.registry import ModelRegistry

    reg = ModelRegistry(root)
    hdfs = read_zst_lines(HDFS_LOG)
    bgl = read_zst_lines(BGL_LOG)
    for source, lines, cfg, ids in (
        ("hdfs", hdfs, ROOT / "data_pipelines" / "hdfs.yaml", hdfs_normal_ids()),
        ("bgl", bgl, ROOT / "data_pipelines" / "bgl.yaml", None),
    ):
        if source in reg.sources():
            continue
        model = train_model(work / source, lines, cfg, ids, model_config)
        reg.register(model, source, promote=True)


# The default FastLogAD architecture (what latency depends on), trained for one epoch per
# phase: the benchmarks measure serving cost, not detection quality.
BENCH_MODEL = dict(warmup_epochs=1, epochs=1, explain_head_epochs=1, device="cpu", show_progress=False, seed=0)


def hdfs_chunks(lines: list[str], size: int, count: int) -> list[list[str]]:
    """``count`` consecutive slices of ``size`` lines, spread over the file."""
    step = max(1, (len(lines) - size) // max(1, count))
    return [lines[(i * step) % (len(lines) - size):][:size] for i in range(count)]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
