"""CLAD on real HDFS lines: learning from compressed frames, save → load, long windows cut
into frames (never truncated), explanations that name the frame and the lines.

The windows come from the shipped HDFS 2k slice through real Drain3 parsing and block
grouping. Labels: a block is anomalous when one of its lines is a real DataNode ``WARN``
("Got exception while serving ..."), the rest are normal, so the model must find, from
compressed bytes alone, the blocks that logged a serving failure. The model is tiny and
trains for a few epochs on CPU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import zstandard

from logad.methods import load_detector
from logad.methods.clad import CLAD, frame_table
from logad.methods.clad.frames import FrameCodec, train_dictionary
from logad.parsing import TemplateMiner, mask_contents
from logad.sources.config import load_source_config
from logad.sources.lines import LineSplitter
from logad.windows.online import from_lines

ROOT = Path(__file__).resolve().parents[2]
HDFS_2K = ROOT / "tests" / "fixtures" / "loghub_2k" / "HDFS_2k.log.zst"

TINY = dict(byte_embedding=16, encoder_width=32, encoder_blocks=2, d_model=32, num_layers=2, num_heads=2,
            mlstm_heads=2, mlstm_chunk=16, projection=16, pretrain_epochs=1, epochs=8, patience=8,
            batch_size=16, learning_rate=2e-3, max_frame_bytes=512, dict_size_bytes=4096,
            device="cpu", show_progress=False, seed=0)


def _hdfs_windows() -> pd.DataFrame:
    with open(HDFS_2K, "rb") as fh:
        lines = zstandard.ZstdDecompressor().stream_reader(fh).read().decode().splitlines()
    config = load_source_config(ROOT / "data_pipelines" / "hdfs.yaml")
    sl = LineSplitter(config).split(pa.array(lines))
    miner = TemplateMiner(config.parsing)
    miner.add(mask_contents(sl.content, config.parsing).to_pylist())
    windows, _ = from_lines(lines, config, miner.freeze())
    windows["label"] = pd.array([int(any(" WARN " in x for x in v)) for v in windows["lines"]], dtype="Int8")
    return windows


@pytest.fixture(scope="module")
def parts() -> dict[str, pd.DataFrame]:
    w = _hdfs_windows()
    # blocks are independent sessions: split them by a hash of their id, 60/20/20
    bucket = np.array([int(hashlib.md5(str(i).encode()).hexdigest(), 16) % 5 for i in w["window_id"]])
    return {"train": w[bucket < 3].reset_index(drop=True), "val": w[bucket == 3].reset_index(drop=True),
            "test": w[bucket == 4].reset_index(drop=True)}


@pytest.fixture(scope="module")
def fitted(parts) -> CLAD:
    det = CLAD(TINY)
    det.fit(parts["train"], parts["val"])
    return det


pytestmark = pytest.mark.usefixtures("ray_session")


def test_learns_from_compressed_bytes(fitted, parts):
    from sklearn.metrics import f1_score, roc_auc_score

    test = parts["test"]
    y = test["label"].astype(int).to_numpy()
    assert 0 < y.sum() < len(y)
    s = fitted.score(test)
    floor = f1_score(y, np.ones_like(y))  # flag every window
    # tiny model, 8 epochs on ~1,200 blocks: it measured AUROC 0.997, F1 0.83 (floor 0.05)
    assert roc_auc_score(y, s) > 0.9
    assert f1_score(y, s > fitted.threshold) > floor + 0.5
    extra = fitted.fit_report.extra
    assert extra["train_frames"] >= len(parts["train"]) and extra["compression_ratio"] > 1.5
    assert "validation-tuned" in fitted.threshold_strategy


def test_window_scores_are_the_max_of_their_frames_scores(fitted, parts):
    test = parts["test"].iloc[:50]
    wf = fitted.frames_of(test)
    per_frame = fitted.score_frames(wf.frames)
    expect = np.full(len(test), -np.inf)
    np.maximum.at(expect, wf.owner, per_frame)
    np.testing.assert_allclose(fitted.score(test), expect, rtol=1e-9)


def test_save_load_gives_identical_scores(fitted, parts, tmp_path):
    fitted.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "dictionary.zdict", "codec.json", "state.json"} <= files
    assert (tmp_path / "m" / "dictionary.zdict").read_bytes() == fitted.codec.dictionary
    loaded = load_detector(tmp_path / "m")
    assert isinstance(loaded, CLAD) and loaded.threshold == fitted.threshold
    assert loaded.codec.dict_id == fitted.codec.dict_id
    np.testing.assert_array_equal(loaded.score(parts["test"]), fitted.score(parts["test"]))
    (tmp_path / "m" / "dictionary.zdict").write_bytes(fitted.codec.dictionary[:-1] + b"x")
    with pytest.raises(Exception, match="dict_sha256"):
        load_detector(tmp_path / "m")


def test_a_long_window_becomes_several_frames_not_a_truncated_one(fitted, parts):
    lines = [x for v in parts["test"]["lines"] for x in v][:400]
    window = pd.DataFrame({"window_id": ["long"], "event_ids": [[0] * len(lines)], "lines": [lines]})
    wf = fitted.frames_of(window)
    assert len(wf) > 3 and all(len(f) <= fitted.config.max_frame_bytes for f in wf.frames)
    # consecutive spans covering every line, and (decompressed here, by the test only) the
    # frames' contents concatenate to the window's text
    assert wf.spans[0][0] == 0 and wf.spans[-1][1] == len(lines)
    assert all(a[1] == b[0] for a, b in zip(wf.spans, wf.spans[1:], strict=False))
    d = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(fitted.codec.dictionary))
    assert b"".join(d.decompress(f) for f in wf.frames) == "".join(x + "\n" for x in lines).encode()
    assert fitted.score(window)[0] == pytest.approx(fitted.score_frames(wf.frames).max(), rel=1e-12)


def test_explanations_name_the_frame_and_the_lines_that_drove_it(fitted, parts):
    test = parts["test"]
    flagged = [i for i, (lab, s) in enumerate(zip(test["label"], fitted.score(test), strict=True))
               if lab == 1 and s > fitted.threshold]
    assert flagged
    found = fitted.explain(test.iloc[flagged])
    for e, i in zip(found, flagged, strict=True):
        assert e.frames and e.frames[0].score == pytest.approx(e.score)
        assert e.lines and "WARN" in e.lines[0].line  # the serving failure drove the verdict
        assert test["lines"].iloc[i][e.lines[0].index] == e.lines[0].line


def test_frames_built_with_ray_data_equal_the_local_ones(parts):
    lines = [list(v) for v in parts["train"]["lines"]]
    samples = ["".join(x + "\n" for x in v).encode() for v in lines]
    codec = FrameCodec("zstd", 3, train_dictionary(samples, 4096), 256)
    local = frame_table(codec, lines, ray_above=len(lines))
    remote = frame_table(codec, lines, ray_above=0)
    assert remote.frames == local.frames and remote.spans == local.spans
    np.testing.assert_array_equal(remote.owner, local.owner)


def test_a_sweep_driver_frames_once_for_every_trial(fitted, parts):
    config = dict(TINY, epochs=1, pretrain_epochs=0)
    train, val = parts["train"].iloc[:400], parts["val"].iloc[:100]
    state = CLAD.sweep_state(train, val, config)
    det = CLAD(config)
    det.adopt_sweep_state(state)
    det.fit(train, val)
    assert det.fit_report.extra["frames_built_in_fit"] is False
    fresh = CLAD(config)
    fresh.fit(train, val)
    assert fresh.fit_report.extra["frames_built_in_fit"] is True
    np.testing.assert_array_equal(det.score(parts["test"]), fresh.score(parts["test"]))
    other = CLAD(dict(config, max_frame_bytes=256))  # other codec settings: builds its own
    other.adopt_sweep_state(state)
    assert other._prepared is None
