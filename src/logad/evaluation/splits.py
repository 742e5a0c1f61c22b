"""Named split protocols: windows table → (train, val, test) without leaks.

Every protocol is a function ``(windows, *, supervised, seed, **params) -> Split``
registered by name. Unsupervised methods get normal-only train and validation
parts (anomalies found there are dropped and counted, never moved); windows
with an unknown label stay in training (real logs are unlabelled) but are
dropped from validation and test, where they cannot be scored honestly.

* ``chronological`` (default): windows sorted by start; the first
  ``train_fraction`` of them (by count) sets the cut time. A window that starts
  before the cut but ends at or after it straddles the cut and is dropped, so
  no window overlaps both train and test. Validation is the last
  ``val_fraction`` of the training part, in time order.
* ``fastlogad`` (the paper's, after LogBERT): the first ``num_train`` normal
  windows in time order (an int, or a fraction of the normal windows if < 1)
  train, ``val_fraction`` of them is held out for validation, and the
  remaining normal windows plus every anomaly are the test set. Validation is
  the *last* ``val_fraction`` in time by default (``val_order="time"``): a
  random holdout from the training period is mostly exact duplicates of
  training windows, so it underestimates how later normal windows score and
  a quantile threshold taken on it is too tight; ``val_order="random"`` takes
  a seeded random holdout instead.
* ``random-session``: a seeded shuffle of sessions into train/val/test by
  fraction, for independent sessions (HDFS blocks) only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from logad.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "DEFAULT_PROTOCOL",
    "Split",
    "available_protocols",
    "get_protocol",
    "register_protocol",
    "split_windows",
]

DEFAULT_PROTOCOL = "chronological"


@dataclass
class Split:
    """Train, validation and test windows, with counts saying how they were made."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    description: dict[str, Any] = field(default_factory=dict)


Protocol = Callable[..., Split]
_PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(name: str) -> Callable[[Protocol], Protocol]:
    """Decorator: register a split function under ``name``."""

    def deco(fn: Protocol) -> Protocol:
        _PROTOCOLS[name] = fn
        return fn

    return deco


def available_protocols() -> list[str]:
    return sorted(_PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    """The split function registered as ``name``; unknown names list the known ones."""
    try:
        return _PROTOCOLS[name]
    except KeyError:
        raise UnknownNameError("split protocol", name, list(_PROTOCOLS)) from None


def split_windows(
    windows: pd.DataFrame,
    protocol: str = DEFAULT_PROTOCOL,
    *,
    supervised: bool = False,
    seed: int = 0,
    **params: Any,
) -> Split:
    """Split a windows table with a named protocol.

    Args:
        windows: the windows table (``read_windows`` output).
        protocol: a registered protocol name.
        supervised: keep anomalies in train/val (for supervised methods).
        seed: seed of the protocol's random choices (if any).
        **params: protocol parameters (``train_fraction``, ``num_train``, ...).

    Raises:
        UnknownNameError: unknown protocol.
        ConfigError: a parameter is unknown or out of range.
        DataError: the table is empty or lacks what the protocol needs.
    """
    fn = get_protocol(protocol)
    if len(windows) == 0:
        raise DataError("cannot split an empty windows table")
    try:
        split = fn(windows, supervised=supervised, seed=seed, **params)
    except TypeError as exc:
        raise ConfigError(f"bad parameter for split protocol {protocol!r}: {exc}") from None
    split.description = {"protocol": protocol, "seed": seed, "supervised": supervised,
                         **split.description, **_counts(split)}
    return split


# -- helpers -----------------------------------------------------------------------------------


def _labels(df: pd.DataFrame) -> pd.Series:
    if "label" not in df:
        return pd.Series(pd.NA, index=df.index, dtype="Int8")
    return df["label"].astype("Int8")


def _counts(split: Split) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in ("train", "val", "test"):
        labels = _labels(getattr(split, part))
        out[f"num_{part}"] = int(len(labels))
        out[f"num_{part}_anomalous"] = int((labels == 1).sum())
        out[f"num_{part}_unlabelled"] = int(labels.isna().sum())
    return out


def _fraction(name: str, value: float, *, low_open: bool = True) -> float:
    ok = (0.0 < value < 1.0) if low_open else (0.0 <= value < 1.0)
    if not ok:
        raise ConfigError(f"split parameter {name} must be in {'(0' if low_open else '[0'}, 1); got {value}")
    return float(value)


def _time_order(windows: pd.DataFrame) -> pd.DataFrame:
    """Stable sort by start (then window_id); windows without times keep table order."""
    if "start" not in windows or windows["start"].isna().all():
        return windows.reset_index(drop=True)
    if windows["start"].isna().any():
        raise DataError(
            f"{int(windows['start'].isna().sum())} windows have no start time; a time-ordered "
            "split needs times on every window (or on none, to keep table order)")
    keys = ["start", "window_id"] if "window_id" in windows else ["start"]
    return windows.sort_values(keys, kind="stable").reset_index(drop=True)


def _normal_only(df: pd.DataFrame, supervised: bool) -> tuple[pd.DataFrame, int]:
    if supervised:
        return df, 0
    anomalous = (_labels(df) == 1).to_numpy(dtype=bool, na_value=False)
    return df[~anomalous].reset_index(drop=True), int(anomalous.sum())


def _labelled(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    unknown = _labels(df).isna().to_numpy()
    return df[~unknown].reset_index(drop=True), int(unknown.sum())


# -- protocols ---------------------------------------------------------------------------------


@register_protocol("chronological")
def chronological(
    windows: pd.DataFrame,
    *,
    supervised: bool = False,
    seed: int = 0,
    train_fraction: float = 0.6,
    val_fraction: float = 0.1,
) -> Split:
    """Train on the start of the timeline, test on the rest; straddling windows are dropped."""
    _fraction("train_fraction", train_fraction)
    _fraction("val_fraction", val_fraction)
    df = _time_order(windows)
    n_cut = int(round(train_fraction * len(df)))
    if n_cut == 0 or n_cut >= len(df):
        raise DataError(f"train_fraction={train_fraction} of {len(df)} windows leaves no train or test part")
    has_times = "start" in df and not df["start"].isna().all()
    if has_times:
        cut = df["start"].iloc[n_cut]
        end = df["end"] if "end" in df else df["start"]
        before = (df["start"] < cut).to_numpy()
        straddle = before & (end.fillna(df["start"]) >= cut).to_numpy()
        train_part = df[before & ~straddle]
        test = df[~before]
        description: dict[str, Any] = {"cut_time": str(cut)}
    else:
        straddle = np.zeros(len(df), dtype=bool)
        train_part, test = df.iloc[:n_cut], df.iloc[n_cut:]
        description = {"cut_index": n_cut}
    train_part, dropped_anomalies = _normal_only(train_part.reset_index(drop=True), supervised)
    n_val = max(1, int(round(val_fraction * len(train_part))))
    if len(train_part) <= n_val:
        raise DataError(f"only {len(train_part)} usable training windows before the cut; lower val_fraction or raise train_fraction")
    train, val = train_part.iloc[:-n_val], train_part.iloc[-n_val:]
    val, val_unlabelled = _labelled(val) if supervised else (val, 0)
    test, test_unlabelled = _labelled(test.reset_index(drop=True))
    description |= {
        "train_fraction": train_fraction, "val_fraction": val_fraction,
        "num_dropped_straddling": int(straddle.sum()),
        "num_dropped_train_anomalies": dropped_anomalies,
        "num_dropped_unlabelled_test": test_unlabelled + val_unlabelled,
    }
    return Split(train.reset_index(drop=True), val.reset_index(drop=True), test, description)


@register_protocol("fastlogad")
def fastlogad(
    windows: pd.DataFrame,
    *,
    supervised: bool = False,
    seed: int = 0,
    num_train: float = 4855,
    val_fraction: float = 0.1,
    val_order: str = "time",
) -> Split:
    """The paper's protocol: first ``num_train`` normals train (10% validate), the rest test."""
    _fraction("val_fraction", val_fraction)
    if val_order not in ("time", "random"):
        raise ConfigError(f"split parameter val_order must be 'time' or 'random'; got {val_order!r}")
    df = _time_order(windows)
    labels = _labels(df)
    if labels.isna().all():
        raise DataError("the fastlogad protocol needs labelled windows (label 0/1); this table has none")
    normal_idx = np.nonzero((labels == 0).to_numpy(dtype=bool, na_value=False))[0]
    if num_train <= 0:
        raise ConfigError(f"split parameter num_train must be > 0; got {num_train}")
    n = int(round(num_train * len(normal_idx))) if num_train < 1 else int(num_train)
    if n >= len(normal_idx):
        raise DataError(
            f"num_train={num_train} needs more than the {len(normal_idx)} normal windows available "
            "to leave normal windows for testing; lower num_train")
    train_idx = normal_idx[:n]
    n_val = max(1, int(round(val_fraction * n)))
    val_pick = np.zeros(n, dtype=bool)
    if val_order == "time":
        val_pick[n - n_val :] = True
    else:
        val_pick[np.random.default_rng(seed).choice(n, size=n_val, replace=False)] = True
    in_train = np.zeros(len(df), dtype=bool)
    in_train[train_idx] = True
    test_mask = ~in_train & labels.notna().to_numpy()
    description = {"num_train_param": num_train, "val_fraction": val_fraction, "val_order": val_order,
                   "num_dropped_unlabelled_test": int((~in_train & labels.isna().to_numpy()).sum())}
    return Split(
        df.iloc[train_idx[~val_pick]].reset_index(drop=True),
        df.iloc[train_idx[val_pick]].reset_index(drop=True),
        df[test_mask].reset_index(drop=True),
        description,
    )


@register_protocol("random-session")
def random_session(
    windows: pd.DataFrame,
    *,
    supervised: bool = False,
    seed: int = 0,
    train_fraction: float = 0.6,
    val_fraction: float = 0.1,
) -> Split:
    """Seeded random split of independent sessions (train/val/test by fraction)."""
    _fraction("train_fraction", train_fraction)
    _fraction("val_fraction", val_fraction)
    if train_fraction + val_fraction >= 1:
        raise ConfigError("train_fraction + val_fraction must be < 1 to leave a test part")
    df = windows.reset_index(drop=True)
    perm = np.random.default_rng(seed).permutation(len(df))
    n_train = int(round(train_fraction * len(df)))
    n_val = int(round(val_fraction * len(df)))
    if n_train == 0 or n_val == 0 or n_train + n_val >= len(df):
        raise DataError(f"{len(df)} windows are too few for fractions {train_fraction}/{val_fraction}")
    train, dropped_train = _normal_only(df.iloc[perm[:n_train]].reset_index(drop=True), supervised)
    val, dropped_val = _normal_only(df.iloc[perm[n_train : n_train + n_val]].reset_index(drop=True), supervised)
    test, test_unlabelled = _labelled(df.iloc[perm[n_train + n_val :]].reset_index(drop=True))
    return Split(train, val, test, {
        "train_fraction": train_fraction, "val_fraction": val_fraction,
        "num_dropped_train_anomalies": dropped_train + dropped_val,
        "num_dropped_unlabelled_test": test_unlabelled,
    })
