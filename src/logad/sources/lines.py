"""Split raw lines into header fields, time, label and message.

Everything here works on whole Arrow arrays: the header pattern, session ids
and masking run as RE2 kernels in pyarrow, with Python's ``re`` as a fallback
for patterns RE2 cannot compile (look-arounds, back-references). Headers of
whitespace-separated formats are split without a regex where that split is
provably the regex's own (see :meth:`LineSplitter._split_fast`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from logad.sources.config import SourceConfig

__all__ = ["LineSplitter", "SplitLines", "extract_first", "message_offsets", "regex_replace", "without_label"]


def _re2_ok(pattern: str) -> bool:
    """Whether Arrow's ``extract_regex`` takes ``pattern`` (RE2, and every group named)."""
    try:
        pc.extract_regex(pa.array([""]), f"(?P<g>{pattern})" if "(?P<" not in pattern else pattern)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _re2_compiles(pattern: str) -> bool:
    """Whether RE2 compiles ``pattern`` (enough for replacing; unnamed groups are fine)."""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def regex_replace(values: pa.Array, pattern: str, replacement: str, *, re2: bool | None = None) -> pa.Array:
    """Replace every match of ``pattern`` (RE2 when it compiles there, else ``re``)."""
    if re2 is None:
        re2 = _re2_compiles(pattern)
    if re2:
        return pc.replace_substring_regex(values, pattern, replacement.replace("\\", "\\\\"))
    rx = re.compile(pattern)
    return pa.array(
        [None if v is None else rx.sub(replacement.replace("\\", r"\\"), v) for v in values.to_pylist()],
        type=pa.string(),
    )


def extract_first(values: pa.Array, pattern: str, *, re2: bool | None = None) -> pa.Array:
    """The first match of ``pattern`` in each value (null where none)."""
    if re2 is None:
        re2 = _re2_ok(pattern)
    if re2:
        s = pc.extract_regex(values, f"(?P<m>{pattern})")
        return pc.if_else(s.is_valid(), pc.struct_field(s, [0]), pa.scalar(None, pa.string()))
    rx = re.compile(pattern)
    out = []
    for v in values.to_pylist():
        m = rx.search(v) if v is not None else None
        out.append(m.group(0) if m else None)
    return pa.array(out, type=pa.string())


def _whitespace_plan(config: SourceConfig) -> list[tuple[str, str]] | None:
    """(prefix, suffix) literals of each field, in order, when the header is fields
    separated by ``literal, whitespace, literal`` (``<Date> <Time> [<Pid>] <Component>:
    <Content>``) with the message last; None when it is not (then the regex splits)."""
    fmt = config.format
    parts = re.split(r"(<[^<>]+>)", fmt.log_format or "")
    literals, names = parts[0::2], [p[1:-1] for p in parts[1::2]]
    if not names or names[-1] != fmt.content_field or literals[-1] != "":
        return None
    first = _plain(literals[0])
    if first is None or re.search(r"\s", first):
        return None
    plan = [[first, ""]]
    for lit in literals[1:-1]:
        m = re.fullmatch(r"(\S*) +(\S*)", lit)
        suffix, prefix = (_plain(m.group(1)), _plain(m.group(2))) if m else (None, None)
        if suffix is None or prefix is None:
            return None
        plan[-1][1] = suffix
        plan.append([prefix, ""])
    return [(p, s) for p, s in plan]


def _plain(fragment: str) -> str | None:
    """The text a regex fragment stands for when it is plain text (``\\[`` is ``[``),
    else None (a character class, ``.``, a quantifier: not a fixed literal)."""
    out, i = [], 0
    while i < len(fragment):
        c = fragment[i]
        if c == "\\":
            if i + 1 >= len(fragment) or fragment[i + 1].isalnum():
                return None  # \d, \s, \1 …: a class or reference, not text
            out.append(fragment[i + 1])
            i += 2
            continue
        if c in ".^$*+?{}[]|()":
            return None
        out.append(c)
        i += 1
    return "".join(out)


def message_offsets(raw: pa.Array, content: pa.Array) -> pa.Array:
    """Where each line's message starts in its raw line, in characters (int32).

    The content field is the last field of every header format, so the message is
    the line's tail: its start is the length difference (0 where the header did
    not match and the message is the whole line).
    """
    diff = pc.subtract(pc.utf8_length(raw.cast(pa.string())), pc.utf8_length(content.cast(pa.string())))
    return pc.max_element_wise(diff, pa.scalar(0, diff.type)).cast(pa.int32())


def without_label(raw: pa.Array, split: SplitLines, config: SourceConfig) -> pa.Array:
    """The raw lines without their label field, where the labels are a header field (BGL's
    leading ``-`` or alert category, Liberty's ``0``/``1``).

    The label is the dataset's annotation, not something the logging system wrote: a model
    that reads whole lines (CLAD compresses them) would read the answer from it, and a live
    service never sees it. The field's text is cut out with the blanks after it; lines
    whose header did not match keep every character. The message stays the line's tail.
    """
    if config.labels.kind != "field" or not config.labels.field or not len(raw):
        return raw
    rx = re.compile(config.format.header_regex())
    name = config.labels.field
    out: list[str | None] = []
    for line, ok in zip(raw.to_pylist(), split.header_ok.tolist(), strict=True):
        m = rx.match(line) if ok and line is not None else None
        if m is None or m.start(name) < 0:
            out.append(line)
            continue
        a, b = m.span(name)
        out.append(line[:a] + line[b:].lstrip(" \t"))
    return pa.array(out, pa.string())


@dataclass
class SplitLines:
    """The result of splitting a batch of raw lines."""

    fields: dict[str, pa.Array]      # header fields ("" where the header did not match)
    content: pa.Array                # the message; the whole line where the header did not match
    header_ok: np.ndarray            # bool per line
    ts: pa.Array                     # timestamp[us], null where missing or unreadable
    line_label: pa.Array             # int8: 1 anomaly, 0 normal, null unknown
    num_bad_time: int                # lines whose header matched but whose time did not parse


class LineSplitter:
    """Split raw lines of one source (built once per worker, called per batch)."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.pattern = config.format.header_regex()
        self.names = config.format.field_names()
        self._re2 = _re2_ok(self.pattern)
        self._rx = re.compile(self.pattern)
        self._arrow_time: bool | None = None  # unknown until the first batch
        self._plan = _whitespace_plan(config) if config.format.log_format is not None else None
        self._regex_lines = 0  # lines of the last batch the fast split left to the regex

    def split(self, raw: pa.Array) -> SplitLines:
        raw = raw.cast(pa.string())
        n = len(raw)
        if self._plan is not None and self._re2:
            fields, ok = self._split_fast(raw)
            if n and self._regex_lines > n // 4:
                self._plan = None  # fields with spaces in them are the rule here: the regex only
        elif self._re2:
            fields, ok = self._split_re2(raw)
        else:
            cols: dict[str, list[str | None]] = {k: [None] * n for k in self.names}
            ok = np.zeros(n, dtype=bool)
            for i, line in enumerate(raw.to_pylist()):
                m = self._rx.match(line) if line is not None else None
                if m:
                    ok[i] = True
                    for k, v in m.groupdict().items():
                        cols[k][i] = v
            fields = {k: pa.array(v, type=pa.string()) for k, v in cols.items()}
        cf = self.config.format.content_field
        content = pc.if_else(pa.array(ok), fields[cf], raw)
        ts, bad_time = self._timestamps(fields, ok, n)
        return SplitLines(fields, content, ok, ts, self._labels(fields, ok, n), bad_time)

    def _split_re2(self, raw: pa.Array) -> tuple[dict[str, pa.Array], np.ndarray]:
        s = pc.extract_regex(raw, self.pattern)
        ok = s.is_valid().to_numpy(zero_copy_only=False)
        # where the header did not match, the fields are null (callers mask with header_ok)
        return {name: pc.struct_field(s, [i]) for i, name in enumerate(self.names)}, ok

    def _split_fast(self, raw: pa.Array) -> tuple[dict[str, pa.Array], np.ndarray]:
        """Whitespace-separated headers without a regex: the same fields, 2-3.5x faster.

        The header pattern's fields are lazy (``.*?``) and its separators are a
        literal, a whitespace run and a literal. Where splitting the line at its
        first whitespace runs gives tokens that carry those literals, that split is
        the one the regex finds too (a shorter field would need whitespace inside a
        token), so those lines skip the regex. The rest (a field with whitespace in
        it, a missing literal, a vertical tab: Arrow splits on it, ``\\s`` does not;
        a line break inside a line sent as one: ``.`` does not cross it) go through
        the regex.
        """
        plan = self._plan
        assert plan is not None
        k = len(plan) - 1
        parts = pc.ascii_split_whitespace(raw, max_splits=k)
        odd = pc.or_(pc.match_substring(raw, "\x0b"), pc.match_substring(raw, "\n"))
        good = pc.fill_null(pc.and_(pc.equal(pc.list_value_length(parts), k + 1), pc.invert(odd)),
                            False).to_numpy(zero_copy_only=False)
        idx = np.flatnonzero(good)
        sub = parts.take(pa.array(idx))
        tokens = [pc.list_element(sub, i) for i in range(k + 1)]
        keep = np.ones(len(idx), dtype=bool)
        for tok, (prefix, suffix) in zip(tokens, plan, strict=True):
            if prefix or suffix:
                check = pc.and_(pc.and_(pc.starts_with(tok, pattern=prefix), pc.ends_with(tok, pattern=suffix)),
                                pc.greater_equal(pc.binary_length(tok), len(prefix.encode()) + len(suffix.encode())))
                keep &= check.to_numpy(zero_copy_only=False)
        if not keep.all():  # a literal is missing: those lines go to the regex
            good[idx[~keep]] = False
            tokens = [t.filter(pa.array(keep)) for t in tokens]
        values = [pc.utf8_slice_codeunits(t, len(p), -len(x) if x else np.iinfo(np.int64).max) if (p or x) else t
                  for t, (p, x) in zip(tokens, plan, strict=True)]
        return self._merge(raw, good, values)

    def _merge(self, raw: pa.Array, good: np.ndarray,
               values: list[pa.Array]) -> tuple[dict[str, pa.Array], np.ndarray]:
        """Fast-split values for the ``good`` lines, the regex's for the others."""
        good = np.asarray(good, dtype=bool)
        self._regex_lines = int((~good).sum())
        if good.all():
            return dict(zip(self.names, values, strict=True)), good
        rest = np.flatnonzero(~good)
        slow, slow_ok = self._split_re2(raw.take(pa.array(rest)))
        order = np.argsort(np.concatenate((np.flatnonzero(good), rest)), kind="stable")
        take = pa.array(order)
        fields = {name: pa.concat_arrays([v, slow[name].cast(pa.string())]).take(take)
                  for name, v in zip(self.names, values, strict=True)}
        ok = np.concatenate((np.ones(int(good.sum()), dtype=bool), slow_ok))[order]
        return fields, ok

    def _timestamps(self, fields: dict[str, pa.Array], ok: np.ndarray, n: int) -> tuple[pa.Array, int]:
        tcfg = self.config.timestamp
        if not tcfg.fields:
            return pa.nulls(n, pa.timestamp("us")), 0
        parts = [fields[f] for f in tcfg.fields]
        joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, " ")
        if tcfg.format in ("epoch_s", "epoch_ms"):
            num = pd.to_numeric(pd.Series(joined.to_pandas(), dtype=object), errors="coerce")
            t = pd.to_datetime(num, unit="s" if tcfg.format == "epoch_s" else "ms", errors="coerce")
            out = pa.array(t.astype("datetime64[us]"), type=pa.timestamp("us"), from_pandas=True)
        else:
            out = self._strptime(joined, ok)
        if tcfg.default_year is not None and "%Y" not in tcfg.format and "%y" not in tcfg.format:
            t = pd.Series(out.to_pandas()) + pd.DateOffset(years=tcfg.default_year - 1900)
            out = pa.array(t.astype("datetime64[us]"), type=pa.timestamp("us"), from_pandas=True)
        # a line whose time fields are all empty has no time (a dmesg line among syslog ones,
        # an optional header): null, but not a bad timestamp
        present = np.zeros(n, dtype=bool)
        for f in parts:
            present |= pc.fill_null(pc.greater(pc.utf8_length(f), 0), False).to_numpy(zero_copy_only=False)
        bad = int((~out.is_valid().to_numpy(zero_copy_only=False) & ok & present).sum())
        return out, bad

    def _strptime(self, joined: pa.Array, ok: np.ndarray) -> pa.Array:
        """Arrow's C++ strptime where it can read the format; pandas for the rest."""
        fmt = self.config.timestamp.format
        if self._arrow_time is not False:
            try:
                out = pc.strptime(joined, format=fmt, unit="us", error_is_null=True)
                missed = ~out.is_valid().to_numpy(zero_copy_only=False) & ok
                if not missed.any():
                    self._arrow_time = True
                    return out
                if self._arrow_time is None and missed.sum() == ok.sum():
                    self._arrow_time = False  # arrow cannot read this format at all
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                self._arrow_time = False
        t = pd.to_datetime(pd.Series(joined.to_pandas(), dtype=object), format=fmt, errors="coerce")
        return pa.array(t.astype("datetime64[us]"), type=pa.timestamp("us"), from_pandas=True)

    def _labels(self, fields: dict[str, pa.Array], ok: np.ndarray, n: int) -> pa.Array:
        lcfg = self.config.labels
        if lcfg.kind != "field":
            return pa.nulls(n, pa.int8())
        values = fields[lcfg.field]  # type: ignore[index]
        normal = pc.is_in(values, pa.array(lcfg.normal_values, pa.string()))
        lab = pc.if_else(normal, pa.scalar(0, pa.int8()), pa.scalar(1, pa.int8()))
        return pc.if_else(pa.array(ok), lab, pa.scalar(None, pa.int8()))
