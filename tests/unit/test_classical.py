"""The classical pipeline: its features by hand, sampling inside folds only, SHAP sums,
save → load, and line-level training on real BGL lines."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import zstandard

from logad.errors import DataError
from logad.methods import load_detector
from logad.methods.classical import Classical, choose_sampler, make_sampler
from logad.methods.classical.features import FeatureConfig, Featurizer, file_types, flatten_lines
from logad.methods.classical.models import make_model
from logad.parsing.template_store import TemplateMiner, mask_contents
from logad.sources.config import load_source_config
from logad.sources.lines import LineSplitter
from logad.windows.online import from_lines

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def _hand_frame() -> pd.DataFrame:
    """Two fixed windows over one file's 5 lines (line 3 in both), times one second apart but
    for line 5, 10 s after line 4; real syslog lines from the Casper fixture."""
    text = [
        "Jan  1 10:00:00 ubuntu sshd[1]: Accepted password for root",
        "Jan  1 10:00:01 ubuntu sshd[2]: Failed password for root",
        "Jan  1 10:00:02 ubuntu sshd[3]: ERROR aab",
        "Jan  1 10:00:03 ubuntu sshd[4]: Accepted password for root",
        "Jan  1 10:00:13 ubuntu sshd[5]: session 42 opened",
    ]
    off = [len("Jan  1 10:00:00 ubuntu sshd[1]: ")] * 5
    t0 = pd.Timestamp("2026-01-01 10:00:00").value // 1000
    times = [t0 + s * 1_000_000 for s in (0, 1, 2, 3, 13)]
    ids = [7, 8, 9, 7, 10]

    def window(a: int, b: int, wid: str) -> dict:
        return {"source": "s", "window_id": wid, "start": pd.Timestamp(times[a], unit="us"),
                "end": pd.Timestamp(times[b - 1], unit="us"), "event_ids": ids[a:b], "lines": text[a:b],
                "label": pd.NA, "line_files": ["logs/auth.log"] * (b - a), "line_numbers": list(range(a + 1, b + 1)),
                "line_times": times[a:b], "message_offsets": off[a:b], "line_labels": [0, 1, 0, 0, 0][a:b]}

    return pd.DataFrame([window(0, 3, "w1"), window(2, 5, "w2")])


def test_a_line_in_two_windows_is_one_input_line_with_its_file_context():
    batch = flatten_lines(_hand_frame())
    assert batch.num_lines == 6 and batch.num_unique == 5
    assert batch.unique.tolist() == [0, 1, 2, 2, 3, 4]
    assert batch.u_message.to_pylist()[2] == "ERROR aab"
    assert batch.u_label.tolist() == [0, 1, 0, 0, 0]
    assert batch.u_first_window.tolist() == [0, 0, 0, 1, 1]


def test_line_features_match_hand_computed_values():
    frame = _hand_frame()
    batch = flatten_lines(frame)
    # training: templates 7 (twice) and 8 (once), 3 input lines
    train = flatten_lines(frame.iloc[:1].assign(event_ids=[[7, 7, 8]]))
    f = Featurizer(FeatureConfig(groups=["template", "context", "text", "temporal", "file"],
                                 context_sizes=[2], rare_count=1)).fit(train)
    x, names = f.dense_line_features(batch)
    v = dict(zip(names, x.T, strict=True))
    # template 7 seen twice, 8 once, 9 and 10 never
    assert v["template_log_count"] == pytest.approx(np.log1p([2, 1, 0, 2, 0]))
    assert v["template_unseen"].tolist() == [0, 0, 1, 0, 1]
    assert v["template_rarity"][0] == pytest.approx(-math.log10(3 / 4))
    assert v["template_wildcards"].tolist() == [0, 0, 0, 0, 1]          # "42"
    assert v["template_constant_tokens"].tolist() == [4, 4, 2, 4, 2]
    assert v["line_error"].tolist() == [0, 0, 1, 0, 0]
    # the two preceding lines in the file (not the window): line 4 sees lines 2 and 3
    assert v["ctx2_distinct_templates"].tolist() == [0, 1, 2, 2, 2]
    assert v["ctx2_unseen_share"].tolist() == [0, 0, 0, 0.5, 0.5]
    assert v["ctx2_rare_share"].tolist() == [0, 0, 0.5, 1, 0.5]       # rare: seen ≤ 1 time (8, 9, 10)
    assert v["ctx2_error_share"].tolist() == [0, 0, 0, 0.5, 0.5]
    assert v["ctx2_mean_gap_s"].tolist() == [-1, 1, 1, 1, 5.5]          # -1: no preceding line
    # text: "ERROR aab" is 9 characters, 2 tokens, 6 upper-case, no digit, no special
    assert v["text_length"][2] == 9 and v["text_tokens"][2] == 2
    assert v["text_upper_share"][2] == pytest.approx(5 / 9)
    counts = {c: "ERROR aab".count(c) for c in set("ERROR aab")}
    entropy = -sum(n / 9 * math.log2(n / 9) for n in counts.values())
    assert v["text_entropy_bits"][2] == pytest.approx(entropy)
    assert v["text_special_share"][3] == 0 and v["text_digit_share"][4] == pytest.approx(2 / 17)
    # temporal: gaps 1, 1, 1, 10 s; hour 10; 2026-01-01 is a Thursday
    assert v["time_gap_log_s"].tolist() == pytest.approx([-1, *np.log1p([1, 1, 1, 10])])
    assert v["time_hour"].tolist() == [10] * 5 and v["time_weekday"].tolist() == [3] * 5
    assert v["file_type[auth]"].tolist() == [1] * 5


def test_file_types_are_the_leading_letters_of_the_file_name():
    got = file_types(np.array(["/x/auth.log.1", "syslog.2.gz", None, "kern.log", "y/dmesg.0"], dtype=object))
    assert got.tolist() == ["auth", "syslog", "", "kern", "dmesg"]


@pytest.mark.parametrize("analyzer", ["word", "char"])
def test_tfidf_never_makes_terms_of_numbers_or_ids(analyzer):
    batch = flatten_lines(_hand_frame())
    f = Featurizer(FeatureConfig(groups=["tfidf"], tfidf_min_df=1, tfidf_analyzer=analyzer)).fit(batch)
    if analyzer == "word":
        assert "password" in f.vocabulary and "failed password" in f.vocabulary
    else:  # 3- to 5-grams of letters within a word, padded by a space at its edges
        assert {" fail", "passw", "word "} <= set(f.vocabulary) and max(map(len, f.vocabulary)) == 5
    assert not any(any(ch.isdigit() for ch in t) for t in f.vocabulary)
    assert not any("ubun" in t for t in f.vocabulary)  # the header is not the message


def test_sampler_follows_the_imbalance_ratio():
    assert choose_sampler(np.array([0, 0, 1]))[0] == "none"
    assert choose_sampler(np.array([0] * 5 + [1]))[0] == "smote"
    assert choose_sampler(np.array([0] * 50 + [1]))[0] == "borderline-smote"
    assert choose_sampler(np.array([0] * 101 + [1]))[0] == "adasyn"
    # the minority may be the normal class too
    assert choose_sampler(np.array([1] * 5 + [0]))[0] == "smote"


from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402


class _Recorder(ClassifierMixin, BaseEstimator):
    """A real, minimal scikit-learn classifier that keeps the rows it was fitted on."""

    seen: list[np.ndarray] = []

    def fit(self, x, y):
        self.classes_ = np.array([0, 1])
        _Recorder.seen.append(np.asarray(x.toarray() if sp.issparse(x) else x))
        return self

    def predict_proba(self, x):
        return np.tile([0.5, 0.5], (x.shape[0], 1))


def test_sampling_happens_inside_the_training_folds_only():
    """SMOTE in the imbalanced-learn pipeline interpolates between training-fold rows only: the
    validation fold's anomalies carry a marker no synthetic row may inherit."""
    from imblearn.pipeline import Pipeline
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = np.array([1] * 20 + [0] * 100)
    folds = list(StratifiedKFold(n_splits=3, shuffle=True, random_state=0).split(x, y))
    for tr, te in folds:
        xm = x.copy()
        xm[:, 0] = 0.0
        xm[te[y[te] == 1], 0] = 1000.0  # the validation fold's anomalies only
        _Recorder.seen = []
        pipe = Pipeline([("sampler", make_sampler("smote", y[tr], 0.5, 0)), ("model", _Recorder())])
        pipe.fit(xm[tr], y[tr])
        fitted = _Recorder.seen[-1]
        assert len(fitted) > len(tr)                       # the sampler did add rows...
        assert (fitted[:, 0] == 0).all()                   # ...none from or towards validation rows
        pipe.predict_proba(xm[te])                         # scoring never resamples
        assert len(_Recorder.seen) == 1


@pytest.fixture(scope="module")
def bgl() -> pd.DataFrame:
    """Windows of the first 1,500 BGL fixture lines (per-line labels), through the online
    builder (the last 500 lines are the evaluation part of the shared BGL data)."""
    with open(FIXTURES / "loghub_2k" / "BGL_2k.log.zst", "rb") as fh:
        lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh)).read().splitlines()[:1500]
    config = load_source_config(ROOT / "data_pipelines" / "bgl.yaml")
    sl = LineSplitter(config).split(__import__("pyarrow").array(lines))
    miner = TemplateMiner(config.parsing)
    miner.add(mask_contents(sl.content, config.parsing).to_pylist())
    windows, _ = from_lines(lines, config, miner.freeze(), file_name="BGL_2k.log")
    return windows


TINY = dict(n_estimators=40, max_depth=4, cv_folds=2, n_jobs=1, device="cpu", seed=0)


@pytest.fixture(scope="module")
def line_model(bgl) -> tuple[Classical, pd.DataFrame]:
    # interleaved windows: the same kinds of anomaly on both sides (learning, not generalising)
    k = np.arange(len(bgl)) % 4
    train, val, test = bgl[k < 2], bgl[k == 2], bgl[k == 3]
    det = Classical(TINY)
    det.fit(train, val)
    return det, test


def test_trains_per_line_where_lines_are_labelled_and_separates_them(line_model):
    det, test = line_model
    assert det.level == "line" and det.line_level
    window, lines = det.score_with_lines(test)
    labels = np.concatenate([np.asarray(v, dtype=float) for v in test["line_labels"]])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels, lines) > 0.9
    # a window's score is its strongest line's, at the same threshold
    counts = [len(x) for x in test["event_ids"]]
    np.testing.assert_allclose(window, [s.max() for s in np.split(lines, np.cumsum(counts)[:-1])])
    assert det.line_threshold == det.threshold


@pytest.mark.parametrize("hosts", [2, 3])
def test_the_cut_comes_from_other_sources_only_where_training_holds_three_or_more(bgl, hosts):
    k = np.arange(len(bgl))
    frame = bgl.assign(input=[f"/logs/host{i % hosts}" for i in k // 4])
    train, val = frame[k % 4 < 3], frame[k % 4 == 3]
    det = Classical(TINY)
    report = det.fit(train, val)
    if hosts == 2:  # two curves, each from a model that saw one host: the validation cut
        assert det.threshold_strategy.startswith("validation-tuned")
        assert "2 training sources: a cross-source cut needs cross_source_min_sources 3" in det.threshold_strategy
        assert "cross_source_f1" not in report.extra
        assert sorted(report.extra["feature_groups_by_source"]["sources"]) == ["/logs/host0", "/logs/host1"]
        two = Classical(TINY | {"cross_source_min_sources": 2})
        report = two.fit(train, val)
        assert two.threshold_strategy.startswith("cross-source") and "of 2 sources" in two.threshold_strategy
    else:
        assert det.threshold_strategy.startswith("cross-source") and "of 3 sources" in det.threshold_strategy
        assert sorted(report.extra["cross_source_f1"]) == ["/logs/host0", "/logs/host1", "/logs/host2"]
    # the feature groups are chosen by source only where the cut is not: two sources take
    # one remedy for scores that move on a new host, three or more the other
    assert ("feature_groups_by_source" in report.extra) == (hosts == 2 and "cross_source_f1" not in report.extra)
    assert report.extra["feature_groups"] == (det if hosts == 3 else two).config.feature_groups


def test_line_model_save_load_identical_scores_and_no_pickle(line_model, tmp_path):
    det, test = line_model
    det.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "state.json", "features.json", "model.json"} <= files
    assert not any(p.suffix in {".pkl", ".pickle", ".joblib"} for p in (tmp_path / "m").iterdir())
    loaded = load_detector(tmp_path / "m")
    np.testing.assert_array_equal(loaded.score_lines(test), det.score_lines(test))
    assert loaded.threshold == det.threshold and loaded.level == "line"


def test_explanations_name_top_features_with_values_and_shap(line_model):
    det, test = line_model
    out = det.explain(test.iloc[:20])
    assert len(out) == 20
    np.testing.assert_allclose([e.score for e in out], det.score(test.iloc[:20]), rtol=1e-6)
    top = [f for e in out for f in e.features]
    assert top and all(f.name in det.feature_names and np.isfinite(f.value) and f.shap != 0 for f in top)
    for e in out:
        shaps = [abs(f.shap) for f in e.features]
        assert shaps == sorted(shaps, reverse=True) and len(shaps) <= det.config.top_features
    # each window is explained by its strongest line, each distinct line once: windows that
    # share it share its features, which are that line's own SHAP explanation
    from logad.methods._lines import flatten_lines

    batch = flatten_lines(test.iloc[:20])
    ux, _ = det.featurizer.line_matrix(batch)
    lines = det.score_lines(test.iloc[:20])
    starts = np.concatenate(([0], np.cumsum(batch.counts)[:-1]))
    best = [batch.unique[s + int(np.argmax(lines[s:s + n]))] for s, n in zip(starts, batch.counts, strict=True)]
    assert len(set(best)) < len(best)  # sliding windows: some share their strongest line
    assert [e.features for e in out] == [det.top_features(ux[[b]])[0] for b in best]


@pytest.mark.parametrize("family", ["xgboost", "lightgbm", "random-forest", "logistic-regression"])
def test_shap_values_sum_to_the_margin(family, tmp_path):
    rng = np.random.default_rng(1)
    x = sp.csr_matrix(np.abs(rng.normal(size=(300, 6))))
    y = (x[:, 0].toarray().ravel() + x[:, 1].toarray().ravel() > 1.6).astype(int)
    params = dict(n_estimators=30, max_depth=4, learning_rate=0.2, subsample=1.0, colsample=1.0,
                  min_child_weight=1.0, reg_lambda=1.0, C=1.0, seed=0, n_jobs=1, device="cpu")
    model = make_model(family, params)
    model.fit(x, y, None)
    values, expected = model.contributions(x[:50])
    np.testing.assert_allclose(values.sum(axis=1) + expected, model.margin(x[:50]), atol=1e-4)
    # and the portable artifact scores the same
    model.save(tmp_path)
    from logad.methods.classical.models import load_model

    np.testing.assert_allclose(load_model(family, params, tmp_path).proba(x), model.proba(x), rtol=1e-6)


def test_window_labels_only_give_a_window_model(bgl):
    frame = bgl.assign(line_labels=None)
    n = len(frame)
    det = Classical(TINY | {"feature_groups": ["template", "text"]})
    det.fit(frame.iloc[: n // 2], frame.iloc[n // 2:])
    assert det.level == "window" and not det.line_level
    with pytest.raises(NotImplementedError, match="scores windows"):
        det.score_lines(frame.iloc[:5])


def test_one_class_training_is_refused_with_a_reason(bgl):
    normal = bgl.assign(line_labels=[[0] * len(x) for x in bgl["event_ids"]])
    with pytest.raises(DataError, match="both normal and anomalous"):
        Classical(TINY).fit(normal.iloc[:100], normal.iloc[100:150])


# -- the optional sbert group (real all-MiniLM-L6-v2, from the offline wheel) ----------------------


def test_sbert_group_gives_one_vector_per_line_and_means_and_maxima_per_window():
    from logad.embeddings import EmbeddingCache

    frame = _hand_frame()
    batch = flatten_lines(frame)
    f = Featurizer(FeatureConfig(groups=["sbert"])).fit(batch)
    x, names = f.line_matrix(batch)
    assert x.shape == (5, 384) and names == [f"sbert_{i}" for i in range(384)]
    dense = x.toarray()
    # lines 1 and 4 say the same thing; "session 42 opened" is embedded with its number masked
    np.testing.assert_array_equal(dense[0], dense[3])
    direct = EmbeddingCache().lookup(["Accepted password for root", "session 0 opened"])
    np.testing.assert_allclose(dense[[0, 4]], direct, atol=1e-6)
    xw, wnames = f.window_matrix(frame, batch)
    cols = {n: i for i, n in enumerate(wnames)}
    mean = xw[:, [cols[f"mean_sbert_{i}"] for i in range(384)]].toarray()
    top = xw[:, [cols[f"max_sbert_{i}"] for i in range(384)]].toarray()
    lines = [dense[[0, 1, 2]], dense[[2, 3, 4]]]                # w1: lines 1-3, w2: lines 3-5
    np.testing.assert_allclose(mean, [w.mean(axis=0) for w in lines], atol=1e-6)
    np.testing.assert_allclose(top, [w.max(axis=0) for w in lines], atol=1e-6)
    # projected on principal axes of the training messages' vectors: k named columns
    g = Featurizer(FeatureConfig(groups=["sbert"], sbert_components=3)).fit(batch)
    xp, pnames = g.line_matrix(batch)
    assert xp.shape == (5, 3) and pnames == ["sbert_pc_0", "sbert_pc_1", "sbert_pc_2"]


def test_sbert_cache_embeds_each_distinct_message_once_and_only_unseen_ones_later():
    frame = _hand_frame()
    batch = flatten_lines(frame)
    f = Featurizer(FeatureConfig(groups=["sbert"])).fit(batch)
    # 5 lines, 4 distinct texts: each embedded once, the repeat never reaches the cache
    assert f.embedding_counts == {"hits": 0, "misses": 4, "kept": 4}
    f.line_matrix(batch)
    f.window_matrix(frame, batch)
    assert f.embedding_counts == {"hits": 8, "misses": 4, "kept": 4}
    # a new message, three times and with other numbers: one miss; the known ones hit
    later = frame.iloc[:1].assign(lines=[["Jan  1 10:00:00 ubuntu sshd[1]: Accepted password for root",
                                          "Jan  1 10:00:01 ubuntu sshd[2]: disk 7 is full",
                                          "Jan  1 10:00:02 ubuntu sshd[3]: disk 12 is full"]])
    f.line_matrix(flatten_lines(later))
    assert f.embedding_counts == {"hits": 9, "misses": 5, "kept": 4}
    f.line_matrix(flatten_lines(later))
    assert f.embedding_counts == {"hits": 11, "misses": 5, "kept": 4}   # kept: training messages only


@pytest.fixture(scope="module")
def sbert_model(bgl) -> tuple[Classical, pd.DataFrame]:
    k = np.arange(len(bgl)) % 4
    train, val, test = bgl[k < 2], bgl[k == 2], bgl[k == 3]
    det = Classical(TINY | {"feature_groups": ["template", "text", "sbert"], "sbert_components": 8})
    det.fit(train, val)
    return det, test


def test_sbert_model_save_load_identical_scores_and_embeds_only_unseen_messages(sbert_model, tmp_path):
    det, test = sbert_model
    assert det.feature_names[-8:] == [f"sbert_pc_{i}" for i in range(8)]
    kept = det.featurizer.embeddings
    assert det.fit_report.extra["sbert_messages_kept"] == len(kept)
    det.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"features.json", "embeddings.safetensors", "embeddings.json"} <= files
    assert not any(p.suffix in {".pkl", ".pickle", ".joblib"} for p in (tmp_path / "m").iterdir())
    loaded = load_detector(tmp_path / "m")
    np.testing.assert_array_equal(loaded.score_lines(test), det.score_lines(test))
    # the loaded model holds the training and validation vectors: it embeds only the test
    # part's texts that neither part had
    from logad.embeddings import texts_to_embed

    texts = set(texts_to_embed(flatten_lines(test).u_message, "masked").to_pylist())
    new = {t for t in texts if t not in kept}
    counts = loaded.featurizer.embedding_counts
    assert counts["misses"] == len(new) and counts["hits"] == len(texts) - len(new)
    assert counts["kept"] == len(kept)
    # a line whose message neither part had: embedded once, however often it is scored
    window = test.iloc[:1].copy()
    lines = list(window["lines"].iloc[0])
    lines[0] += " and an unheard-of ending"
    window["lines"] = [lines]
    loaded.score_lines(window)
    loaded.score_lines(window)
    assert loaded.featurizer.embedding_counts["misses"] == counts["misses"] + 1
    assert loaded.featurizer.embedding_counts["kept"] == len(kept)


def test_sbert_model_shap_values_sum_to_the_margin(sbert_model):
    det, test = sbert_model
    x, names = det.featurizer.line_matrix(flatten_lines(test.iloc[:30]))
    assert names == det.feature_names
    values, expected = det.model.contributions(x)
    np.testing.assert_allclose(values.sum(axis=1) + expected, det.model.margin(x), atol=1e-4)
    assert np.abs(values[:, [i for i, n in enumerate(names) if n.startswith("sbert_pc_")]]).sum() > 0
