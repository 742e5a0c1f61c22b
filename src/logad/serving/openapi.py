"""What the HTTP API sends and takes, as pydantic models: the OpenAPI schema at /openapi.json.

The endpoints build their answers as plain dicts (no validation on the request
path); these models document them, and the test suite checks every answer the
live service gives against the schema they make (tests/integration/test_serving_hostile.py).
A field added to an answer must be added here too, or that check fails.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DETECT_REQUEST_BODY", "SOURCE_NAME_PATTERN", "DetectResponse", "ErrorBody", "Health",
    "SourcesResponse", "error_responses",
]

SOURCE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""A source name as the registry allows it (logad.registry.store.validate_name)."""

_NON_BLANK = r"\S"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Strict):
    """Every error the service itself answers (4xx, 503)."""

    detail: str = Field(description="Why, for people: what was wrong and what to do.")


class Health(_Strict):
    status: Literal["ok"]
    logad_version: str


class SourceInfo(_Strict):
    source: str
    method: str
    version: int
    model_id: str = Field(description="SOURCE@METHOD/vN")
    threshold: float | None
    created_at: str
    metrics: dict[str, Any]


class SourcesResponse(_Strict):
    registry: str
    sources: list[SourceInfo]


class ModelInfo(_Strict):
    id: str = Field(description="SOURCE@METHOD/vN")
    method: str
    version: int
    threshold: float | None = Field(description="The served threshold: the registry's, else the model's own.")
    line_level: bool = Field(description="Whether the model also scores every line.")
    line_threshold: float | None = Field(description="A line scoring above it is flagged; null for "
                                         "window-level models and when the request made no window.")


class Summary(BaseModel):
    """Line counts of the request (as ``logad ingest`` counts them) and what was flagged."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": {"type": "integer"}})

    lines: int
    empty_lines: int
    malformed_lines: int
    bad_timestamp_lines: int
    unknown_template_lines: int
    lines_without_window: int
    windows: int
    lines_with_replaced_bytes: int
    anomalous_windows: int
    anomalous_lines: int | None = Field(None, description="Distinct request lines flagged (line-level models only).")


class ContextLine(_Strict):
    offset: int = Field(description="Where the neighbour sits relative to the evidence line in its window "
                        "(-1: the line before; 0: the line itself).")
    line: str
    weight: float = Field(description="Attention weight of the neighbour; a line's weights sum to 1.")


class Evidence(_Strict):
    index: int = Field(description="Position of the line in its window.")
    line: str
    event_id: int
    probability: float
    context: list[ContextLine] | None = Field(None, description="Context-aware models (colog): the neighbouring "
                                              "lines the verdict attended to, strongest first.")


class AnomalousLine(_Strict):
    index: int | None = Field(description="0-based position of the line in the request as sent.")
    line: str
    score: float | None


class Feature(_Strict):
    name: str
    value: float | None
    shap: float | None = Field(description="Its SHAP value: how much it moved the score.")


class Window(_Strict):
    window_id: str
    start: str | None = Field(description="First line's time, ISO 8601 (null where unknown).")
    end: str | None
    num_lines: int
    score: float | None = Field(description="Higher is more anomalous (null if not finite).")
    threshold: float | None
    verdict: Literal["anomalous", "normal"]
    method: str
    model_version: int
    evidence: list[Evidence] | None = Field(None, description="Lines that drove the score, where explained.")
    anomalous_lines: list[AnomalousLine] | None = Field(None, description="Line-level models only.")
    line_threshold: float | None = Field(None, description="Line-level models only.")
    top_features: list[Feature] | None = Field(None, description="Feature-based models (classical), "
                                               "where explained: what drove the verdict.")


class Timing(_Strict):
    read: float
    parse: float
    score: float
    model: float
    total: float


class DetectResponse(_Strict):
    source: str
    model: ModelInfo
    summary: Summary
    windows: list[Window]
    timing_ms: Timing


DETECT_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "Raw log lines of the source, optionally compressed as a whole "
    "(`Content-Encoding: gzip` or `zstd`). At least one line must hold more than whitespace.",
    "content": {
        "application/json": {"schema": {
            "type": "object",
            "properties": {"lines": {
                "type": "array",
                "items": {"type": "string", "description": "one raw log line (line breaks split it)"},
                "contains": {"type": "string", "pattern": _NON_BLANK},
            }},
            "required": ["lines"],
            "additionalProperties": False,
        }},
        "text/plain": {"schema": {
            "type": "string", "pattern": _NON_BLANK,
            "description": "One raw log line per line (UTF-8; undecodable bytes are replaced and counted).",
        }},
    },
}

_WHY = {
    400: "Corrupt or truncated gzip/zstd body (with the byte offset), or invalid JSON.",
    401: "The service requires an API token: no `Authorization: Bearer …` header, or a wrong token.",
    404: "Unknown source (no serving model), or not a valid source name.",
    413: "Body, decompressed body, line count or one line over the service's limits.",
    415: "Content-Type not application/json or text/plain, or Content-Encoding not gzip, zstd or identity.",
    422: "JSON not of the form {\"lines\": [strings]}, no non-blank line, or a bad query parameter.",
    503: "The source's model cannot be used (server side; other sources keep working).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, each ``{"detail": reason}``."""
    out: dict[int | str, dict[str, Any]] = {}
    for s in statuses:
        entry: dict[str, Any] = {"model": ErrorBody, "description": _WHY[s]}
        if s == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                     "description": 'Bearer realm="logad"'}}
        out[s] = entry
    return out
