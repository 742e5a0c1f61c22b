"""The classical pipeline: engineered features, gradient boosting, imbalance-aware sampling.

After the enterprise log anomaly system (a report on 16 heterogeneous sources):
Drain templates plus engineered features (:mod:`.features`), a supervised model
(XGBoost by default; LightGBM, a random forest or logistic regression by the
``model`` key), sampling chosen by the training part's imbalance, a threshold
tuned on the validation part, and SHAP explanations of every verdict.

Two levels, chosen from the training labels (``level: auto``):

* **line**: where the training windows carry per-line labels (BGL, Liberty, the
  keyword-labelled syslog sources), every input line is a sample; a line's
  score is the model's probability, a window's score the max over its lines
  and its threshold the line threshold, so a window is flagged exactly when
  one of its lines is.
* **window**: where only windows are labelled (HDFS blocks), every window is a
  sample, its features the template counts and the mean and max of its lines'
  features; such a model scores windows only.

Sampling (``sampler: auto``) follows the report's rule on the training part's
imbalance ratio r = majority / minority: r < 3 none, 3 ≤ r < 10 SMOTE,
10 ≤ r ≤ 100 BorderlineSMOTE, r > 100 ADASYN (imbalanced-learn), raising the
minority to ``sampling_ratio`` of the majority; ``class_weight`` weighs what
imbalance remains. The sampler runs inside an imbalanced-learn pipeline, so in
cross-validation (``cv_folds``) it only ever sees each fold's training rows, and
it never touches validation or test data.

The threshold is the best-F1 cut (or the lowest cut reaching ``target_precision``)
on the validation part's labels, which is fair for a supervised method; test
labels are never read. Where validation holds one class only, the out-of-fold
cross-validation scores of the training part stand in, and without those the
highest normal validation score. Where the training part holds several sources
(``cross_source``; at least ``cross_source_min_sources``, 3), the folds are the sources
and the threshold comes from those out-of-source scores, the cut with the best mean F1
over sources (each weighing the same, so the sources where most lines are anomalous do
not push it towards flagging everything): a model meant for logs of hosts it has never
seen should not take its cut from validation lines of the hosts it trained on, which it
separates far better. With two sources that mean is two curves, each from a model that
saw one host only, and it transferred worse than the validation cut on the forensic pair
(docs/architecture.md), so two sources keep the validation cut.

Two sources take the other remedy for scores that move on a new host: features whose
scores do not. The fit holds each source out in turn, fits ``feature_groups`` and the
smaller ``transfer_groups`` (a line's words and file type) on the other, cuts each at
the best F1 of its own out-of-fold scores, scores the held-out source with it, and keeps
the set with the higher mean F1 (:meth:`Classical._choose_groups`). From three sources up
the cross-source cut does that job, and there every group measured better.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from logad.errors import DataError
from logad.methods._events import read_state
from logad.methods._lines import has_line_labels, window_max
from logad.methods._sampling import SAMPLERS, choose_sampler, make_sampler
from logad.methods._thresholds import best_f1_cut as _best_cut
from logad.methods._thresholds import macro_f1_cut, source_f1
from logad.methods.base import (
    Detector,
    EpochCallback,
    FeatureEvidence,
    FitReport,
    LineEvidence,
    WindowExplanation,
    as_windows_frame,
    read_artifact_header,
    read_fitted_state,
    register_method,
    window_labels,
    write_artifact_header,
    write_fitted_state,
)
from logad.methods.classical.features import (
    DEFAULT_GROUPS,
    FEATURE_GROUPS,
    FeatureConfig,
    Featurizer,
    LineBatch,
    flatten_lines,
)
from logad.methods.classical.models import MODEL_FAMILIES, Model, load_model, make_model

__all__ = ["Classical", "ClassicalConfig", "choose_sampler", "make_sampler"]



class ClassicalConfig(BaseModel):
    """Settings of :class:`Classical`."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["xgboost", "lightgbm", "random-forest", "logistic-regression"] = Field(
        "xgboost", description=f"model family, one of {list(MODEL_FAMILIES)}")
    level: Literal["auto", "line", "window"] = Field(
        "auto", description="line: a sample per input line (needs line labels); window: a sample per window; "
        "auto: line where the training windows carry line labels")
    feature_groups: list[str] = Field(list(DEFAULT_GROUPS), description=f"feature groups, of {list(FEATURE_GROUPS)} "
                                      "(sbert is opt-in: it loads all-MiniLM-L6-v2)")
    transfer_groups: list[str] | None = Field(
        ["tfidf", "file"], description="with labelled samples from two training sources (fewer than "
        "cross_source_min_sources, so the cut comes from validation), these feature groups are tried against "
        "feature_groups by holding out each training source in turn (a model fitted on the other, its cut from "
        "its cross-validation, scores it) and the set with the higher mean F1 on the held-out sources is used; "
        "null: feature_groups always. The default keeps a line's words and file type and leaves out what is "
        "measured against the training logs' own statistics")
    context_sizes: list[int] = Field([5, 10, 20, 50], description="preceding-line counts of the context features")
    rare_count: int = Field(5, ge=0, description="a template seen at most this often in training is rare")
    tfidf_max_features: int = Field(4096, ge=16, description="TF-IDF vocabulary size")
    tfidf_ngrams: int = Field(2, ge=1, le=3, description="TF-IDF word n-grams up to this length")
    tfidf_analyzer: Literal["word", "char"] = Field(
        "word", description="TF-IDF terms: words (letters only), or character 3-5-grams within words")
    sbert_text: Literal["masked", "message"] = Field(
        "masked", description="sbert group: embed each message with its numbers and hex ids masked (one vector "
        "per message shape), or the message as it is")
    sbert_components: int = Field(0, ge=0, le=384, description="sbert group: principal axes of the training "
                                  "messages' vectors to project on (0: all 384 dimensions)")
    n_estimators: int = Field(300, ge=1, description="trees (boosting rounds for xgboost/lightgbm)")
    max_depth: int = Field(6, ge=1, le=32, description="tree depth")
    learning_rate: float = Field(0.1, gt=0, le=1, description="boosting learning rate")
    subsample: float = Field(0.8, gt=0, le=1, description="row subsampling per tree (boosting)")
    colsample: float = Field(0.8, gt=0, le=1, description="feature subsampling per tree")
    min_child_weight: float = Field(1.0, ge=0, description="minimum leaf weight (boosting) / samples (forest)")
    reg_lambda: float = Field(1.0, ge=0, description="L2 regularisation of the boosted trees")
    C: float = Field(1.0, gt=0, description="inverse regularisation of logistic regression")
    sampler: str = Field("auto", description=f"imbalance sampler, one of {list(SAMPLERS)}; auto by imbalance ratio")
    sampling_ratio: float = Field(0.5, gt=0, le=1, description="over-samplers raise the minority to this share "
                                  "of the majority (under-samplers lower the majority to minority / ratio)")
    class_weight: bool = Field(True, description="weigh the remaining imbalance in the loss")
    cv_folds: int = Field(3, ge=0, le=20, description="stratified cross-validation folds on the training part "
                          "(sampling inside each fold); 0 skips it")
    threshold: Literal["best-f1", "precision"] = Field(
        "best-f1", description="threshold on validation: best F1, or the lowest cut reaching target_precision")
    target_precision: float = Field(0.9, gt=0, le=1, description="validation precision for threshold=precision")
    cross_source: bool = Field(True, description="where the training part holds several sources (ingest "
                               "inputs), cross-validate by source and take the threshold from those out-of-source "
                               "scores: a threshold for logs of a source the model has not seen")
    cross_source_min_sources: int = Field(
        3, ge=2, description="the fewest training sources for a cross-source threshold; with fewer, the cut "
        "comes from the validation part (on two forensic hosts each host's cut transferred worse to the other "
        "than the validation cut did)")
    top_features: int = Field(5, ge=1, le=50, description="features named per verdict in explanations")
    n_jobs: int = Field(0, ge=0, description="threads (0: the CPUs this process may use)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="xgboost device (auto: cuda when present)")
    seed: int = Field(0, description="random seed (sampling, subsampling, folds)")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v: str) -> str:
        if v not in SAMPLERS:
            raise ValueError(f"unknown sampler {v!r}; known: {list(SAMPLERS)}")
        return v

    @field_validator("feature_groups")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        return FeatureConfig(groups=v).groups

    @field_validator("transfer_groups")
    @classmethod
    def _transfer_groups(cls, v: list[str] | None) -> list[str] | None:
        return FeatureConfig(groups=v).groups if v else None


def _threads(n: int) -> int:
    if n > 0:
        return n
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _device(setting: str) -> str:
    if setting != "auto":
        return setting
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


@register_method
class Classical(Detector):
    """Engineered features + a supervised classifier, per line or per window."""

    name = "classical"
    supervised = True
    line_level = True
    """Line-level where trained on line labels; a model trained on window labels scores windows only."""
    config_class = ClassicalConfig
    scoring_columns = ("lines", "line_files", "line_numbers", "line_times", "message_offsets", "start", "end")

    def __init__(self, config: ClassicalConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.level: str | None = None
        self.featurizer: Featurizer | None = None
        self.model: Model | None = None
        self.feature_names: list[str] = []
        self.fit_report: FitReport | None = None
        self.sampler_used = "none"

    # -- helpers --------------------------------------------------------------------------------

    def _feature_config(self) -> FeatureConfig:
        c = self.config
        return FeatureConfig(groups=c.feature_groups, context_sizes=c.context_sizes, rare_count=c.rare_count,
                             tfidf_max_features=c.tfidf_max_features, tfidf_ngrams=c.tfidf_ngrams,
                             tfidf_analyzer=c.tfidf_analyzer, sbert_text=c.sbert_text,
                             sbert_components=c.sbert_components)

    def _sbert_device(self) -> str:
        """Where the sbert group runs SBERT: the configured device (CPU without the group)."""
        return _device(self.config.device) if "sbert" in self.config.feature_groups else "cpu"

    def _params(self) -> dict[str, Any]:
        c = self.config
        return {"n_estimators": c.n_estimators, "max_depth": c.max_depth, "learning_rate": c.learning_rate,
                "subsample": c.subsample, "colsample": c.colsample, "min_child_weight": c.min_child_weight,
                "reg_lambda": c.reg_lambda, "C": c.C, "seed": c.seed, "n_jobs": _threads(c.n_jobs),
                "device": _device(c.device) if c.model == "xgboost" else "cpu"}

    def _samples(self, frame: pd.DataFrame, batch: LineBatch) -> tuple[sp.csr_matrix, np.ndarray]:
        """Feature rows and labels (NaN where unknown) of one part, at the model's level."""
        assert self.featurizer is not None
        if self.level == "line":
            x, _ = self.featurizer.line_matrix(batch)
            return x, batch.u_label
        x, _ = self.featurizer.window_matrix(frame, batch)
        return x, window_labels(frame)

    @property
    def threshold_kind(self) -> str:
        strategy = getattr(self, "threshold_strategy", "")
        return strategy.split(":", 1)[0] if strategy else "validation-tuned"

    @staticmethod
    def _window_sources(frame: pd.DataFrame) -> np.ndarray | None:
        """The source of every window (its ``input``, else ``source``), or None."""
        col = "input" if "input" in frame and frame["input"].notna().any() else "source"
        if col not in frame:
            return None
        return frame[col].astype(object).where(frame[col].notna(), "").to_numpy(dtype=object)

    def _sample_sources(self, frame: pd.DataFrame, batch: LineBatch) -> np.ndarray:
        """The source of every sample (its window's ``input``, else ``source``)."""
        values = self._window_sources(frame)
        if values is None:
            return np.zeros(batch.num_unique if self.level == "line" else len(frame), dtype=object)
        return values[batch.u_first_window] if self.level == "line" else values

    def _choose_groups(self, train: pd.DataFrame, level: str,
                       progress: EpochCallback | None) -> dict[str, Any] | None:
        """Which feature groups transfer to a source the model has not seen: ``feature_groups``
        or ``transfer_groups``, by holding out each training source with labelled samples of
        both classes in turn. Returns what was tried; None where there was nothing to try, or
        where the training sources are enough for a cross-source cut."""
        c = self.config
        full, alt = list(c.feature_groups), c.transfer_groups
        src = self._window_sources(train)
        if not alt or set(alt) == set(full) or src is None:
            return None
        parts: dict[str, tuple[pd.DataFrame, LineBatch]] = {}  # the held-out candidates, flattened once
        labelled = 0
        for name in sorted(set(src.tolist())):
            part = train[src == name]
            batch = flatten_lines(part)
            y = batch.u_label if level == "line" else window_labels(part)
            known = np.count_nonzero(~np.isnan(y))
            labelled += known > 0
            if 0 < np.nansum(y) < known:
                parts[name] = (part, batch)
        if len(parts) < 2 or (c.cross_source and labelled >= c.cross_source_min_sources):
            return None  # from three sources up the cut comes from out-of-source scores instead
        tried: dict[str, dict[str, Any]] = {}
        for key, groups in (("feature_groups", full), ("transfer_groups", list(alt))):
            per_source: dict[str, float] = {}
            for name, (part, batch) in parts.items():
                # the cut from the other sources' out-of-fold scores: their share of the
                # validation part can be a few lines of one class
                inner = Classical(c.model_copy(update={"feature_groups": groups, "transfer_groups": None,
                                                       "cv_folds": max(c.cv_folds, 2), "level": level}))
                try:
                    inner.fit(train[src != name], train.iloc[:0])
                except DataError:  # the other sources lack a class: no fold here
                    continue
                x, y = inner._samples(part, batch)
                known = np.flatnonzero(~np.isnan(y))
                per_source.update(source_f1(y[known], inner.model.proba(x[known]),
                                            np.full(len(known), name, dtype=object), inner.threshold))
                if callable(progress):
                    progress({"phase": "groups", "epoch": len(per_source) - 1, "candidate": key,
                              "held_out_f1": per_source[name]})
            tried[key] = {"groups": groups, "held_out_f1": per_source,
                          "mean_f1": float(np.mean(list(per_source.values()))) if per_source else float("nan")}
        a, b = tried["feature_groups"]["mean_f1"], tried["transfer_groups"]["mean_f1"]
        chosen = "transfer_groups" if b > a else "feature_groups"  # a tie (or no fold) keeps the full set
        return {"chosen": chosen, "groups": tried[chosen]["groups"], "tried": tried, "sources": list(parts)}

    def _class_weight(self, y: np.ndarray, sampler: Any) -> float:
        """Positive-class weight for the boosted models (forest and linear use balanced weights)."""
        if not self.config.class_weight:
            return 1.0
        pos, neg = max(int((y == 1).sum()), 1), int((y == 0).sum())
        if sampler is not None and hasattr(sampler, "sampling_strategy") and isinstance(
                sampler.sampling_strategy, float) and pos < neg:
            pos = max(pos, int(self.config.sampling_ratio * neg))
        return float(max(neg, 1) / pos)

    def _pipeline(self, y: np.ndarray, sampler_name: str) -> tuple[Any, Any, Model]:
        """An imbalanced-learn pipeline (sampler → estimator), the sampler and a fresh model."""
        from imblearn.pipeline import Pipeline

        c = self.config
        sampler = make_sampler(sampler_name, y, c.sampling_ratio, c.seed)
        params = self._params()
        params["scale_pos_weight"] = self._class_weight(y, sampler)
        model = make_model(c.model, params)
        steps = ([("sampler", sampler)] if sampler is not None else []) + [("model", model.estimator())]
        return Pipeline(steps), sampler, model

    # -- the Detector contract ------------------------------------------------------------------

    def fit(self, train: pd.DataFrame, val: pd.DataFrame, *, progress: bool | EpochCallback | None = None) -> FitReport:
        t0 = time.perf_counter()
        c = self.config
        train, val = as_windows_frame(train), as_windows_frame(val)
        if not len(train):
            raise DataError("classical needs training windows; got none")
        level = c.level
        if level == "auto":
            level = "line" if has_line_labels(train) else "window"
        if level == "line" and not has_line_labels(train):
            raise DataError("level=line needs per-line labels in the training windows (line_labels); "
                            "use level=window or a source that labels lines")
        self.level = level
        self.line_level = level == "line"  # an instance's answer; the class says it may score lines
        transfer = self._choose_groups(train, level, progress if callable(progress) else None)
        if transfer is not None and transfer["groups"] != list(c.feature_groups):
            self.config = c = c.model_copy(update={"feature_groups": transfer["groups"]})
        tb = flatten_lines(train)
        vb = flatten_lines(val) if len(val) else None
        # the sbert group keeps the vectors of the training and validation messages
        self.featurizer = Featurizer(self._feature_config(), self._sbert_device()).fit(tb, keep=vb)
        x, y = self._samples(train, tb)
        if level == "line":
            self.feature_names = self.featurizer.line_matrix(flatten_lines(train.iloc[:1]))[1]
        else:
            self.feature_names = self.featurizer.window_matrix(train.iloc[:1], flatten_lines(train.iloc[:1]))[1]
        keep = ~np.isnan(y)
        x, y = x[np.flatnonzero(keep)], y[keep].astype(np.int64)
        if len(np.unique(y)) < 2:
            raise DataError(
                f"classical is supervised: its training {level}s need both normal and anomalous labels "
                f"(got {int((y == 1).sum())} anomalous of {len(y)}); use a split that keeps anomalies in training")
        sampler_name, ratio = choose_sampler(y) if c.sampler == "auto" else (c.sampler, choose_sampler(y)[1])
        self.sampler_used = sampler_name
        history: list[dict[str, Any]] = []

        # cross-validation: the sampler inside each fold's training rows only
        oof = None
        fold_f1s: list[float] = []
        groups = self._sample_sources(train, tb)[keep] if c.cross_source else None
        n_sources = len(set(groups.tolist())) if groups is not None else 0
        cross_source = n_sources >= c.cross_source_min_sources
        if c.cv_folds >= 2 and min((y == 1).sum(), (y == 0).sum()) >= c.cv_folds:
            from sklearn.model_selection import GroupKFold, StratifiedKFold

            oof = np.zeros(len(y))
            if cross_source:  # each source's rows are scored by a model that never saw that source
                splits = GroupKFold(n_splits=min(c.cv_folds, n_sources)).split(np.zeros(len(y)), y, groups)
            else:
                splits = StratifiedKFold(n_splits=c.cv_folds, shuffle=True, random_state=c.seed).split(
                    np.zeros(len(y)), y)
            for k, (tr, te) in enumerate(splits):
                if len(np.unique(y[tr])) < 2:
                    continue
                pipe, _, model = self._pipeline(y[tr], sampler_name)
                pipe.fit(x[tr], y[tr])
                model.adopt(pipe.steps[-1][1])
                oof[te] = model.proba(x[te])
                m = _metrics(y[te], oof[te])
                fold_f1s.append(m.get("f1", float("nan")))
                entry = {"phase": "cv", "epoch": k, "fold_f1": m.get("f1", float("nan")),
                         "fold_aupr": m.get("aupr", float("nan")), "cv_f1": float(np.nanmean(fold_f1s))}
                history.append(entry)
                if callable(progress):
                    progress(dict(entry))

        pipe, sampler, model = self._pipeline(y, sampler_name)
        pipe.fit(x, y)
        model.adopt(pipe.steps[-1][1])
        if c.model == "logistic-regression":
            model.arrays["mean"] = np.asarray(sp.csr_matrix(x).mean(axis=0)).ravel()
        self.model = model
        self._threshold = 0.0  # lets the scoring helpers run; replaced below

        # the threshold: validation labels, else out-of-fold scores, else normal validation scores
        val_scores, val_y = np.zeros(0), np.zeros(0)
        if vb is not None:
            vx, vy = self._samples(val, vb)
            val_scores = model.proba(vx)
            known = ~np.isnan(vy)
            val_scores, val_y = val_scores[known], vy[known].astype(np.int64)
        if cross_source and oof is not None and 0 < y.sum() < len(y):
            cut, note = macro_f1_cut(y, oof, groups)
            strategy = (f"cross-source: {note} on {len(y)} training {level}s of {n_sources} "
                        "sources, each scored by a model trained without its source")
        elif len(val_y) and 0 < val_y.sum() < len(val_y):
            cut, note = _best_cut(val_y, val_scores, c.threshold, c.target_precision)
            strategy = f"validation-tuned ({c.threshold}): {note} on {len(val_y)} validation {level}s"
            if c.cross_source and 2 <= n_sources < c.cross_source_min_sources:
                strategy += (f" ({n_sources} training sources: a cross-source cut needs "
                             f"cross_source_min_sources {c.cross_source_min_sources})")
        elif oof is not None:
            cut, note = _best_cut(y, oof, c.threshold, c.target_precision)
            strategy = (f"cross-validation ({c.threshold}): {note} on {len(y)} out-of-fold training {level}s "
                        "(the validation part holds one class only)")
        else:
            ref = val_scores[val_y == 0] if len(val_y) else model.proba(x[y == 0])
            cut = float(np.max(ref)) if len(ref) else 0.5
            strategy = "label-free: the highest normal validation score (no labelled anomalies to tune on)"
        self._threshold = float(cut)
        self._line_threshold = float(cut) if level == "line" else None
        self.threshold_strategy = strategy
        vm = _metrics(val_y, val_scores) if len(val_y) else {}
        val_entry = {"phase": "final", "epoch": len(history), "val_samples": float(len(val_y))}
        if "f1" in vm:
            val_entry |= {"val_f1": vm["f1"], "val_aupr": vm["aupr"]}
        if fold_f1s:
            val_entry["cv_f1"] = float(np.nanmean(fold_f1s))
        history.append(val_entry)
        if callable(progress):
            progress(dict(val_entry))
        report = FitReport(
            method=self.name, history=history, best_epoch=len(history) - 1, train_time_s=time.perf_counter() - t0,
            num_train_windows=len(train), num_val_windows=len(val), threshold=self._threshold,
            extra={"level": level, "model": c.model, "sampler": sampler_name, "imbalance_ratio": round(ratio, 3),
                   "train_samples": int(len(y)), "train_anomalous": int(y.sum()), "num_features": len(self.feature_names), "threshold_strategy": strategy,
                   "cv_f1": float(np.nanmean(fold_f1s)) if fold_f1s else None,
                   "cv_by_source": cross_source, "feature_groups": list(c.feature_groups)},
        )
        if transfer is not None:
            report.extra["feature_groups_by_source"] = transfer
            tried = transfer["tried"]
            report.notes.append(
                f"feature groups {'+'.join(transfer['groups'])}: its {len(transfer['sources'])} training sources, "
                f"each held out in turn, scored mean F1 {tried['transfer_groups']['mean_f1']:.3f} with "
                f"{'+'.join(tried['transfer_groups']['groups'])} against {tried['feature_groups']['mean_f1']:.3f} with "
                f"{'+'.join(tried['feature_groups']['groups'])}")
        if cross_source and oof is not None:
            report.extra["cross_source_f1"] = source_f1(y, oof, groups, cut)
        if "sbert" in c.feature_groups:
            report.extra["sbert_messages_kept"] = len(self.featurizer.embeddings)
        self.fit_report = report
        return report

    def _line_probabilities(self, batch: LineBatch) -> np.ndarray:
        assert self.featurizer is not None and self.model is not None
        x, _ = self.featurizer.line_matrix(batch)
        return self.model.proba(x) if x.shape[0] else np.zeros(0)

    def score_with_lines(self, windows: pd.DataFrame | pa.Table) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        if self.level == "window":
            raise NotImplementedError(f"this {self.name} model was trained on window labels: it scores windows, "
                                      "not lines")
        frame = as_windows_frame(windows)
        batch = flatten_lines(frame)
        lines = self._line_probabilities(batch)[batch.unique] if batch.num_lines else np.zeros(0)
        return window_max(batch, lines), lines.astype(np.float64)

    def score(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        self._check_fitted()
        frame = as_windows_frame(windows)
        if self.level == "line":
            return self.score_with_lines(frame)[0]
        assert self.featurizer is not None and self.model is not None
        if not len(frame):
            return np.zeros(0)
        x, _ = self.featurizer.window_matrix(frame, flatten_lines(frame))
        return self.model.proba(x).astype(np.float64)

    def score_lines(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        return self.score_with_lines(windows)[1]

    def top_features(self, x: sp.csr_matrix) -> list[list[FeatureEvidence]]:
        """Per row of ``x``, the features that pushed its margin most, with their values and
        SHAP values (strongest first, ``top_features`` of them)."""
        assert self.model is not None
        if not x.shape[0]:
            return []
        contrib, _ = self.model.contributions(x)
        k = self.config.top_features
        dense_vals = x.tocsr()
        out = []
        for i in range(x.shape[0]):
            row = contrib[i]
            idx = np.argsort(-np.abs(row), kind="stable")[:k]
            vals = dense_vals[i, idx].toarray().ravel() if len(idx) else []
            out.append([FeatureEvidence(name=self.feature_names[j] if j < len(self.feature_names) else f"f{j}",
                                        value=float(v), shap=float(row[j])) for j, v in zip(idx, vals, strict=True)
                        if row[j] != 0])
        return out

    def explain(self, windows: pd.DataFrame | pa.Table) -> list[WindowExplanation]:
        self._check_fitted()
        assert self.featurizer is not None and self.model is not None
        frame = as_windows_frame(windows)
        batch = flatten_lines(frame)
        ids = [str(v) for v in frame["window_id"]] if "window_id" in frame else [""] * len(frame)
        out: list[WindowExplanation] = []
        if self.level == "window":
            if not len(frame):
                return []
            x, _ = self.featurizer.window_matrix(frame, batch)
            scores = self.model.proba(x)
            feats = self.top_features(x)
            for w in range(len(frame)):
                out.append(WindowExplanation(window_id=ids[w], score=float(scores[w]), lines=[], features=feats[w]))
            return out
        ux, _ = self.featurizer.line_matrix(batch)
        up = self.model.proba(ux) if ux.shape[0] else np.zeros(0)
        lines = up[batch.unique] if batch.num_lines else np.zeros(0)
        scores = window_max(batch, lines)
        starts = np.concatenate(([0], np.cumsum(batch.counts)[:-1])).astype(np.int64)
        # explain each window's strongest line: one SHAP call for the whole batch, over the
        # distinct lines only (sliding windows share their strongest line with their neighbours)
        best = [int(starts[w] + np.argmax(lines[starts[w]: starts[w] + n])) if n else -1
                for w, n in enumerate(batch.counts)]
        rows = np.asarray([batch.unique[b] for b in best if b >= 0], dtype=np.int64)
        distinct, which = np.unique(rows, return_inverse=True)
        top = self.top_features(ux[distinct]) if len(distinct) else []
        feats = iter([list(top[i]) for i in which])
        k = self.config.top_features
        for w, n in enumerate(batch.counts):
            s = lines[starts[w]: starts[w] + n]
            text = list(frame["lines"].iloc[w]) if "lines" in frame else [""] * n
            ev_ids = list(frame["event_ids"].iloc[w])
            order = np.argsort(-s, kind="stable")[:k]
            ev = [LineEvidence(index=int(i), line=text[i] if i < len(text) else "", event_id=int(ev_ids[i]),
                               probability=float(s[i])) for i in order]
            out.append(WindowExplanation(window_id=ids[w], score=float(scores[w]), lines=ev,
                                         features=next(feats) if n else []))
        return out

    def save(self, path: str | Path) -> None:
        self._check_fitted()
        assert self.featurizer is not None and self.model is not None
        out = write_artifact_header(path, self.name, self.config)
        (out / "features.json").write_text(json.dumps(self.featurizer.to_json()) + "\n")
        self.featurizer.save_embeddings(out)
        self.model.save(out)
        write_fitted_state(out, self, level=self.level, model=self.config.model, feature_names=self.feature_names,
                           sampler=self.sampler_used)

    @classmethod
    def load(cls, path: str | Path) -> Classical:
        root = Path(path)
        header = read_artifact_header(root, cls.name)
        det = cls(header["config"])
        state = read_fitted_state(root, det, levels=("line", "window"))
        det.featurizer = Featurizer.from_json(det._feature_config(), read_state(root / "features.json"),
                                              det._sbert_device())
        det.featurizer.load_embeddings(root)
        det.model = load_model(det.config.model, det._params(), root)
        det.level = state["level"]
        det.line_level = det.level == "line"
        det.feature_names = list(state.get("feature_names") or [])
        det.sampler_used = str(state.get("sampler", ""))
        return det


def _metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """Best-F1 and AUPR of scores ``s`` against labels ``y`` (for the fit history)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    if not (0 < y.sum() < len(y)):
        return {"samples": float(len(y))}
    p, r, _ = precision_recall_curve(y, s)
    f1 = 2 * p * r / np.maximum(p + r, 1e-12)
    return {"f1": float(f1[:-1].max()), "aupr": float(average_precision_score(y, s)), "samples": float(len(y))}
