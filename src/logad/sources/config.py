"""Log source configuration: one ``data_pipelines/<source>.yaml`` per source.

A source config says how to read one kind of log: how a line's header splits
into fields, where the time and the label are, how Drain3 masks variables, and
how lines are grouped into windows. A new log format is one new YAML file.

Example (HDFS)::

    name: hdfs
    format:
      log_format: "<Date> <Time> <Pid> <Level> <Component>: <Content>"
    timestamp: {fields: [Date, Time], format: "%y%m%d %H%M%S"}
    labels: {kind: file, id_column: BlockId, label_column: Label, anomaly_values: [Anomaly]}
    parsing:
      masking:
        - {pattern: 'blk_-?\\d+', mask_with: BLK}
    grouping: {kind: session, id_regex: 'blk_-?\\d+'}
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from logad.errors import ConfigError

__all__ = [
    "FixedGrouping",
    "FormatConfig",
    "GroupingConfig",
    "LabelConfig",
    "MaskingRule",
    "ParsingConfig",
    "SessionGrouping",
    "SlidingGrouping",
    "SourceConfig",
    "TimestampConfig",
    "load_source_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FormatConfig(_Strict):
    """How a line's header splits into named fields; one of the two forms."""

    log_format: str | None = Field(
        None,
        description="Loghub-style format, e.g. '<Date> <Time> <Level> <Component>: <Content>'. "
        "Text between fields is a regular expression; a space matches any run of spaces.",
    )
    regex: str | None = Field(
        None, description="A full regular expression with named groups, one of them 'Content'."
    )
    content_field: str = Field("Content", description="The field that holds the message.")

    @model_validator(mode="after")
    def _one_form(self) -> FormatConfig:
        if (self.log_format is None) == (self.regex is None):
            raise ValueError("give exactly one of format.log_format or format.regex")
        pattern = self.header_regex()
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"the header pattern does not compile: {exc}") from exc
        if self.log_format is not None:
            declared = re.findall(r"<([^<>]+)>", self.log_format)
            lost = [n for n in declared if n not in compiled.groupindex]
            if lost:
                raise ValueError(
                    f"fields {lost} of format.log_format do not survive as fields: text between "
                    "fields is a regular expression, so escape [ ] ( ) . * + ? | as \\[ \\] …"
                )
        if self.content_field not in compiled.groupindex:
            raise ValueError(
                f"the header pattern has no <{self.content_field}> field; "
                f"fields found: {sorted(compiled.groupindex)}"
            )
        return self

    def header_regex(self) -> str:
        """The anchored regular expression (named groups) for one line."""
        if self.regex is not None:
            return self.regex
        assert self.log_format is not None
        parts = re.split(r"(<[^<>]+>)", self.log_format)
        out: list[str] = []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                out.append(re.sub(r" +", r"\\s+", part))
            else:
                name = part[1:-1]
                if not name.isidentifier():
                    raise ValueError(f"field name {name!r} in format.log_format is not a name")
                out.append(f"(?P<{name}>.*)" if name == self.content_field else f"(?P<{name}>.*?)")
        return "^" + "".join(out) + "$"

    def field_names(self) -> list[str]:
        return list(re.compile(self.header_regex()).groupindex)


class TimestampConfig(_Strict):
    """Where a line's time is and how to read it."""

    fields: list[str] = Field(
        default_factory=list, description="Header fields joined with one space, in order."
    )
    format: str = Field(
        "%Y-%m-%d %H:%M:%S",
        description="strptime format of the joined fields, or 'epoch_s' / 'epoch_ms'.",
    )
    default_year: int | None = Field(
        None, description="Year for formats without one (syslog); none leaves 1900."
    )


class LabelConfig(_Strict):
    """Where labels come from: nowhere, a per-line field, a label file, or keyword lists."""

    kind: Literal["none", "field", "file", "keywords"] = Field("none", description="Label source.")
    field: str | None = Field(None, description="kind=field: the header field with the label.")
    normal_values: list[str] = Field(
        default_factory=lambda: ["-"],
        description="kind=field: values that mean normal; anything else is an anomaly.",
    )
    file: str | None = Field(
        None,
        description="kind=file: CSV of window id → label (relative to this YAML); "
        "`logad ingest --labels` overrides it.",
    )
    id_column: str = Field("BlockId", description="kind=file: the column with the window id.")
    label_column: str = Field("Label", description="kind=file: the column with the label.")
    anomaly_values: list[str] = Field(
        default_factory=lambda: ["Anomaly", "1"],
        description="kind=file: label values that mean anomalous; anything else is normal.",
    )

    wordlists: str | None = Field(
        None,
        description="kind=keywords: a folder of TYPE.txt term lists, one term per line (relative "
        "to this YAML); default: the CoLog lists bundled with logad (auth, daemon, debug, dmesg, "
        "kern, messages, syslog).",
    )
    terms: dict[str, list[str]] = Field(
        default_factory=dict,
        description="kind=keywords: more terms per file type, added to the lists' (a type only "
        "named here is labelled by these terms alone).",
    )
    file_type_regex: str = Field(
        r"^[A-Za-z]+",
        description="kind=keywords: the file type is the first match of this regex in the file's "
        "name, lower-cased (auth.log.1 → auth, dmesg.0 → dmesg).",
    )

    @model_validator(mode="after")
    def _needs(self) -> LabelConfig:
        if self.kind == "field" and not self.field:
            raise ValueError("labels.kind=field needs labels.field (the header field)")
        if self.kind != "keywords" and (self.wordlists or self.terms):
            raise ValueError("labels.wordlists and labels.terms belong to labels.kind=keywords")
        try:
            re.compile(self.file_type_regex)
        except re.error as exc:
            raise ValueError(f"labels.file_type_regex does not compile: {exc}") from exc
        return self


class MaskingRule(_Strict):
    """One Drain3 masking instruction: replace ``pattern`` with ``<mask_with>``."""

    pattern: str = Field(..., description="Regular expression of the variable part.")
    mask_with: str = Field(..., description="Mask name; the text becomes '<NAME>'.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"masking pattern {v!r} does not compile: {exc}") from exc
        return v


class ParsingConfig(_Strict):
    """Drain3 settings: masking rules and the parse tree's shape."""

    masking: list[MaskingRule] = Field(default_factory=list, description="Applied in order.")
    sim_th: float = Field(0.4, gt=0, le=1, description="Drain similarity threshold.")
    depth: int = Field(4, ge=3, description="Drain parse-tree depth.")
    max_children: int = Field(100, ge=2, description="Drain max children per tree node.")
    extra_delimiters: list[str] = Field(
        default_factory=list, description="Split tokens on these too, besides whitespace."
    )
    parametrize_numeric_tokens: bool = Field(
        True, description="Treat tokens with digits as parameters in the parse tree."
    )


class SessionGrouping(_Strict):
    """A window is every line that names the same id (e.g. an HDFS block)."""

    kind: Literal["session"] = "session"
    id_regex: str = Field(..., description="Regex whose first match in a line is its session id.")
    id_field: str = Field(
        "line",
        description="Where to look for the id: 'line' (the raw line), 'path' (the input "
        "file's path, e.g. one log folder per application) or a header field.",
    )

    @field_validator("id_regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"grouping.id_regex does not compile: {exc}") from exc
        return v


class SlidingGrouping(_Strict):
    """Time windows of ``window_size_s`` starting every ``step_s`` (aligned to the epoch)."""

    kind: Literal["sliding"] = "sliding"
    window_size_s: float = Field(300.0, gt=0, description="Window length in seconds (1 ms at least).")
    step_s: float = Field(60.0, gt=0, description="Seconds between window starts (1 ms at least).")

    @model_validator(mode="after")
    def _step(self) -> SlidingGrouping:
        if self.step_s > self.window_size_s or self.step_s < 0.001:
            raise ValueError(
                f"grouping.step_s must be in [0.001, window_size_s={self.window_size_s:g}]; "
                f"got {self.step_s:g}"
            )
        if self.window_size_s / self.step_s > _MAX_WINDOWS_PER_LINE:
            raise ValueError(
                f"grouping.window_size_s / step_s must be at most {_MAX_WINDOWS_PER_LINE:,} (each line is "
                f"copied into that many windows); got {self.window_size_s:g} / {self.step_s:g}"
            )
        return self


_MAX_WINDOWS_PER_LINE = 10_000


class FixedGrouping(_Strict):
    """Windows of ``window_lines`` consecutive lines of one file, every ``step_lines``."""

    kind: Literal["fixed"] = "fixed"
    window_lines: int = Field(20, gt=0, description="Lines per window.")
    step_lines: int | None = Field(None, gt=0, description="Lines between starts (default: no overlap).")

    @model_validator(mode="after")
    def _step(self) -> FixedGrouping:
        if self.step_lines is not None and self.step_lines > self.window_lines:
            raise ValueError(
                f"grouping.step_lines must be in (0, window_lines={self.window_lines}]; "
                f"got {self.step_lines}"
            )
        return self

    @property
    def step(self) -> int:
        return self.step_lines or self.window_lines


GroupingConfig = Annotated[
    SessionGrouping | SlidingGrouping | FixedGrouping, Field(discriminator="kind")
]


class SourceConfig(_Strict):
    """Everything logad needs to turn one source's raw logs into windows."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Source name.")
    description: str = Field("", description="Free text for people.")
    format: FormatConfig
    encoding: str = Field("utf-8", description="Text encoding; bad bytes are replaced and counted.")
    max_line_bytes: int = Field(
        1 << 20, ge=64, le=256 << 20,
        description="Longest line read, in bytes (without its line break); a longer line is "
        "skipped and counted with its file and line number. Memory per reader stays bounded "
        "by it, whatever the input.",
    )
    timestamp: TimestampConfig = Field(default_factory=TimestampConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    parsing: ParsingConfig = Field(default_factory=ParsingConfig)
    grouping: GroupingConfig
    base_dir: str | None = Field(
        None, description="Set by the loader: the YAML's folder, for relative label paths."
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r} (e.g. utf-8, latin-1, cp1252)") from None
        return v

    @model_validator(mode="after")
    def _fields_exist(self) -> SourceConfig:
        names = set(self.format.field_names())
        for f in self.timestamp.fields:
            if f not in names:
                raise ValueError(f"timestamp.fields names {f!r}, not a header field {sorted(names)}")
        if self.labels.kind == "field" and self.labels.field not in names:
            raise ValueError(
                f"labels.field {self.labels.field!r} is not a header field {sorted(names)}"
            )
        g = self.grouping
        if isinstance(g, SessionGrouping) and g.id_field not in ("line", "path") and g.id_field not in names:
            raise ValueError(f"grouping.id_field {g.id_field!r} is not a header field")
        if isinstance(g, SlidingGrouping) and not self.timestamp.fields:
            raise ValueError("grouping.kind=sliding needs timestamp.fields")
        return self

    def wordlist_dir(self) -> str | None:
        """The keyword lists' folder, resolved against the YAML's folder (None: the bundled lists)."""
        f = self.labels.wordlists
        if f is None or "://" in f or Path(f).is_absolute() or self.base_dir is None:
            return f
        return str(Path(self.base_dir) / f)

    def label_file(self) -> str | None:
        """The label file's path, resolved against the YAML's folder."""
        f = self.labels.file
        if f is None or "://" in f or Path(f).is_absolute() or self.base_dir is None:
            return f
        return str(Path(self.base_dir) / f)


def load_source_config(path: str | Path) -> SourceConfig:
    """Read and validate ``data_pipelines/<source>.yaml``.

    Raises:
        ConfigError: the file is missing, is not YAML, or a key is invalid
            (the message names the file and the key path).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no source config at {p}: see data_pipelines/ for examples")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p} must hold a mapping of keys (name, format, grouping, ...)")
    raw.setdefault("base_dir", str(p.resolve().parent))
    try:
        return SourceConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(p, exc)) from exc


def _describe(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return f"invalid source config {path}: " + "; ".join(lines)
