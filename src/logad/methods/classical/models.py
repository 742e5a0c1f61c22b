"""The model families of the classical pipeline, saved in portable formats.

* ``xgboost``: XGBoost's own JSON model file (``model.json``).
* ``lightgbm``: LightGBM's own text model file (``model.txt``).
* ``random-forest``: scikit-learn's forest, saved as the node arrays of its trees
  (``forest.safetensors``) and scored from them here.
* ``logistic-regression``: the weights, the scaling and the training means
  (``linear.safetensors``).

No pickle anywhere. Every family gives a probability of "anomalous" (the score), a
margin (the log-odds for the boosted and linear models, the probability for the
forest) and per-feature contributions that sum, with the expected value, to that
margin: SHAP values from ``shap.TreeExplainer`` for XGBoost and the forest, LightGBM's
own TreeSHAP (``pred_contrib``, the same algorithm, on sparse rows), and exact linear
attributions ``w * (x - mean)`` for the linear model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from logad.errors import ConfigError, DataError

__all__ = ["MODEL_FAMILIES", "Model", "load_model", "make_model"]

MODEL_FAMILIES = ("xgboost", "lightgbm", "random-forest", "logistic-regression")


def _dense(x: sp.csr_matrix | np.ndarray) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


class Model:
    """One fitted model family behind one small interface."""

    family: str

    def fit(self, x: sp.csr_matrix, y: np.ndarray, sample_weight: np.ndarray | None) -> None: ...

    def proba(self, x: sp.csr_matrix) -> np.ndarray: ...

    def margin(self, x: sp.csr_matrix) -> np.ndarray: ...

    def contributions(self, x: sp.csr_matrix) -> tuple[np.ndarray, float]:
        """Per row and feature, its contribution to the margin; and the expected value."""
        ...

    def save(self, out: Path) -> None: ...

    def estimator(self) -> Any:
        """The unfitted scikit-learn style estimator (for cross-validation pipelines)."""
        ...

    def adopt(self, fitted: Any) -> None:
        """Take over an estimator fitted by a pipeline."""
        ...


class XGBoostModel(Model):
    family = "xgboost"

    def __init__(self, params: dict[str, Any]) -> None:
        self.params, self.booster = params, None
        self._explainer = None

    def estimator(self) -> Any:
        import xgboost as xgb

        p = self.params
        return xgb.XGBClassifier(
            n_estimators=p["n_estimators"], max_depth=p["max_depth"], learning_rate=p["learning_rate"],
            subsample=p["subsample"], colsample_bytree=p["colsample"], min_child_weight=p["min_child_weight"],
            reg_lambda=p["reg_lambda"], scale_pos_weight=p.get("scale_pos_weight", 1.0), tree_method="hist",
            device=p["device"], n_jobs=p["n_jobs"], random_state=p["seed"], eval_metric="logloss",
            max_bin=p.get("max_bin", 256))

    def adopt(self, fitted: Any) -> None:
        self.booster = fitted.get_booster()
        self.booster.set_param({"device": "cpu"})  # score and explain on CPU wherever trained

    def fit(self, x: sp.csr_matrix, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        est = self.estimator()
        est.fit(x, y, sample_weight=sample_weight)
        self.adopt(est)

    def _dm(self, x: sp.csr_matrix) -> Any:
        import xgboost as xgb

        return xgb.DMatrix(x, missing=np.nan)

    def proba(self, x: sp.csr_matrix) -> np.ndarray:
        return self.booster.predict(self._dm(x)).astype(np.float64)

    def margin(self, x: sp.csr_matrix) -> np.ndarray:
        return self.booster.predict(self._dm(x), output_margin=True).astype(np.float64)

    def contributions(self, x: sp.csr_matrix) -> tuple[np.ndarray, float]:
        import shap

        if self._explainer is None:
            self._explainer = shap.TreeExplainer(self.booster)
        values = self._explainer.shap_values(x)
        return np.asarray(values, dtype=np.float64), float(np.ravel(self._explainer.expected_value)[0])

    def save(self, out: Path) -> None:
        self.booster.save_model(str(out / "model.json"))

    @classmethod
    def load(cls, params: dict[str, Any], root: Path) -> XGBoostModel:
        import xgboost as xgb

        m = cls(params)
        m.booster = xgb.Booster()
        m.booster.load_model(str(root / "model.json"))
        return m


class LightGBMModel(Model):
    family = "lightgbm"

    def __init__(self, params: dict[str, Any]) -> None:
        self.params, self.booster = params, None
        self._explainer = None

    def estimator(self) -> Any:
        import lightgbm as lgb

        p = self.params
        return lgb.LGBMClassifier(
            n_estimators=p["n_estimators"], max_depth=p["max_depth"], learning_rate=p["learning_rate"],
            subsample=p["subsample"], subsample_freq=1 if p["subsample"] < 1 else 0,
            colsample_bytree=p["colsample"], min_child_weight=p["min_child_weight"], reg_lambda=p["reg_lambda"],
            scale_pos_weight=p.get("scale_pos_weight", 1.0), num_leaves=max(2, min(2 ** p["max_depth"], 127)),
            n_jobs=p["n_jobs"], random_state=p["seed"], verbose=-1, deterministic=True, force_row_wise=True)

    def adopt(self, fitted: Any) -> None:
        self.booster = fitted.booster_

    def fit(self, x: sp.csr_matrix, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        est = self.estimator()
        est.fit(x, y, sample_weight=sample_weight)
        self.adopt(est)

    def proba(self, x: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self.booster.predict(x), dtype=np.float64)

    def margin(self, x: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self.booster.predict(x, raw_score=True), dtype=np.float64)

    def contributions(self, x: sp.csr_matrix) -> tuple[np.ndarray, float]:
        # LightGBM's own TreeSHAP (the algorithm shap.TreeExplainer runs), which takes
        # sparse rows as they are; the last column is the expected value
        out = self.booster.predict(x, pred_contrib=True)
        out = _dense(out[0] if isinstance(out, list) else out).astype(np.float64)
        return out[:, :-1], float(out[0, -1]) if len(out) else 0.0

    def save(self, out: Path) -> None:
        (out / "model.txt").write_text(self.booster.model_to_string())

    @classmethod
    def load(cls, params: dict[str, Any], root: Path) -> LightGBMModel:
        import lightgbm as lgb

        m = cls(params)
        m.booster = lgb.Booster(model_str=(root / "model.txt").read_text())
        return m


class ForestModel(Model):
    """A random forest kept as node arrays: scored and explained from them."""

    family = "random-forest"

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.arrays: dict[str, np.ndarray] = {}
        self._explainer = None

    def estimator(self) -> Any:
        from sklearn.ensemble import RandomForestClassifier

        p = self.params
        return RandomForestClassifier(
            n_estimators=p["n_estimators"], max_depth=p["max_depth"], min_samples_leaf=max(1, int(p["min_child_weight"])),
            max_features=p["colsample"] if p["colsample"] < 1 else "sqrt", class_weight="balanced",
            n_jobs=p["n_jobs"], random_state=p["seed"])

    def adopt(self, fitted: Any) -> None:
        left, right, feat, thr, val, weight, roots = [], [], [], [], [], [], []
        base = 0
        positive = int(np.flatnonzero(fitted.classes_ == 1)[0]) if 1 in fitted.classes_ else None
        for est in fitted.estimators_:
            t = est.tree_
            v = t.value[:, 0, :]
            v = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-12)
            p1 = v[:, positive] if positive is not None else np.zeros(t.node_count)
            leaf = t.children_left < 0
            left.append(np.where(leaf, -1, t.children_left + base))
            right.append(np.where(leaf, -1, t.children_right + base))
            feat.append(np.where(leaf, -1, t.feature))
            thr.append(t.threshold)
            val.append(p1)
            weight.append(t.weighted_n_node_samples)
            roots.append(base)
            base += t.node_count
        self.arrays = {
            "left": np.concatenate(left).astype(np.int64), "right": np.concatenate(right).astype(np.int64),
            "feature": np.concatenate(feat).astype(np.int64), "threshold": np.concatenate(thr).astype(np.float64),
            "value": np.concatenate(val).astype(np.float64), "weight": np.concatenate(weight).astype(np.float64),
            "roots": np.asarray(roots, dtype=np.int64),
        }
        self._explainer = None

    def fit(self, x: sp.csr_matrix, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        est = self.estimator()
        est.fit(x, y, sample_weight=sample_weight)
        self.adopt(est)

    def proba(self, x: sp.csr_matrix, chunk: int = 4096) -> np.ndarray:
        a = self.arrays
        roots = a["roots"]
        out = np.zeros(x.shape[0], dtype=np.float64)
        for s in range(0, x.shape[0], chunk):
            xd = _dense(x[s: s + chunk]).astype(np.float64)
            # missing values go left (as scikit-learn's trees do for NaN-free training)
            xd = np.nan_to_num(xd, nan=-np.inf)
            node = np.broadcast_to(roots, (len(xd), len(roots))).copy()
            rows = np.arange(len(xd))[:, None]
            while True:
                f = a["feature"][node]
                inner = f >= 0
                if not inner.any():
                    break
                go_left = xd[rows, np.maximum(f, 0)] <= a["threshold"][node]
                nxt = np.where(go_left, a["left"][node], a["right"][node])
                node = np.where(inner, nxt, node)
            out[s: s + chunk] = a["value"][node].mean(axis=1)
        return out

    def margin(self, x: sp.csr_matrix) -> np.ndarray:
        return self.proba(x)

    def contributions(self, x: sp.csr_matrix) -> tuple[np.ndarray, float]:
        import shap

        if self._explainer is None:
            a, trees = self.arrays, []
            roots = np.append(a["roots"], len(a["left"]))
            n = len(a["roots"])
            for i in range(n):
                lo, hi = roots[i], roots[i + 1]
                sl = slice(lo, hi)
                left = np.where(a["left"][sl] >= 0, a["left"][sl] - lo, -1)
                right = np.where(a["right"][sl] >= 0, a["right"][sl] - lo, -1)
                trees.append({"children_left": left, "children_right": right, "children_default": left,
                              "features": np.where(a["feature"][sl] >= 0, a["feature"][sl], -2),
                              "thresholds": a["threshold"][sl], "values": (a["value"][sl] / n)[:, None],
                              "node_sample_weight": a["weight"][sl]})
            self._explainer = shap.TreeExplainer({"trees": trees, "base_offset": 0.0})
        values = self._explainer.shap_values(_dense(x).astype(np.float64))
        return np.asarray(values, dtype=np.float64), float(np.ravel(self._explainer.expected_value)[0])

    def save(self, out: Path) -> None:
        save_file(self.arrays, str(out / "forest.safetensors"))

    @classmethod
    def load(cls, params: dict[str, Any], root: Path) -> ForestModel:
        m = cls(params)
        m.arrays = {k: np.asarray(v) for k, v in load_file(str(root / "forest.safetensors")).items()}
        return m


class LinearModel(Model):
    """Logistic regression on max-abs scaled features (sparse-friendly)."""

    family = "logistic-regression"

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.arrays: dict[str, np.ndarray] = {}

    def estimator(self) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import MaxAbsScaler

        return make_pipeline(MaxAbsScaler(), LogisticRegression(
            C=self.params["C"], class_weight="balanced", max_iter=2000, random_state=self.params["seed"]))

    @staticmethod
    def _clean(x: sp.csr_matrix) -> sp.csr_matrix:
        x = sp.csr_matrix(x, dtype=np.float64, copy=True)
        x.data = np.nan_to_num(x.data, nan=0.0, posinf=0.0, neginf=0.0)
        return x

    def adopt(self, fitted: Any) -> None:
        scaler, lr = fitted[0], fitted[-1]
        scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        self.arrays = {"coef": (lr.coef_[0] / scale).astype(np.float64),
                       "intercept": np.asarray([lr.intercept_[0]], dtype=np.float64),
                       "mean": np.zeros(len(scale))}

    def fit(self, x: sp.csr_matrix, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        x = self._clean(x)
        est = self.estimator()
        est.fit(x, y, logisticregression__sample_weight=sample_weight)
        self.adopt(est)
        self.arrays["mean"] = np.asarray(x.mean(axis=0)).ravel()

    def margin(self, x: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self._clean(x) @ self.arrays["coef"]).ravel() + self.arrays["intercept"][0]

    def proba(self, x: sp.csr_matrix) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.margin(x)))

    def contributions(self, x: sp.csr_matrix) -> tuple[np.ndarray, float]:
        coef, mean = self.arrays["coef"], self.arrays["mean"]
        values = (_dense(self._clean(x)) - mean) * coef
        return values, float(mean @ coef + self.arrays["intercept"][0])

    def save(self, out: Path) -> None:
        save_file(self.arrays, str(out / "linear.safetensors"))

    @classmethod
    def load(cls, params: dict[str, Any], root: Path) -> LinearModel:
        m = cls(params)
        m.arrays = {k: np.asarray(v) for k, v in load_file(str(root / "linear.safetensors")).items()}
        return m


_FAMILIES: dict[str, type[Model]] = {
    "xgboost": XGBoostModel, "lightgbm": LightGBMModel,
    "random-forest": ForestModel, "logistic-regression": LinearModel,
}


def make_model(family: str, params: dict[str, Any]) -> Model:
    if family not in _FAMILIES:
        raise ConfigError(f"unknown model {family!r}; known: {list(MODEL_FAMILIES)}")
    return _FAMILIES[family](params)


def load_model(family: str, params: dict[str, Any], root: Path) -> Model:
    if family not in _FAMILIES:
        raise DataError(f"{root} holds an unknown model family {family!r}")
    try:
        return _FAMILIES[family].load(params, root)  # type: ignore[attr-defined]
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the {family} model in {root}: {exc}") from exc
