"""PCA on event-count vectors (Xu et al., SOSP 2009): the residual-subspace detector.

Count vectors (optionally TF-IDF weighted) are centred and projected on the
principal components that explain ``variance`` of the training variance; the
score is the squared prediction error (SPE), the energy left in the residual
subspace. A window whose template mix normal operation cannot explain, or that
holds unknown templates (their column is all zero in training, so it lies
wholly in the residual), scores high. Threshold: the ``threshold_quantile``
quantile of normal validation SPEs (label-free).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from logad.methods._count_base import CountVectorDetector
from logad.methods.base import register_method

__all__ = ["PCADetector", "PCAConfig"]


class PCAConfig(BaseModel):
    """Settings of :class:`PCADetector`."""

    model_config = ConfigDict(extra="forbid")

    variance: float = Field(0.95, gt=0.0, lt=1.0, description="share of training variance the normal subspace keeps")
    term_weighting: Literal["tf-idf", "none"] = Field("tf-idf", description="weight counts by inverse document frequency")
    threshold_quantile: float = Field(0.99, gt=0.0, le=1.0, description="threshold = this quantile of normal validation scores")


@register_method
class PCADetector(CountVectorDetector):
    """Squared prediction error in the residual subspace of training count vectors."""

    name = "pca"
    supervised = False
    config_class = PCAConfig

    def _weight(self, x: np.ndarray) -> np.ndarray:
        return x * self._idf if self.config.term_weighting == "tf-idf" else x

    def _fit_vectors(self, x: np.ndarray) -> dict[str, Any]:
        n = len(x)
        df = (x > 0).sum(axis=0)
        self._idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        y = self._weight(x)
        self._mean = y.mean(axis=0)
        _, s, vt = np.linalg.svd(y - self._mean, full_matrices=False)
        energy = s**2
        share = np.cumsum(energy) / energy.sum() if energy.sum() > 0 else np.ones_like(energy)
        k = int(np.searchsorted(share, self.config.variance) + 1) if len(share) else 0
        self._components = vt[:k]
        return {"components": k, "dimensions": int(x.shape[1])}

    def _residual(self, x: np.ndarray) -> np.ndarray:
        y = self._weight(x) - self._mean
        return y - (y @ self._components.T) @ self._components

    def _score_vectors(self, x: np.ndarray) -> np.ndarray:
        r = self._residual(x)
        return np.einsum("ij,ij->i", r, r)

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        return self._residual(x) ** 2

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"idf": self._idf, "mean": self._mean, "components": self._components}

    def _from_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        self._idf, self._mean, self._components = tensors["idf"], tensors["mean"], tensors["components"]
