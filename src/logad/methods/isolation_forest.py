"""IsolationForest on event-count vectors (Liu et al., 2008), saved without pickle.

scikit-learn fits the forest. Saving it as a pickle would make loading a model
a code-execution risk, so the fitted trees are exported as plain arrays
(children, split feature, split value, node sizes) to safetensors, and
scoring walks those arrays with numpy: the same path lengths and the same
``2 ** (-E[h(x)] / c(max_samples))`` as scikit-learn's ``score_samples``
(negated, so higher = more anomalous), independent of the scikit-learn version
that loads it. Threshold: the ``threshold_quantile`` quantile of normal
validation scores (label-free).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from logad.methods._count_base import CountVectorDetector
from logad.methods.base import register_method

__all__ = ["IsolationForestConfig", "IsolationForestDetector"]


class IsolationForestConfig(BaseModel):
    """Settings of :class:`IsolationForestDetector`."""

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(100, ge=1, description="trees in the forest")
    max_samples: int = Field(256, ge=2, description="training windows per tree (capped at the training size)")
    max_features: float = Field(1.0, gt=0.0, le=1.0, description="share of count columns each tree sees")
    threshold_quantile: float = Field(0.99, gt=0.0, le=1.0, description="threshold = this quantile of normal validation scores")
    seed: int = Field(0, description="random state of the forest")


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the mean path length of an unsuccessful BST search among n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    two = n == 2
    big = n > 2
    out[two] = 1.0
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


@register_method
class IsolationForestDetector(CountVectorDetector):
    """Short isolation paths (in a forest fitted on normal count vectors) mean anomalous."""

    name = "isolation-forest"
    supervised = False
    config_class = IsolationForestConfig

    def _fit_vectors(self, x: np.ndarray) -> dict[str, Any]:
        from sklearn.ensemble import IsolationForest

        c = self.config
        forest = IsolationForest(n_estimators=c.n_estimators, max_samples=min(c.max_samples, len(x)),
                                 max_features=c.max_features, random_state=c.seed).fit(x)
        left, right, feat, thr, size, offsets = [], [], [], [], [], [0]
        for est, cols in zip(forest.estimators_, forest.estimators_features_, strict=True):
            t = est.tree_
            base = offsets[-1]
            is_leaf = t.children_left < 0
            left.append(np.where(is_leaf, -1, t.children_left + base))
            right.append(np.where(is_leaf, -1, t.children_right + base))
            feat.append(np.where(is_leaf, -1, np.asarray(cols)[np.maximum(t.feature, 0)]))
            thr.append(t.threshold)
            size.append(t.n_node_samples)
            offsets.append(base + t.node_count)
        self._left = np.concatenate(left).astype(np.int64)
        self._right = np.concatenate(right).astype(np.int64)
        self._feature = np.concatenate(feat).astype(np.int64)
        self._split = np.concatenate(thr).astype(np.float64)
        self._size = np.concatenate(size).astype(np.int64)
        self._roots = np.asarray(offsets[:-1], dtype=np.int64)
        self._max_samples = np.asarray([forest.max_samples_], dtype=np.int64)
        self._check_against = forest  # kept in memory only, for the equivalence test
        return {"trees": len(self._roots), "nodes": int(len(self._left))}

    def _walk(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean path length per window, and per window and column the splits it met (1/depth weighted)."""
        xf = x.astype(np.float32)  # scikit-learn compares float32 features with float64 split values
        n = len(xf)
        depth_sum = np.zeros(n)
        contrib = np.zeros_like(x, dtype=np.float64)
        rows = np.arange(n)
        for root in self._roots:
            node = np.full(n, root, dtype=np.int64)
            depth = np.zeros(n)
            active = self._left[node] >= 0
            while active.any():
                i = rows[active]
                nd = node[i]
                f = self._feature[nd]
                np.add.at(contrib, (i, f), 1.0 / (depth[i] + 1.0))
                go_left = xf[i, f] <= self._split[nd]
                node[i] = np.where(go_left, self._left[nd], self._right[nd])
                depth[i] += 1
                active = self._left[node] >= 0
            depth_sum += depth + _average_path_length(self._size[node])
        return depth_sum / len(self._roots), contrib

    def _score_vectors(self, x: np.ndarray) -> np.ndarray:
        mean_depth, _ = self._walk(x)
        return 2.0 ** (-mean_depth / _average_path_length(self._max_samples)[0])

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        return self._walk(x)[1]

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"left": self._left, "right": self._right, "feature": self._feature, "split": self._split,
                "size": self._size, "roots": self._roots, "max_samples": self._max_samples}

    def _from_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        self._left, self._right, self._feature = tensors["left"], tensors["right"], tensors["feature"]
        self._split, self._size, self._roots = tensors["split"], tensors["size"], tensors["roots"]
        self._max_samples = tensors["max_samples"]
