"""FastLogAD behaviour on real HDFS sessions: a tiny model, a few real training steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from logad.errors import ConfigError, DataError, NotFittedError
from logad.methods import get_method, load_detector
from logad.methods.fastlogad import FastLogAD, Vocabulary

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hdfs_eventid"
UNSEEN = 999  # a template id that never occurs in training

TINY = dict(
    hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
    generator_hidden_size=16, generator_num_layers=1, generator_num_heads=2,
    generator_intermediate_size=32, batch_size=32, warmup_epochs=2, epochs=8, patience=3, min_hst_steps=0,
    learning_rate=1e-3, hst_learning_rate=1e-2, device="cpu", show_progress=False, seed=0,
)


def _sessions(name: str) -> list[list[int]]:
    return [[int(x) for x in line.split()] for line in (FIXTURE / name).read_text().splitlines() if line.strip()]


def windows_frame(seqs: list[list[int]], label: int, prefix: str) -> pd.DataFrame:
    start = pd.Timestamp("2008-11-09 20:00:00") + pd.to_timedelta(np.arange(len(seqs)), unit="s")
    return pd.DataFrame({
        "source": "hdfs",
        "window_id": [f"{prefix}{i}" for i in range(len(seqs))],
        "start": start,
        "end": start + pd.Timedelta(seconds=5),
        "event_ids": seqs,
        "lines": [[f"E{e}" for e in s] for s in seqs],
        "label": pd.array([label] * len(seqs), dtype="Int8"),
    })


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    normal = _sessions("hdfs_train")
    return {
        "train": windows_frame(normal[:450], 0, "train-"),
        "val": windows_frame(normal[450:500], 0, "val-"),
        "holdout": windows_frame(normal[500:], 0, "holdout-"),
        "abnormal": windows_frame(_sessions("hdfs_test_abnormal"), 1, "abnormal-"),
    }


@pytest.fixture(scope="module")
def fitted(data) -> tuple[FastLogAD, object]:
    det = FastLogAD(TINY)
    report = det.fit(data["train"], data["val"])
    return det, report


def inject(frame: pd.DataFrame, position: int = 2) -> pd.DataFrame:
    """Pseudo-anomalies: one line of each window becomes an unseen template."""
    out = frame.copy()
    out["event_ids"] = [s[:position] + [UNSEEN] + s[position + 1 :] for s in out["event_ids"]]
    out["lines"] = [[f"E{e}" for e in s] for s in out["event_ids"]]
    return out


def test_training_lowers_losses(fitted):
    _, report = fitted
    rtd = report.losses("rtd_loss")
    hst = report.losses("hst_loss")
    assert len(rtd) == TINY["warmup_epochs"] and rtd[-1] < rtd[0]
    assert hst[-1] < hst[0]
    assert report.losses("mlm_loss")[-1] < report.losses("mlm_loss")[0]
    assert 0 <= report.best_epoch < len(report.history)
    assert report.train_time_s > 0 and report.extra["vocab_size"] > 4


def test_separates_injected_and_real_anomalies(fitted, data):
    det, _ = fitted
    normal = det.score(data["holdout"])
    injected = det.score(inject(data["holdout"]))
    assert np.median(injected) > np.median(normal)
    assert (injected > det.threshold).mean() > 0.9
    assert (normal > det.threshold).mean() < 0.15
    real = det.score(data["abnormal"])
    y = np.r_[np.zeros(len(normal)), np.ones(len(real))]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, np.r_[normal, real]) > 0.85


def test_score_contract(fitted, data):
    det, _ = fitted
    frame = data["holdout"].iloc[:7]
    scores = det.score(frame)
    assert scores.shape == (7,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    np.testing.assert_array_equal(det.score(table), scores)
    assert det.score(frame.iloc[:0]).shape == (0,)
    # order of the batch does not change a window's score
    np.testing.assert_allclose(det.score(frame.iloc[::-1])[::-1], scores, rtol=1e-5)


def test_threshold_comes_from_the_quantile_of_normal_validation_scores(fitted, data):
    det, report = fitted
    q = np.quantile(det.score(data["val"]), 0.99)
    assert report.extra["threshold_quantile_value"] == pytest.approx(q, rel=1e-6)
    expected = np.sqrt(q * np.log(2)) if q < np.log(2) else q  # the default 'midpoint' rule
    assert det.threshold == pytest.approx(expected, rel=1e-6)


def test_threshold_rules():
    from logad.methods.fastlogad import _threshold_from_quantile

    ln2 = np.log(2)
    assert _threshold_from_quantile(0.04, "quantile") == 0.04
    # halfway in log-norm between the quantile and HST's p = 0.5 boundary
    mid = _threshold_from_quantile(0.04, "midpoint")
    assert np.log(mid) == pytest.approx((np.log(0.04) + np.log(ln2)) / 2)
    assert 0.04 < mid < ln2
    # a quantile already at or past the boundary is kept: the rule never lowers the cut
    assert _threshold_from_quantile(2.0, "midpoint") == 2.0
    assert _threshold_from_quantile(0.0, "midpoint") == 0.0


def test_order_free_model_scores_a_multiset(data, tmp_path):
    """positions=False: a window's score does not depend on the order of its events."""
    det = FastLogAD(TINY | {"positions": False, "warmup_epochs": 1, "epochs": 1})
    det.fit(data["train"], data["val"])
    table = det.discriminator.electra.embeddings.position_embeddings.weight
    assert not table.requires_grad and not table.any()  # zeroed, and training left it so
    frame = data["abnormal"].iloc[:20]
    rng = np.random.default_rng(0)
    shuffled = frame.assign(event_ids=[list(rng.permutation(s)) for s in frame["event_ids"]])
    assert any(list(a) != list(b) for a, b in zip(frame["event_ids"], shuffled["event_ids"], strict=True))
    np.testing.assert_allclose(det.score(shuffled), det.score(frame), rtol=1e-4, atol=1e-6)
    det.save(tmp_path / "m")
    np.testing.assert_array_equal(FastLogAD.load(tmp_path / "m").score(shuffled), det.score(shuffled))
    # the [CLS] vector itself is order-blind; with learned positions (the paper's) it is not
    ordered = FastLogAD(TINY | {"positions": True, "warmup_epochs": 1, "epochs": 1})
    ordered.fit(data["train"], data["val"])
    gap = {name: (_cls(model, shuffled) - _cls(model, frame)).abs().max().item()
           for name, model in (("free", det), ("ordered", ordered))}
    assert gap["free"] < 1e-5 and gap["ordered"] > 1e-3, gap


def _cls(det: FastLogAD, frame: pd.DataFrame):
    import torch

    from logad.methods.fastlogad import _collate

    ids, attn = _collate(det._tokens(frame))
    with torch.inference_mode():
        return det.discriminator.electra(input_ids=ids, attention_mask=attn).last_hidden_state[:, 0]


def test_fit_never_reads_labels(data):
    """Same seed, labels removed or poisoned: the same model and threshold."""
    cfg = TINY | {"warmup_epochs": 1, "epochs": 1}
    a = FastLogAD(cfg)
    a.fit(data["train"], data["val"])
    poisoned_val = data["val"].assign(label=pd.array([1] * len(data["val"]), dtype="Int8"))
    b = FastLogAD(cfg)
    b.fit(data["train"].drop(columns=["label"]), poisoned_val)
    assert a.threshold == b.threshold
    np.testing.assert_array_equal(a.score(data["holdout"]), b.score(data["holdout"]))


def test_save_load_identical(fitted, data, tmp_path):
    det, _ = fitted
    det.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {"config.json", "model.safetensors", "vocab.json", "state.json"}
    for loaded in (FastLogAD.load(tmp_path / "m"), load_detector(tmp_path / "m")):
        assert isinstance(loaded, FastLogAD)
        assert loaded.threshold == det.threshold
        np.testing.assert_array_equal(loaded.score(data["abnormal"]), det.score(data["abnormal"]))
        assert loaded.fit_report is not None and loaded.fit_report.best_epoch == det.fit_report.best_epoch


def test_load_errors_name_the_file(fitted, tmp_path):
    det, _ = fitted
    det.save(tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    header = json.loads(cfg.read_text())
    cfg.write_text(json.dumps(header | {"format_version": 99}))
    with pytest.raises(DataError, match="config.json.*version 99"):
        FastLogAD.load(tmp_path / "m")
    cfg.write_text(json.dumps(header | {"config": header["config"] | {"hidden_size": 64}}))
    with pytest.raises(DataError, match="model.safetensors"):
        FastLogAD.load(tmp_path / "m")
    cfg.write_text(json.dumps(header))
    (tmp_path / "m" / "vocab.json").unlink()
    with pytest.raises(DataError, match="vocab.json"):
        FastLogAD.load(tmp_path / "m")
    with pytest.raises(DataError, match="no model"):
        load_detector(tmp_path / "nothing-here")


def test_traced_inference_gives_the_eager_models_numbers(fitted, data):
    """score()/explain() run a TorchScript trace on CPU; it must match the eager model on
    every batch shape, and follow the weights when they change."""
    import torch

    from logad.methods.fastlogad import _collate, _InferenceOutputs

    det, _ = fitted
    run = det._inference()
    assert isinstance(run, torch.jit.ScriptModule)
    eager = _InferenceOutputs(det.discriminator).eval()
    frame = pd.concat([data["holdout"], data["abnormal"]], ignore_index=True)
    seqs = det.vocab.encode(list(frame["event_ids"].iloc[:40]))
    with torch.inference_mode():
        for rows in (1, 7, 40):  # batch sizes and paddings the trace never saw
            ids, attn = _collate(seqs[:rows])
            for a, b in zip(eager(ids, attn), run(ids, attn), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    before = det.score(frame)
    with torch.no_grad():  # an in-place change of the weights retraces
        det.discriminator.electra.embeddings.word_embeddings.weight.mul_(1.5)
    try:
        assert det._inference() is not run
        assert not np.allclose(det.score(frame), before)
    finally:
        with torch.no_grad():
            det.discriminator.electra.embeddings.word_embeddings.weight.div_(1.5)
    np.testing.assert_allclose(det.score(frame), before, rtol=1e-5)


def test_long_windows_are_chunked_not_truncated(data):
    """A window longer than max_length whose only anomaly lies past max_length scores higher."""
    det = FastLogAD(TINY | {"max_length": 24})
    det.fit(data["train"], data["val"])
    seqs = list(data["holdout"]["event_ids"].iloc[:6])
    long_seq = [e for s in seqs for e in s]
    assert len(long_seq) > 3 * 24
    anomalous = list(long_seq)
    anomalous[len(long_seq) - 3] = UNSEEN  # far beyond the first max_length tokens
    frame = windows_frame([long_seq, anomalous], 0, "long-")
    clean, dirty = det.score(frame)
    assert dirty > clean
    # the window score is the max over its chunks of max_length - 1 tokens
    size = 23
    chunks = [anomalous[i : i + size] for i in range(0, len(anomalous), size)]
    assert dirty == pytest.approx(det.score(windows_frame(chunks, 0, "c-")).max(), rel=1e-5)


def test_explain_points_at_the_injected_line(fitted, data):
    det, _ = fitted
    frame = inject(data["holdout"].iloc[:20], position=3)
    explanations = det.explain(frame)
    assert len(explanations) == 20
    scores = det.score(frame)
    top = [e.lines[0].index for e in explanations if e.lines]
    assert len(top) >= 15 and np.mean(np.asarray(top) == 3) > 0.8
    for e, s in zip(explanations, scores, strict=True):
        assert e.score == pytest.approx(s, rel=1e-5)
        probs = [x.probability for x in e.lines]
        assert probs == sorted(probs, reverse=True) and all(p > 0.5 for p in probs)
    first = next(e for e in explanations if e.lines)
    assert first.lines[0].line == f"E{UNSEEN}" and first.lines[0].event_id == UNSEEN


def test_random_variant_trains(data):
    det = FastLogAD(TINY | {"variant": "random", "warmup_epochs": 1})
    report = det.fit(data["train"], data["val"])
    assert "mlm_loss" not in report.history[0]
    assert np.median(det.score(inject(data["holdout"]))) > np.median(det.score(data["holdout"]))


def test_vocabulary_maps_unseen_and_zero_to_unk():
    vocab = Vocabulary.build([[5, 5, 7], [7, 7, 9]])
    assert len(vocab) == 4 + 3
    tokens = vocab.encode([[7, 5, 9], [0, 123], []])
    assert tokens[0].tolist() == [4, 5, 6]  # by frequency: 7, 5, 9
    assert tokens[1].tolist() == [3, 3] and tokens[2].tolist() == []


def test_config_validation():
    with pytest.raises(ConfigError, match="hidden_szie"):
        FastLogAD(hidden_szie=64)
    with pytest.raises(ConfigError, match="multiple of"):
        FastLogAD(hidden_size=30, num_heads=4)
    with pytest.raises(ConfigError, match="mask_ratio"):
        FastLogAD(mask_ratio=0)
    fields = FastLogAD.config_class.model_fields
    assert all(f.description for f in fields.values())
    assert get_method("fastlogad") is FastLogAD


def test_unfitted_raises(data):
    det = FastLogAD(TINY)
    for call in (lambda: det.score(data["val"]), lambda: det.explain(data["val"]),
                 lambda: det.threshold, lambda: det.save("/tmp/never")):
        with pytest.raises(NotFittedError, match=r"call fit\(\) or Detector.load"):
            call()


def test_small_training_sets_get_more_hst_epochs(data):
    """450 windows in batches of 32 are 15 steps an epoch: 60 steps need 4 epochs."""
    det = FastLogAD(TINY | {"warmup_epochs": 0, "epochs": 1, "min_hst_steps": 60, "patience": 10})
    report = det.fit(data["train"], data["val"])
    assert report.extra["hst_epoch_cap"] == 4
    assert sum(h["phase"] == "hst" for h in report.history) == 4
    exact = FastLogAD(TINY | {"warmup_epochs": 0, "epochs": 1, "min_hst_steps": 0}).fit(data["train"], data["val"])
    assert exact.extra["hst_epoch_cap"] == 1


def test_threshold_floor(data):
    det = FastLogAD(TINY | {"warmup_epochs": 0, "epochs": 1, "threshold_min": 50.0})
    det.fit(data["train"], data["val"])
    assert det.threshold == 50.0
