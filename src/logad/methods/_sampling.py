"""Imbalance-aware sampling of training rows (imbalanced-learn), shared by the supervised methods.

:func:`choose_sampler` is the enterprise report's rule on the imbalance ratio
r = majority / minority: r < 3 none, 3 ≤ r < 10 SMOTE, 10 ≤ r ≤ 100
BorderlineSMOTE, r > 100 ADASYN. :func:`make_sampler` builds any of
:data:`SAMPLERS` (Tomek links is CoLog's). A sampler only ever sees a training
part: never validation or test rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from logad.errors import DataError

__all__ = ["SAMPLERS", "choose_sampler", "make_sampler"]

SAMPLERS = ("auto", "none", "smote", "borderline-smote", "adasyn", "random-over", "random-under", "tomek-links", "near-miss",
            "edited-nearest-neighbours", "one-sided-selection")


def choose_sampler(y: np.ndarray) -> tuple[str, float]:
    """The report's rule: the sampler for the imbalance ratio of labels ``y``, and that ratio."""
    pos = int((y == 1).sum())
    neg = len(y) - pos
    ratio = max(pos, neg) / max(min(pos, neg), 1)
    if ratio < 3:
        return "none", ratio
    if ratio < 10:
        return "smote", ratio
    if ratio <= 100:
        return "borderline-smote", ratio
    return "adasyn", ratio


def make_sampler(name: str, y: np.ndarray, ratio: float, seed: int) -> Any:
    """An imbalanced-learn sampler, or None; neighbour counts shrink to the minority's size."""
    if name == "none":
        return None
    minority = int(min((y == 1).sum(), (y == 0).sum()))
    majority = len(y) - minority
    if minority < 2:
        return None
    if name in ("smote", "borderline-smote", "adasyn", "random-over") and minority >= ratio * majority:
        return None  # already at least as balanced as asked
    k = max(1, min(5, minority - 1))
    from imblearn.over_sampling import ADASYN, SMOTE, BorderlineSMOTE, RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler, TomekLinks

    if name == "smote":
        return SMOTE(sampling_strategy=ratio, k_neighbors=k, random_state=seed)
    if name == "borderline-smote":
        return BorderlineSMOTE(sampling_strategy=ratio, k_neighbors=k, m_neighbors=max(k, min(10, minority - 1)),
                               random_state=seed)
    if name == "adasyn":
        return ADASYN(sampling_strategy=ratio, n_neighbors=k, random_state=seed)
    if name == "random-over":
        return RandomOverSampler(sampling_strategy=ratio, random_state=seed)
    if name == "random-under":
        return RandomUnderSampler(sampling_strategy=ratio, random_state=seed)
    if name == "tomek-links":
        return TomekLinks()
    if name == "near-miss":
        from imblearn.under_sampling import NearMiss

        return NearMiss(sampling_strategy=ratio, n_neighbors=k)
    if name == "edited-nearest-neighbours":
        from imblearn.under_sampling import EditedNearestNeighbours

        return EditedNearestNeighbours()
    if name == "one-sided-selection":
        from imblearn.under_sampling import OneSidedSelection

        return OneSidedSelection(random_state=seed)
    raise DataError(f"unknown sampler {name!r}")
