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
    "DETECT_REQUEST_BODY", "DICTIONARY_HEADERS", "FRAMES_ERRORS", "FRAMES_REQUEST_BODY", "SOURCE_NAME_PATTERN",
    "DetectResponse", "DictionaryResponse", "ErrorBody", "FramesResponse", "Health", "SourcesResponse",
    "error_responses",
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


class FramesModelInfo(_Strict):
    id: str = Field(description="SOURCE@METHOD/vN")
    method: str
    version: int
    threshold: float | None = Field(description="The served threshold: the registry's, else the model's own.")


class FramesSummary(_Strict):
    frames: int
    anomalous_frames: int
    bytes: int = Field(description="Compressed bytes of the frames scored.")


class FrameVerdict(_Strict):
    id: str = Field(description="The frame's id: from the JSON body or an id frame, else its 0-based position.")
    offset: int | None = Field(description="Byte offset of the frame in a binary body (null for JSON bodies).")
    bytes: int = Field(description="The frame's size, compressed (as sent).")
    score: float | None = Field(description="Higher is more anomalous (null if not finite).")
    threshold: float | None
    verdict: Literal["anomalous", "normal"]


class FramesTiming(_Strict):
    read: float
    check: float = Field(description="From the start until the frames were found and checked (includes read).")
    model: float
    total: float


class FramesResponse(_Strict):
    source: str
    model: FramesModelInfo
    summary: FramesSummary
    frames: list[FrameVerdict]
    timing_ms: FramesTiming


class CodecInfo(BaseModel):
    """The model's codec.json: how its frames are made."""

    model_config = ConfigDict(extra="allow")

    codec: Literal["zstd", "deflate"]
    level: int
    max_frame_bytes: int
    dict_id: int = Field(description="The zstd dictionary id frames name in their header (0: a raw-content "
                         "dictionary, which frames cannot name).")
    dict_size_bytes: int
    dict_sha256: str


class DictionaryModel(_Strict):
    id: str = Field(description="SOURCE@METHOD/vN")
    method: str
    version: int


class DictionaryResponse(_Strict):
    source: str
    model: DictionaryModel
    codec: CodecInfo
    dictionary: str = Field(description="The dictionary's raw bytes, base64 (standard alphabet, padded).")


FRAMES_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "Compressed frames, scored as they are (never decompressed). Binary (zstd models): zstd "
    "frames one after the other, a valid .zst stream. JSON (both codecs): each frame base64-encoded, "
    "with an optional id. No Content-Encoding.",
    "content": {
        "application/zstd": {"schema": {"type": "string", "format": "binary",
                                        "description": "Concatenated zstd frames (RFC 8878)."}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                                "description": "The same as application/zstd."}},
        "application/json": {"schema": {
            "type": "object",
            "properties": {"frames": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "minLength": 1, "maxLength": 256},
                        "data": {"type": "string", "format": "byte",
                                 "description": "One frame, base64 (standard alphabet, padded)."},
                    },
                    "required": ["data"],
                    "additionalProperties": False,
                },
            }},
            "required": ["frames"],
            "additionalProperties": False,
        }},
    },
}

DICTIONARY_HEADERS: dict[str, Any] = {
    name: {"schema": {"type": kind}, "description": text} for name, kind, text in (
        ("X-Logad-Model", "string", "SOURCE@METHOD/vN of the serving model the dictionary belongs to."),
        ("X-Logad-Codec", "string", "zstd or deflate (zlib streams with the dictionary's last 32 KiB as "
         "preset dictionary)."),
        ("X-Logad-Codec-Level", "integer", "Compression level the model's frames were made with."),
        ("X-Logad-Dict-Id", "integer", "The zstd dictionary id frames must name."),
        ("X-Logad-Dict-Sha256", "string", "SHA-256 (hex) of the dictionary bytes."),
        ("X-Logad-Max-Frame-Bytes", "integer", "Largest frame the model reads, in bytes."),
    )
}

FRAMES_ERRORS = {
    400: "Not a sequence of frames: a truncated frame, a reserved block type, bytes between frames, data "
         "that is not a zstd frame (or zlib stream), bad base64, or invalid JSON; the reason names the "
         "frame (index, id, byte offset).",
    409: "The source's serving model reads text, not frames (a method other than clad).",
    413: "Body over max_body_bytes, more than max_frames frames, or a frame over the model's max_frame_bytes.",
    415: "Content-Type not application/zstd, application/octet-stream or application/json; any "
         "Content-Encoding (frames are not decompressed); the binary form for a deflate model.",
    422: "No frame, a frame compressed with another dictionary, JSON of another shape, or an unknown "
         "query parameter.",
}


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
    409: "The source's serving model does not read frames (a method other than clad).",
    422: "JSON not of the form {\"lines\": [strings]}, no non-blank line, or a bad query parameter.",
    503: "The source's model cannot be used (server side; other sources keep working), or the replica "
         "holds max_held_body_bytes of request bodies already (with Retry-After: retry).",
}


def error_responses(*statuses: int, why: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, each ``{"detail": reason}``;
    ``why`` overrides the description of some (another endpoint's reasons)."""
    out: dict[int | str, dict[str, Any]] = {}
    for s in statuses:
        entry: dict[str, Any] = {"model": ErrorBody, "description": (why or {}).get(s) or _WHY[s]}
        if s == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                     "description": 'Bearer realm="logad"'}}
        out[s] = entry
    return out
