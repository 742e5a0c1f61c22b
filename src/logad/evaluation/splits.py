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
  ``val_fraction`` of the training part, in time order. A table where only some
  windows have a start time (a syslog folder whose dmesg files carry no
  wall-clock time next to syslog files that do) is split in two groups: the
  windows with times by time as above, the windows without by their table
  order (``read_windows`` orders them by file, then line), each at the same
  ``train_fraction``; validation is the last ``val_fraction`` of each group's
  training part. The description counts the windows without times
  (``num_windows_without_time``, ``num_train_without_time``,
  ``num_test_without_time``). Untimed windows cannot be placed on the timeline,
  so nothing orders them against the timed ones: the two cuts are independent.
* ``fastlogad`` (the paper's, after LogBERT): the first ``num_train`` normal
  windows in time order (an int, or a fraction of the normal windows if < 1)
  train, ``val_fraction`` of them is held out for validation, and the
  remaining normal windows plus every anomaly are the test set. Validation is
  the *last* ``val_fraction`` in time by default (``val_order="time"``): a
  random holdout from the training period is mostly exact duplicates of
  training windows, so it underestimates how later normal windows score and
  a quantile threshold taken on it is too tight; ``val_order="random"`` takes
  a seeded random holdout instead.
  Its time order needs times on every window or on none: a table with partly
  missing times is refused (use ``chronological``, which splits such tables).
* ``random-session``: a seeded shuffle of sessions into train/val/test by
  fraction, for independent sessions (HDFS blocks) only.
* ``random-lines`` (the CoLog authors'): labelled lines at random, stratified by
  label, 60/20/20; every part keeps every window with only its own lines'
  labels, so a line keeps its true context, which crosses the cut. Leaky: for
  standing beside the authors' figures, never a headline.
* ``leave-one-source-out``: one whole source (``holdout``) is the test part; its
  windows never train or validate, so the figures say how a model does on logs
  of a kind it has never seen. A window's source is its ``source`` column when
  the table holds more than one source, else its ``input`` column (one
  ``logad ingest`` run over several input folders); ``by="source"`` or
  ``by="input"`` forces one. Sources are shown by a short, unique name (the
  input's last path component when that is unique, else as many trailing
  components as make it unique); ``holdout`` takes that name or the full value.
  Validation is the last ``val_fraction`` of each training source's windows in
  time order (windows without times in table order, as ``chronological``
  does), normal-only for unsupervised methods. Windows whose source is unknown
  (a null ``input``) are dropped and counted. :func:`protocol_sources` lists the
  folds; ``logad compare`` runs them all when no ``holdout`` is given.
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
    "protocol_sources",
    "register_protocol",
    "split_windows",
]

DEFAULT_PROTOCOL = "chronological"
LOSO = "leave-one-source-out"
"""Name of the leave-one-source-out protocol."""


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
            f"{int(windows['start'].isna().sum())} windows have no start time; this time-ordered "
            "split needs times on every window (or on none, to keep table order); the chronological "
            "protocol splits tables with partly missing times")
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


def _timed(df: pd.DataFrame) -> np.ndarray:
    """Which windows have a start time."""
    if "start" not in df:
        return np.zeros(len(df), dtype=bool)
    return df["start"].notna().to_numpy()


def _time_groups(df: pd.DataFrame) -> list[pd.DataFrame]:
    """Windows with a start time (in time order), then those without (in table order);
    empty groups left out."""
    has = _timed(df)
    groups = [_time_order(df[has]), df[~has].reset_index(drop=True)]
    return [g for g in groups if len(g)]


def _take_last(groups: list[pd.DataFrame], fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ordered groups into (head, tail): the last ``fraction`` of each group is the tail.

    At least one window goes to the tail (from the largest group) when any group has two
    or more; a group keeps at least one window in its head.
    """
    sizes = [len(g) for g in groups]
    n_tail = [min(int(round(fraction * n)), max(n - 1, 0)) for n in sizes]
    if sum(n_tail) == 0 and sizes and max(sizes) >= 2:
        n_tail[int(np.argmax(sizes))] = 1
    heads = [g.iloc[: len(g) - k] for g, k in zip(groups, n_tail, strict=True)]
    tails = [g.iloc[len(g) - k :] for g, k in zip(groups, n_tail, strict=True)]
    return _concat(heads, groups), _concat(tails, groups)


def _concat(parts: list[pd.DataFrame], like: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return like[0].iloc[:0].reset_index(drop=True) if like else pd.DataFrame()
    return pd.concat(parts).reset_index(drop=True)


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
    """Train on the start of the timeline, test on the rest; straddling windows are dropped.

    Windows without a start time, next to windows with one, are cut by table order at
    the same ``train_fraction`` (see the module docstring).
    """
    _fraction("train_fraction", train_fraction)
    _fraction("val_fraction", val_fraction)
    df = windows.reset_index(drop=True)
    has = _timed(df)
    timed, untimed = _time_order(df[has]), df[~has].reset_index(drop=True)
    description: dict[str, Any] = {}
    train_parts: list[pd.DataFrame] = []
    tests: list[pd.DataFrame] = []
    num_straddling = 0
    if len(timed):
        n_cut = int(round(train_fraction * len(timed)))
        if not len(untimed) and (n_cut == 0 or n_cut >= len(timed)):
            raise DataError(f"train_fraction={train_fraction} of {len(df)} windows leaves no train or test part")
        if n_cut >= len(timed):  # a handful of timed windows beside many untimed ones: all train
            train_parts.append(timed)
            tests.append(timed.iloc[:0])
        else:
            cut = timed["start"].iloc[n_cut]
            end = timed["end"].fillna(timed["start"]) if "end" in timed else timed["start"]
            before = (timed["start"] < cut).to_numpy()
            straddle = before & (end >= cut).to_numpy()
            num_straddling = int(straddle.sum())
            train_parts.append(timed[before & ~straddle].reset_index(drop=True))
            tests.append(timed[~before].reset_index(drop=True))
            description["cut_time"] = str(cut)
    if len(untimed):
        n_cut = int(round(train_fraction * len(untimed)))
        if not len(timed) and (n_cut == 0 or n_cut >= len(untimed)):
            raise DataError(f"train_fraction={train_fraction} of {len(df)} windows leaves no train or test part")
        train_parts.append(untimed.iloc[:n_cut].reset_index(drop=True))
        tests.append(untimed.iloc[n_cut:].reset_index(drop=True))
        if len(timed):
            description |= {"num_windows_without_time": len(untimed), "num_train_without_time": n_cut,
                            "num_test_without_time": len(untimed) - n_cut}
        else:
            description["cut_index"] = n_cut
    if not sum(len(t) for t in tests) or not sum(len(t) for t in train_parts):
        raise DataError(f"train_fraction={train_fraction} of {len(df)} windows leaves no train or test part")
    dropped_anomalies = 0
    kept: list[pd.DataFrame] = []
    for part in train_parts:
        part, dropped = _normal_only(part, supervised)
        dropped_anomalies += dropped
        kept.append(part)
    train, val = _take_last([k for k in kept if len(k)] or kept, val_fraction)
    if not len(train) or not len(val):
        raise DataError(f"only {sum(len(k) for k in kept)} usable training windows before the cut; "
                        "lower val_fraction or raise train_fraction")
    val, val_unlabelled = _labelled(val) if supervised else (val, 0)
    test, test_unlabelled = _labelled(_concat(tests, tests))
    description |= {
        "train_fraction": train_fraction, "val_fraction": val_fraction,
        "num_dropped_straddling": num_straddling,
        "num_dropped_train_anomalies": dropped_anomalies,
        "num_dropped_unlabelled_test": test_unlabelled + val_unlabelled,
    }
    return Split(train, val, test, description)


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


@register_protocol("random-lines")
def random_lines(
    windows: pd.DataFrame,
    *,
    supervised: bool = False,
    seed: int = 0,
    train_fraction: float = 0.6,
    val_fraction: float = 0.2,
) -> Split:
    """The CoLog authors' protocol: labelled lines at random, stratified by label, into
    train/val/test (60/20/20; they drew with seed 100).

    Every part holds every window, with only its own lines' labels (the others null), so
    a line is judged with its true neighbours wherever they fell: a test line's context
    holds training lines. Leaky by construction, as the authors' figures are; reported
    beside the chronological split, never as a headline. A window's label in a part is
    the max of that part's line labels in it (null where it has none). Lines are keyed
    by file and line number where the table has them, so a line in two windows goes to
    one part.
    """
    _fraction("train_fraction", train_fraction)
    _fraction("val_fraction", val_fraction)
    if train_fraction + val_fraction >= 1:
        raise ConfigError("train_fraction + val_fraction must be < 1 to leave a test part")
    if "line_labels" not in windows:
        raise DataError("the random-lines protocol splits labelled lines; this table has no line_labels "
                        "(ingest a source whose config labels lines)")
    df = windows.reset_index(drop=True)
    counts = np.fromiter((len(x) for x in df["event_ids"]), np.int64, len(df))
    win = np.repeat(np.arange(len(df)), counts)
    pos = np.arange(int(counts.sum())) - np.repeat(np.concatenate(([0], np.cumsum(counts)[:-1])), counts)

    from logad.evaluation.lines import _flat

    labels = pd.to_numeric(pd.Series(_flat(df, "line_labels", counts, None), dtype=object),
                           errors="coerce").to_numpy(np.float64)
    files, numbers = _flat(df, "line_files", counts, None), _flat(df, "line_numbers", counts, None)
    keys = pd.Series([(f, n) if f is not None and n is not None else ("\x00", w, p)
                      for f, n, w, p in zip(files, numbers, win.tolist(), pos.tolist(), strict=True)], dtype=object)
    codes, uniques = pd.factorize(keys)
    key_label = np.full(len(uniques), np.nan)
    known = ~np.isnan(labels)
    key_label[codes[known]] = labels[known]
    part = np.full(len(uniques), -1, dtype=np.int64)  # 0 train, 1 val, 2 test, -1 unlabelled
    rng = np.random.default_rng(seed)
    for value in (0.0, 1.0):  # stratified: each class cut at the same fractions
        members = rng.permutation(np.flatnonzero(key_label == value))
        a = int(round(train_fraction * len(members)))
        b = a + int(round(val_fraction * len(members)))
        part[members[:a]], part[members[a:b]], part[members[b:]] = 0, 1, 2
    line_part = part[codes]
    bounds = np.concatenate(([0], np.cumsum(counts)))

    def view(k: int) -> pd.DataFrame:
        mine = np.where(line_part == k, labels, np.nan)
        out = df.copy()
        out["line_labels"] = [[None if np.isnan(v) else int(v) for v in mine[a:b]]
                              for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        window_label = [np.nanmax(mine[a:b]) if b > a and not np.isnan(mine[a:b]).all() else np.nan
                        for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        out["label"] = pd.array([None if np.isnan(v) else int(v) for v in window_label], dtype="Int8")
        return out

    train, dropped_train = _normal_only(view(0), supervised)
    val, dropped_val = _normal_only(view(1), supervised)
    test, test_unlabelled = _labelled(view(2))
    return Split(train, val, test, {
        "train_fraction": train_fraction, "val_fraction": val_fraction,
        "num_train_lines": int((part == 0).sum()), "num_val_lines": int((part == 1).sum()),
        "num_test_lines": int((part == 2).sum()),
        "leaky": "a test line is judged with its neighbours, which are mostly training lines",
        "num_dropped_train_anomalies": dropped_train + dropped_val,
        "num_dropped_unlabelled_test": test_unlabelled,
    })


# -- leave one source out ----------------------------------------------------------------------

_BY = ("auto", "source", "input")


def _distinct(df: pd.DataFrame, column: str) -> list[str]:
    if column not in df:
        return []
    return sorted({str(v) for v in df[column].dropna()})


def _display_names(values: list[str]) -> dict[str, str]:
    """Full value → short unique name: the last path component when that is unique, else
    the fewest trailing components that are, else the value itself."""
    parts = {v: [p for p in v.replace("\\", "/").split("/") if p] or [v] for v in values}
    for k in range(1, max((len(p) for p in parts.values()), default=1) + 1):
        names = {v: "/".join(p[-k:]) for v, p in parts.items()}
        if len(set(names.values())) == len(names):
            return names
    return {v: v for v in values}


def _source_keys(windows: pd.DataFrame, by: str = "auto") -> tuple[str, pd.Series, dict[str, str]]:
    """(the column that names sources, each window's full source value or NA, full → display name).

    Raises:
        ConfigError: ``by`` is not auto, source or input.
        DataError: the table holds fewer than two sources by that column.
    """
    if by not in _BY:
        raise ConfigError(f"split parameter by must be one of {', '.join(_BY)}; got {by!r}")
    if by == "auto":
        sources, inputs = _distinct(windows, "source"), _distinct(windows, "input")
        if len(sources) < 2 and len(inputs) < 2:
            raise DataError(
                f"leave-one-source-out needs windows of two or more sources; this table has one source "
                f"({', '.join(sources) or 'none named'}) and {len(inputs) or 'no'} input"
                f"{'' if len(inputs) == 1 else 's'}{' (' + inputs[0] + ')' if len(inputs) == 1 else ''}: "
                "ingest several INPUT folders in one run (`logad ingest CONFIG DIR1 DIR2 ...`) or "
                "concatenate the windows tables of several sources")
        column = "source" if len(sources) >= 2 else "input"
    else:
        column = by
        values = _distinct(windows, column)
        if len(values) < 2:
            raise DataError(
                f"leave-one-source-out by {column} needs two or more distinct {column} values; this table "
                f"has {len(values)}{' (' + values[0] + ')' if values else ''}")
    keys = windows[column].astype("string").reset_index(drop=True)
    return column, keys, _display_names(_distinct(windows, column))


def protocol_sources(windows: pd.DataFrame, by: str = "auto") -> list[str]:
    """The folds of ``leave-one-source-out``: the display name of every source, sorted.

    Raises:
        ConfigError: bad ``by``.
        DataError: fewer than two sources.
    """
    _, _, names = _source_keys(windows, by)
    return sorted(names.values())


def _resolve_holdout(holdout: Any, names: dict[str, str]) -> str:
    """The full source value that ``holdout`` (a display name or a full value) names."""
    h = str(holdout)
    by_name = {d: v for v, d in names.items()}
    if h in by_name:
        return by_name[h]
    if h in names:
        return h
    stripped = [v for v in names if v.rstrip("/\\") == h.rstrip("/\\")]
    if len(stripped) == 1:
        return stripped[0]
    raise ConfigError(f"unknown holdout {h!r}; sources: {', '.join(sorted(names.values()))}")


@register_protocol(LOSO)
def leave_one_source_out(
    windows: pd.DataFrame,
    *,
    supervised: bool = False,
    seed: int = 0,
    holdout: Any = None,
    val_fraction: float = 0.1,
    by: str = "auto",
) -> Split:
    """Test on one whole source; train and validate on the others (the last ``val_fraction``
    of each training source's windows validates)."""
    _fraction("val_fraction", val_fraction)
    column, keys, names = _source_keys(windows, by)
    if holdout is None:
        raise ConfigError(
            f"the {LOSO} protocol needs the source to hold out: holdout=NAME (--split-param holdout=NAME), "
            f"one of: {', '.join(sorted(names.values()))} (`logad compare` runs every fold when none is given)")
    value = _resolve_holdout(holdout, names)
    df = windows.reset_index(drop=True)
    known = keys.notna().to_numpy()
    is_test = (keys == value).fillna(False).to_numpy(dtype=bool)
    others = sorted((v for v in names if v != value), key=lambda v: names[v])
    trains: list[pd.DataFrame] = []
    vals: list[pd.DataFrame] = []
    dropped_anomalies = 0
    per_source: dict[str, dict[str, int]] = {}
    for v in others:
        part, dropped = _normal_only(df[(keys == v).fillna(False).to_numpy(dtype=bool)], supervised)
        dropped_anomalies += dropped
        head, tail = _take_last(_time_groups(part), val_fraction) if len(part) else (part, part)
        trains.append(head)
        vals.append(tail)
        per_source[names[v]] = {"num_train": len(head), "num_val": len(tail)}
    train, val = _concat(trains, [df.iloc[:0]]), _concat(vals, [df.iloc[:0]])
    if not len(train) or not len(val):
        raise DataError(
            f"the sources other than {names[value]!r} leave {len(train)} training and {len(val)} validation "
            "windows; both parts need windows (lower val_fraction, or add windows to the training sources)")
    val, val_unlabelled = _labelled(val) if supervised else (val, 0)
    test, test_unlabelled = _labelled(df[is_test].reset_index(drop=True))
    return Split(train, val, test, {
        "holdout": names[value], "holdout_value": value, "by": column,
        "train_sources": [names[v] for v in others], "num_sources": len(names),
        "val_fraction": val_fraction, "num_holdout_windows": int(is_test.sum()),
        "per_train_source": per_source,
        "num_dropped_unknown_source": int((~known).sum()),
        "num_dropped_train_anomalies": dropped_anomalies,
        "num_dropped_unlabelled_test": test_unlabelled + val_unlabelled,
    })
