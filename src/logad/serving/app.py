"""The Ray Serve application: HTTP in, windows parsed, grouped and scored in the same replica.

One deployment, ``Ingress`` (FastAPI, autoscaled). Per request it reads and
checks the body (size, content type and coding, decompression limits), looks
up the source's serving model in the registry (cached for ``alias_ttl_s``, so
a promotion is picked up within that time without a restart), turns the
lines into windows with that model's frozen template store and grouping rule
(:class:`logad.windows.online.WindowBuilder`) and scores them. Detectors live
in a per-replica LRU (``@serve.multiplexed``) keyed by model id
``SOURCE@METHOD/vN``, so a new promotion is a new id and an old model ages
out by itself; requests for the same model that arrive together are scored as
one batch (``@serve.batch``). A line-level model (``Detector.line_level``)
also scores every line, and each window lists its lines over the model's
line threshold, by their position in the request.

A CLAD model also reads compressed frames as a log shipper sends them
(``POST /v1/sources/{source}/frames``): the frames are found and checked from
their headers alone (:mod:`logad.serving.frames`) and scored on their bytes,
with nothing decompressed or parsed; ``GET /v1/sources/{source}/dictionary``
gives the dictionary and codec settings a shipper compresses with.

Parsing and scoring share a replica on purpose: a second deployment for the
model costs a Serve hop per request (the windows serialised to another
process and the answer back), which measured as much as the model itself on
a 1,000-line request. Scale the one deployment instead.

``serve run serve/config.yaml`` and ``logad serve`` build it with
:func:`build_app`; serve/config.yaml holds the operational knobs (replicas,
CPUs, autoscaling, limits).
"""

# No `from __future__ import annotations`: FastAPI must resolve the endpoint signatures.
import asyncio
import gc
import math
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any, Literal

from logad.ray_env import prepare_ray_env

prepare_ray_env()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
from fastapi import Depends, FastAPI, Query, Request  # noqa: E402
from fastapi import Path as PathParam  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402
from ray import serve  # noqa: E402

from logad import __version__  # noqa: E402
from logad.serving.auth import BearerAuth, resolve_token_digest  # noqa: E402
from logad.serving.body import BodyError, BodyLimits, decode_body  # noqa: E402
from logad.serving.frames import FrameSpec, frame_body, frame_media_type  # noqa: E402
from logad.serving.openapi import (  # noqa: E402
    DETECT_REQUEST_BODY,
    DICTIONARY_HEADERS,
    FRAMES_ERRORS,
    FRAMES_REQUEST_BODY,
    SOURCE_NAME_PATTERN,
    DetectResponse,
    DictionaryResponse,
    FramesResponse,
    Health,
    SourcesResponse,
    error_responses,
)

__all__ = ["AppArgs", "Ingress", "build_app", "model_id", "parse_model_id"]

ExplainMode = Literal["anomalous", "all", "none"]
MAX_FILE_NAME = 255
"""Longest ``file`` a detect request may name (a file name, as most file systems allow); it
holds no control characters."""
DictionaryFormat = Literal["binary", "json"]


def model_id(source: str, method: str, version: int) -> str:
    """The multiplexed model id of one registry version: ``SOURCE@METHOD/vN``."""
    return f"{source}@{method}/v{version}"


def parse_model_id(mid: str) -> tuple[str, str, int]:
    """Inverse of :func:`model_id`.

    Raises:
        ValueError: not of the form ``SOURCE@METHOD/vN``.
    """
    source, sep, rest = mid.partition("@")
    method, sep2, ver = rest.partition("/v")
    if not (sep and sep2 and ver.isdigit()):
        raise ValueError(f"model id {mid!r} is not SOURCE@METHOD/vN")
    return source, method, int(ver)


class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (the ``args:`` of serve/config.yaml)."""

    model_config = ConfigDict(extra="forbid")

    registry: str | None = Field(
        None, description="Registry root (folder or URI every replica can read); default $LOGAD_REGISTRY.")
    alias_ttl_s: float = Field(1.0, ge=0, le=60, description="How long the ingress caches a source's "
                               "serving alias; a promotion is served at most this long after it.")
    max_body_bytes: int = Field(16 << 20, gt=0, description="Largest body as sent (413 above).")
    max_held_body_bytes: int = Field(256 << 20, gt=0, description="Most bytes of request bodies (as sent) "
                                     "one replica holds at once, from the first byte received to the response; "
                                     "a request that would pass it gets 503 with Retry-After, and the client "
                                     "retries (the cap that keeps 64 concurrent uploads from holding 1 GiB).")
    max_decompressed_bytes: int = Field(64 << 20, gt=0, description="Largest body after "
                                        "decompression (413 above; the decompression-bomb guard).")
    max_lines: int = Field(200_000, gt=0, description="Most lines in one request (413 above).")
    max_line_chars: int = Field(1 << 20, gt=0, description="Longest line, in characters (413 above); "
                                "the default is ingest's max_line_bytes, so no line ingest keeps is refused.")
    max_frames: int = Field(100_000, gt=0, description="Most compressed frames in one request to the frames "
                            "endpoint (413 above); each frame is also held to its model's max_frame_bytes.")
    api_token_file: str | None = Field(None, description="File holding the bearer token the /v1 API "
                                       "requires (every replica reads it at start); see logad.serving.auth.")
    api_token_sha256: str | None = Field(None, description="SHA-256 (hex) of that token, instead of the "
                                         "file: what `logad serve --token-file` passes.")
    max_batch_size: int = Field(8, ge=1, description="Requests for one model scored together per batch.")
    batch_wait_timeout_s: float = Field(0.0, ge=0, description="How long a batch waits to fill "
                                        "(0: take what queued while the previous batch ran).")
    torch_threads: int = Field(0, ge=0, description="Torch intra-op threads per replica "
                               "(0: Ray's default, one per whole CPU the replica reserves, at least 1).")


# --------------------------------------------------------------------------------------------
# Scoring


def _marks(request: dict[str, Any], scores: np.ndarray, fallback: float) -> np.ndarray:
    mode = request["explain"]
    if mode == "all":
        return np.ones(len(scores), dtype=bool)
    if mode == "anomalous":
        t = request.get("threshold")
        return scores > (fallback if t is None else t)
    return np.zeros(len(scores), dtype=bool)


def _load_frozen(path: str) -> Any:
    """Load a detector, then move what is alive (imported modules, loaded models) out of
    the garbage collector's sight: a full collection then walks only what requests
    allocate, instead of pausing a request for the hundreds of thousands of objects
    torch and transformers bring. Frozen objects are never collected, so the heap is
    thawed and collected first: a model the LRU evicted since the last load is freed."""
    from logad.methods import load_detector

    detector = load_detector(path)
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return detector


def _score_group(detector: Any, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score the windows of several requests for one detector in one call.

    A window-level detector: where any request wants evidence, one ``explain``
    over all the windows gives both the scores and the evidence (every
    detector's explanation carries the window's score), instead of scoring
    everything and then running the model again on the windows to explain.

    A line-level detector (``line_level``): one ``score_with_lines`` over all the
    windows gives the window scores and every line's score; the lines over the
    model's line threshold are kept per window as ``(position in the window,
    score)``, and only the windows that want evidence are explained.
    """
    from logad.methods import line_counts

    t0 = time.perf_counter()
    sizes = [len(r["event_ids"]) for r in requests]
    frame = pd.DataFrame({"event_ids": [e for r in requests for e in r["event_ids"]]})
    for name in requests[0].get("columns") or {}:  # the other columns a method scores from
        frame[name] = [v for r in requests for v in r["columns"][name]]
    own = float(detector.threshold)
    line_level = bool(getattr(detector, "line_level", False))
    wants = any(r["explain"] != "none" for r in requests)
    evidence: list = [None] * len(frame)
    features: list = [None] * len(frame)
    hits: list | None = None
    line_threshold: float | None = None
    found: list | None = None
    if line_level:
        window_scores, line_scores = detector.score_with_lines(frame)
        scores = np.asarray(window_scores, dtype=np.float64)
        line_scores = np.asarray(line_scores, dtype=np.float64)
        line_threshold = float(detector.line_threshold)
        starts = np.concatenate(([0], np.cumsum(line_counts(frame))))
        if len(line_scores) != starts[-1]:
            raise ValueError(f"{len(line_scores)} line scores for {int(starts[-1])} lines")
        hits = [[] for _ in range(len(frame))]
        flagged = np.flatnonzero(line_scores > line_threshold)
        for j, w in zip(flagged, np.searchsorted(starts, flagged, side="right") - 1, strict=True):
            hits[w].append((int(j - starts[w]), float(line_scores[j])))
    elif wants:
        found = detector.explain(frame)
        scores = np.fromiter((e.score for e in found), np.float64, len(found))
    else:
        scores = np.asarray(detector.score(frame), dtype=np.float64)
    bounds = np.cumsum([0, *sizes])
    if wants:
        marked = np.concatenate([np.flatnonzero(_marks(r, scores[a:b], own)) + a
                                 for r, a, b in zip(requests, bounds[:-1], bounds[1:], strict=True)])
        if found is None and len(marked):  # line-level: explain only the windows that want it
            explained = dict(zip(marked.tolist(), detector.explain(frame.iloc[marked]), strict=True))
        else:
            explained = {int(i): found[i] for i in marked} if found is not None else {}
        for i, e in explained.items():
            evidence[i] = [(ev.index, ev.event_id, ev.probability,
                            [(c.offset, c.line, c.weight) for c in ev.context]) for ev in e.lines]
            if e.features:
                features[i] = [(f.name, f.value, f.shap) for f in e.features]
    ms = round((time.perf_counter() - t0) * 1e3, 3)
    return [{"threshold": own, "scores": scores[a:b].tolist(), "evidence": evidence[a:b],
             "features": features[a:b], "compute_ms": ms,
             "line_level": line_level, "line_threshold": line_threshold,
             "line_hits": hits[a:b] if hits is not None else None}
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _scoring_columns(method: str, table: Any) -> dict[str, list]:
    """The windows columns besides ``event_ids`` that ``method`` scores from
    (``Detector.scoring_columns``), as lists for the scorer's payload."""
    from logad.methods import get_method

    try:
        names = tuple(getattr(get_method(method), "scoring_columns", ()))
    except Exception:  # noqa: BLE001 - an unknown method fails later, with its own message
        return {}
    out: dict[str, list] = {}
    for name in names:
        if name not in table.column_names:
            continue
        col = table.column(name)
        if name == "line_times":  # integer microseconds, as read_windows gives them
            col = col.cast(pa.list_(pa.int64()))
        out[name] = col.to_pylist()
    return out


def _method_reads_frames(method: str) -> bool:
    """Whether a registered method scores compressed frames (``score_frames``); True for a
    name no method has, so that loading the model gives the reason."""
    from logad.errors import LogadError
    from logad.methods import get_method

    try:
        return callable(getattr(get_method(method), "score_frames", None))
    except LogadError:
        return True


def _no_frames(mv: Any) -> BodyError:
    return BodyError(409, f"source {mv.source!r} is served by {model_id(mv.source, mv.method, mv.version)}: "
                          f"method {mv.method!r} reads log text, not compressed frames; post its lines to "
                          f"/v1/sources/{mv.source}/detect, or serve a clad model for this source")


def _method_line_level(method: str) -> bool:
    """Whether a registered method scores lines (False for a name no method has)."""
    from logad.errors import LogadError
    from logad.methods import get_method

    try:
        return bool(get_method(method).line_level)
    except LogadError:
        return False


# --------------------------------------------------------------------------------------------
# Ingress

api = FastAPI(
    title="logad",
    version=__version__,
    description="Log anomaly detection over HTTP: post raw log lines of a source, get its "
    "windows scored by the source's serving model from the registry.",
)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A failure of the service itself answers 500 with a JSON reason, like every other error.
    A plain-text 500 then comes only from Serve's proxy, for the requests a replica held when
    its process died; `logad detect` resends those, and not these."""
    return _error(500, f"internal error: {type(exc).__name__}: {str(exc)[:300]}")


_auth = BearerAuth()  # configured by each replica's Ingress.__init__ (one per process)


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A bad query or path parameter: 422 with a reason in words, like every other error."""
    reasons = []
    for e in exc.errors()[:5]:
        where = " ".join(str(x) for x in e.get("loc", ()))
        got = repr(e["input"])[:80] if e.get("input") is not None else "nothing"
        msg = e.get("msg", "invalid")
        if tuple(e.get("loc", ())) == ("path", "source"):
            msg = "not a valid source name: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        reasons.append(f"{where}: {msg} (got {got})")
    return _error(422, "; ".join(reasons) or "invalid request")


class _Context:
    """What the ingress needs per serving model: its version and a window builder."""

    def __init__(self, mv: Any, builder: Any) -> None:
        self.mv = mv
        self.builder = builder
        self.model_id = model_id(mv.source, mv.method, mv.version)


def _load_context(registry: Any, mv: Any) -> _Context:
    from logad.errors import DataError
    from logad.parsing import TemplateStore
    from logad.sources.config import SourceConfig
    from logad.windows.online import WindowBuilder

    path = Path(registry.fetch(mv))
    src, tpl = path / "source.json", path / "templates.json"
    if not src.is_file() or not tpl.is_file():
        raise DataError(
            f"model {mv.tag} has no {'source.json' if not src.is_file() else 'templates.json'}: "
            "it cannot turn raw lines into windows; train it from a `logad ingest` output folder"
        )
    config = SourceConfig.model_validate_json(src.read_text())
    return _Context(mv, WindowBuilder(config, TemplateStore.load(tpl)))


def _error(status: int, reason: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=status, headers=headers or None)


def _isoformat(col: Any) -> list[str | None]:
    """ISO 8601 text of a timestamp column (None where null), as ``datetime.isoformat``."""
    return [None if t is None else t.isoformat() for t in col.to_pylist()]


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@serve.deployment(
    name="Ingress",
    max_ongoing_requests=64,
    ray_actor_options={"num_cpus": 0.25},
    autoscaling_config={
        "min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4,
        "upscale_delay_s": 2, "downscale_delay_s": 10, "look_back_period_s": 12,
    },
    health_check_period_s=5,
)
@serve.ingress(api)
class Ingress:
    """The HTTP API (see docs/serving.md)."""

    def __init__(self, args: dict[str, Any]) -> None:
        from ray.serve.metrics import Counter

        from logad.methods import available_methods
        from logad.registry import ModelRegistry

        self.args = AppArgs.model_validate(args)
        assert self.args.registry
        available_methods()  # import torch and the methods now, not on the first request
        if self.args.torch_threads:
            import torch

            torch.set_num_threads(self.args.torch_threads)
        self.registry = ModelRegistry(self.args.registry)
        self.score_batch.set_max_batch_size(self.args.max_batch_size)  # type: ignore[attr-defined]
        self.score_batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)  # type: ignore[attr-defined]
        self.limits = BodyLimits(self.args.max_body_bytes, self.args.max_decompressed_bytes,
                                 self.args.max_lines, self.args.max_line_chars)
        self._alias: dict[str, tuple[float, Any]] = {}
        self._held_bytes = 0  # request bodies held now (see _read_body)
        self._contexts: OrderedDict[str, _Context] = OrderedDict()
        self._lines = Counter("logad_detect_lines", "raw lines received", tag_keys=("source",))
        self._windows = Counter("logad_detect_windows", "windows scored", tag_keys=("source",))
        self._anomalous = Counter("logad_detect_anomalous_windows", "windows flagged anomalous",
                                  tag_keys=("source",))
        self._anomalous_lines = Counter("logad_detect_anomalous_lines", "request lines flagged by "
                                        "line-level models", tag_keys=("source",))
        self._rejected = Counter("logad_detect_rejected", "requests answered with a 4xx",
                                 tag_keys=("status",))
        self._frames_in = Counter("logad_detect_frames", "compressed frames scored", tag_keys=("source",))
        self._anomalous_frames = Counter("logad_detect_anomalous_frames", "compressed frames flagged anomalous",
                                         tag_keys=("source",))
        # an unusable token setting fails the replica's start, so the deploy fails: never open by mistake
        _auth.configure(resolve_token_digest(self.args.api_token_sha256, self.args.api_token_file),
                        on_reject=lambda: self._rejected.inc(tags={"status": "401"}))

    # -- registry lookups (cached) ------------------------------------------------------------

    async def _serving(self, source: str) -> Any | None:
        """The source's serving ModelVersion, re-read at most every ``alias_ttl_s``."""
        from logad.registry import RegistryError

        now = time.monotonic()
        hit = self._alias.get(source)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            mv = await asyncio.to_thread(self.registry.get, source)
        except RegistryError:
            mv = None
        if len(self._alias) > 10_000:
            self._alias.clear()
        self._alias[source] = (now + self.args.alias_ttl_s, mv)
        return mv

    async def _serving_or_404(self, source: str) -> Any:
        """The source's serving ModelVersion; a 404 BodyError where it has none."""
        mv = await self._serving(source)
        if mv is None:
            raise BodyError(404, f"unknown source {source!r}: no serving model in registry "
                                 f"{self.registry.root}; GET /v1/sources lists the deployed ones")
        return mv

    async def _context(self, mv: Any) -> _Context:
        mid = model_id(mv.source, mv.method, mv.version)
        ctx = self._contexts.get(mid)
        if ctx is None:
            ctx = await asyncio.to_thread(_load_context, self.registry, mv)
            self._contexts[mid] = ctx
            while len(self._contexts) > 64:
                self._contexts.popitem(last=False)
        else:
            self._contexts.move_to_end(mid)
        return ctx

    # -- models and scoring ---------------------------------------------------------------------

    @serve.multiplexed(max_num_models_per_replica=8)
    async def get_model(self, mid: str) -> Any:
        """Load one registry version (files checked against the manifest); LRU per replica."""
        source, method, version = parse_model_id(mid)
        mv = await asyncio.to_thread(self.registry.get, source, method, version)
        path = await asyncio.to_thread(self.registry.fetch, mv)
        return await asyncio.to_thread(_load_frozen, path)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0)
    async def score_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``{"model_id", "event_ids": [[...]], "explain": all|anomalous|none, "threshold"}`` per
        request → scores, the model's own threshold, and evidence per window (None where not
        explained), with ``line_level``, ``line_threshold`` and, for a line-level model, the
        flagged lines per window (``line_hits``: ``(position in the window, score)``); or
        ``{"error": reason}`` where the model cannot be loaded or scored."""
        out: list[dict[str, Any] | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r["model_id"], []).append(i)
        for mid, members in groups.items():
            try:
                detector = await self.get_model(mid)
                result = _score_group(detector, [requests[i] for i in members])  # inline: see _detect
            except Exception as exc:  # noqa: BLE001 - one broken model must not fail the batch's others
                reason = f"model {mid}: {type(exc).__name__}: {str(exc)[:300]}"
                result = [{"error": reason}] * len(members)
            for i, r in zip(members, result, strict=True):
                out[i] = {"model_id": mid, "batch_requests": len(requests), **r}
        return out  # type: ignore[return-value]

    # -- endpoints ----------------------------------------------------------------------------

    @api.get("/healthz", summary="Liveness: the ingress answers (no token needed)", response_model=None,
             responses={200: {"model": Health, "description": "The ingress is up."}})
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "logad_version": __version__}

    @api.get("/v1/sources", summary="Sources with a serving model: method, version, threshold",
             dependencies=[Depends(_auth)], response_model=None,
             responses={200: {"model": SourcesResponse, "description": "The sources and their models."},
                        **error_responses(401)})
    async def sources(self) -> dict[str, Any]:
        from logad.registry import RegistryError

        def listing() -> list[dict[str, Any]]:
            out = []
            for s in self.registry.sources():
                try:
                    mv = self.registry.get(s)
                except RegistryError:
                    continue  # versions but nothing promoted to serving
                out.append({
                    "source": s, "method": mv.method, "version": mv.version,
                    "model_id": model_id(s, mv.method, mv.version), "threshold": mv.threshold,
                    "created_at": mv.created_at, "metrics": mv.metrics,
                })
            return out

        return {"registry": self.registry.root, "sources": await asyncio.to_thread(listing)}

    @api.post(
        "/v1/sources/{source}/detect",
        summary="Score a batch of raw lines of one source",
        description="Body: JSON {\"lines\": [...]} or text/plain, optionally compressed as a whole "
        "(Content-Encoding: gzip or zstd). Lines are parsed with the source's frozen template "
        "store, grouped by its grouping rule and scored by its serving model. Each window gets "
        "its score, threshold, verdict and model version; `explain` picks which windows also "
        "list the lines that drove their score (at most `max_evidence` each). A line-level model "
        "(`model.line_level`, e.g. `unseen`) also scores every line: each window lists its lines "
        "scoring over `line_threshold` in `anomalous_lines` (`index`: 0-based position of the "
        "line in the request as sent, blank lines included; `line`; `score`), whatever `explain` "
        "says, and `summary.anomalous_lines` counts the distinct request lines flagged.",
        dependencies=[Depends(_auth)],
        response_model=None,
        openapi_extra={"requestBody": DETECT_REQUEST_BODY},
        responses={200: {"model": DetectResponse,
                         "description": "`source`, `model` (`id`, `method`, `version`, `threshold`, "
                         "`line_level`, `line_threshold`: null for window-level models), `summary` "
                         "(line counts, `windows`, `anomalous_windows`, and `anomalous_lines` for "
                         "line-level models), `windows` (per window: `window_id`, `start`, `end`, "
                         "`num_lines`, `score`, `threshold`, `verdict`, `method`, `model_version`, "
                         "`evidence` where explained, and `anomalous_lines` and `line_threshold` "
                         "for line-level models) and `timing_ms`"},
                   **error_responses(400, 401, 404, 413, 415, 422, 503)},
    )
    async def detect(
        self,
        source: Annotated[str, PathParam(description="log source name, as registered",
                                         pattern=SOURCE_NAME_PATTERN)],
        request: Request,
        explain: Annotated[ExplainMode, Query(description="windows that list their evidence lines")] = "anomalous",
        max_evidence: Annotated[int, Query(ge=0, le=100, description="evidence lines per window")] = 5,
        file: Annotated[str | None, Query(
            min_length=1, max_length=MAX_FILE_NAME, pattern=r"^[^\x00-\x1f\x7f]+$",
            description="the name of the file the lines were read from (`auth.log`, `syslog.1`, ...): windows are "
            "named after it, and line-level models that learned file types (CoLog, the classical pipeline's "
            "`file` features) read its type, the leading letters of its base name. Without it the lines are "
            "one file named `request`, a type no model learned")] = None,
    ) -> JSONResponse:
        t0 = time.perf_counter()
        unknown = sorted(set(request.query_params) - {"explain", "max_evidence", "file"})
        if unknown:  # a misspelt parameter must not be ignored silently
            return _error(422, f"unknown query parameter(s) {unknown[:5]}; known: explain, max_evidence, file")
        try:
            return await self._detect(source, request, explain, max_evidence, t0, file)
        except BodyError as exc:
            return self._refused(exc)
        finally:
            self._release(request)

    async def _detect(self, source: str, request: Request, explain: str, max_evidence: int,
                      t0: float, file: str | None = None) -> JSONResponse:
        mv = await self._serving_or_404(source)
        ctype = request.headers.get("content-type", "")
        cenc = request.headers.get("content-encoding", "")
        body = await self._read_body(request)
        t_read = time.perf_counter()
        # Decoding, parsing and scoring run inline on the replica's event loop, not in worker
        # threads: they hold the GIL for most of their time, and handing it between threads
        # made concurrent requests queue behind each other's switch intervals (10-line
        # requests at concurrency 4: 74.7 -> 53.6 ms p50 in bench/serve_latency.py). It
        # also keeps a context's WindowBuilder, which is not thread-safe, on one thread.
        lines, replaced = decode_body(body, ctype, cenc, self.limits)
        try:
            ctx = await self._context(mv)
        except Exception as exc:  # noqa: BLE001 - a broken model is the server's problem, not the client's
            return _error(503, f"cannot serve {model_id(mv.source, mv.method, mv.version)}: "
                                f"{type(exc).__name__}: {str(exc)[:300]}")
        table, stats = ctx.builder.table(lines, file_name=file)  # Arrow, straight to Python lists: no pandas
        if stats.lines - stats.empty_lines == 0:
            raise BodyError(422, "empty batch: the body holds no non-blank lines")
        t_parse = time.perf_counter()

        want = explain != "none" and max_evidence > 0
        result = None
        if table.num_rows:
            payload = {"model_id": ctx.model_id, "event_ids": table.column("event_ids").to_pylist(),
                       "explain": explain if want else "none", "threshold": mv.threshold,
                       "columns": _scoring_columns(mv.method, table)}
            result = await self.score_batch(payload)
            if "error" in result:  # the model could not be loaded or scored
                return _error(503, f"cannot score with {ctx.model_id}: {result['error']}")
        t_score = time.perf_counter()

        # the registry's threshold is the served one (re-registering can change it); the
        # model's own stored threshold where the manifest has none
        threshold = mv.threshold if mv.threshold is not None else (result or {}).get("threshold")
        # lines are judged at the model's own line threshold (the registry keeps none)
        line_level = result["line_level"] if result else _method_line_level(mv.method)
        line_threshold = (result or {}).get("line_threshold") if line_level else None
        windows = []
        num_anomalous = 0
        flagged_lines: set[int] = set()  # request lines: one in several windows counts once
        ids = table.column("window_id").to_pylist()
        starts, ends = (_isoformat(table.column(c)) for c in ("start", "end"))
        window_lines = table.column("lines").to_pylist()
        # a window's line k is line line_numbers[k] - 1 (0-based) of the request
        line_numbers = table.column("line_numbers").to_pylist() if line_level and result else None
        for i, score in enumerate(result["scores"] if result else []):
            anomalous = bool(threshold is not None and score > threshold)
            num_anomalous += anomalous
            w: dict[str, Any] = {
                "window_id": ids[i],
                "start": starts[i],
                "end": ends[i],
                "num_lines": len(window_lines[i]),
                "score": _finite(score),
                "threshold": threshold,
                "verdict": "anomalous" if anomalous else "normal",
                "method": mv.method,
                "model_version": mv.version,
            }
            if line_level:
                marked = []
                for k, s in result["line_hits"][i]:  # type: ignore[index]
                    no = line_numbers[i][k]  # type: ignore[index]
                    index = None if no is None else int(no) - 1
                    marked.append({"index": index, "line": window_lines[i][k], "score": _finite(s)})
                    if index is not None:
                        flagged_lines.add(index)
                w["anomalous_lines"] = marked
                w["line_threshold"] = line_threshold
            found = result["evidence"][i] if want and (explain == "all" or anomalous) else None
            if found is not None:
                w["evidence"] = [
                    {"index": idx, "line": window_lines[i][idx], "event_id": eid, "probability": round(p, 6)}
                    | ({"context": [{"offset": o, "line": text, "weight": round(cw, 6)} for o, text, cw in ctx]}
                       if ctx else {})
                    for idx, eid, p, ctx in found[:max_evidence]
                ]
                top = (result.get("features") or [None] * (i + 1))[i]
                if top:  # feature-based models: what drove the verdict, with SHAP values
                    w["top_features"] = [{"name": n, "value": _finite(v), "shap": _finite(sv)}
                                         for n, v, sv in top[:max_evidence]]
            windows.append(w)

        # (Ray counters refuse an increment of 0)
        self._lines.inc(stats.lines, tags={"source": source})
        if windows:
            self._windows.inc(len(windows), tags={"source": source})
        if num_anomalous:
            self._anomalous.inc(num_anomalous, tags={"source": source})
        if flagged_lines:
            self._anomalous_lines.inc(len(flagged_lines), tags={"source": source})
        summary = {**stats.to_dict(), "lines_with_replaced_bytes": replaced,
                   "anomalous_windows": num_anomalous}
        if line_level:
            summary["anomalous_lines"] = len(flagged_lines)
        return JSONResponse({
            "source": source,
            "model": {"id": ctx.model_id, "method": mv.method, "version": mv.version,
                      "threshold": threshold, "line_level": line_level, "line_threshold": line_threshold},
            "summary": summary,
            "windows": windows,
            "timing_ms": {
                "read": round((t_read - t0) * 1e3, 3),
                "parse": round((t_parse - t0) * 1e3, 3),
                "score": round((t_score - t_parse) * 1e3, 3),
                "model": result["compute_ms"] if result else 0.0,
                "total": round((time.perf_counter() - t0) * 1e3, 3),
            },
        })

    # -- compressed frames (CLAD) ------------------------------------------------------------------

    async def _frames_detector(self, mv: Any) -> tuple[str, Any] | JSONResponse:
        """The serving model of a source that reads frames, or the 503 answer where it cannot
        be loaded. Raises BodyError 409 where it reads text."""
        mid = model_id(mv.source, mv.method, mv.version)
        try:
            detector = await self.get_model(mid)
        except Exception as exc:  # noqa: BLE001 - a broken model is the server's problem, not the client's
            return _error(503, f"cannot serve {mid}: {type(exc).__name__}: {str(exc)[:300]}")
        if not callable(getattr(detector, "score_frames", None)) or getattr(detector, "codec", None) is None:
            raise _no_frames(mv)
        return mid, detector

    async def _frames_source(self, source: str) -> Any:
        mv = await self._serving_or_404(source)
        if not _method_reads_frames(mv.method):  # before the body is read or the model loaded
            raise _no_frames(mv)
        return mv

    @api.post(
        "/v1/sources/{source}/frames",
        summary="Score compressed frames of one source as they are (CLAD models)",
        description="Body: zstd frames one after the other (`application/zstd` or "
        "`application/octet-stream`: a .zst stream of one frame per window or chunk of lines, "
        "compressed with the source's dictionary from `GET /v1/sources/{source}/dictionary`), or "
        "JSON `{\"frames\": [{\"id\": \"w1\", \"data\": \"<base64>\"}]}` (`id` optional; the only "
        "form for a deflate model). The frames are found and checked from their headers (magic "
        "number, dictionary id, size) and scored by the source's serving model on their compressed "
        "bytes: nothing on this path decompresses or parses log text. A skippable frame with magic "
        "0x184D2A5C names the zstd frame after it (its content is the id); other skippable frames "
        "are skipped. Each frame gets its score, threshold and verdict (`score > threshold`).",
        dependencies=[Depends(_auth)],
        response_model=None,
        openapi_extra={"requestBody": FRAMES_REQUEST_BODY},
        responses={200: {"model": FramesResponse,
                         "description": "`source`, `model` (`id`, `method`, `version`, `threshold`), "
                         "`summary` (`frames`, `anomalous_frames`, `bytes`), `frames` (per frame, in body "
                         "order: `id`, `offset` in a binary body, `bytes`, `score`, `threshold`, "
                         "`verdict`) and `timing_ms`"},
                   **error_responses(400, 401, 404, 409, 413, 415, 422, 503, why=FRAMES_ERRORS)},
    )
    async def frames(
        self,
        source: Annotated[str, PathParam(description="log source name, as registered",
                                         pattern=SOURCE_NAME_PATTERN)],
        request: Request,
    ) -> JSONResponse:
        t0 = time.perf_counter()
        unknown = sorted(request.query_params)
        if unknown:  # a misspelt parameter must not be ignored silently
            return _error(422, f"unknown query parameter(s) {[u[:64] for u in unknown[:5]]}; frames takes none")
        try:
            return await self._frames(source, request, t0)
        except BodyError as exc:
            return self._refused(exc)
        finally:
            self._release(request)

    async def _frames(self, source: str, request: Request, t0: float) -> JSONResponse:
        mv = await self._frames_source(source)
        ctype = request.headers.get("content-type", "")
        cenc = request.headers.get("content-encoding", "")
        frame_media_type(ctype, cenc)  # 415 before the body is read
        body = await self._read_body(request)
        t_read = time.perf_counter()
        loaded = await self._frames_detector(mv)
        if isinstance(loaded, JSONResponse):
            return loaded
        mid, detector = loaded
        # found and checked from their headers only: nothing here inflates a byte
        frames = frame_body(body, ctype, cenc, FrameSpec.from_codec(detector.codec),
                            max_body_bytes=self.limits.max_body_bytes, max_frames=self.args.max_frames)
        t_check = time.perf_counter()
        try:  # inline, as detect scores: the model's work holds the GIL anyway
            scores = np.asarray(detector.score_frames([f.data for f in frames]), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - the model failed on frames that passed every check
            return _error(503, f"cannot score with {mid}: {type(exc).__name__}: {str(exc)[:300]}")
        if scores.shape != (len(frames),):
            return _error(503, f"cannot score with {mid}: {scores.shape} scores for {len(frames)} frames")
        t_model = time.perf_counter()
        # the registry's threshold is the served one; the model's own where the manifest has none
        threshold = mv.threshold if mv.threshold is not None else _finite(float(detector.threshold))
        out = []
        flagged = 0
        for f, score in zip(frames, scores.tolist(), strict=True):
            anomalous = bool(threshold is not None and score > threshold)
            flagged += anomalous
            out.append({"id": f.id, "offset": f.offset, "bytes": len(f.data), "score": _finite(score),
                        "threshold": threshold, "verdict": "anomalous" if anomalous else "normal"})
        self._frames_in.inc(len(frames), tags={"source": source})
        if flagged:
            self._anomalous_frames.inc(flagged, tags={"source": source})
        return JSONResponse({
            "source": source,
            "model": {"id": mid, "method": mv.method, "version": mv.version, "threshold": threshold},
            "summary": {"frames": len(frames), "anomalous_frames": flagged,
                        "bytes": sum(len(f.data) for f in frames)},
            "frames": out,
            "timing_ms": {
                "read": round((t_read - t0) * 1e3, 3),
                "check": round((t_check - t0) * 1e3, 3),
                "model": round((t_model - t_check) * 1e3, 3),
                "total": round((time.perf_counter() - t0) * 1e3, 3),
            },
        })

    @api.get(
        "/v1/sources/{source}/dictionary",
        summary="The compression dictionary and codec settings of a source's serving model (CLAD)",
        description="What a log shipper needs to make frames the source's model reads: by default "
        "the dictionary's raw bytes (`application/octet-stream`, for `zstd -D` or "
        "`zstandard.ZstdCompressionDict`) with the codec settings in `X-Logad-*` headers; with "
        "`format=json`, the model's codec.json and the dictionary in base64. The settings are the "
        "same in both forms, and the headers come with both.",
        dependencies=[Depends(_auth)],
        response_model=None,
        responses={200: {"model": DictionaryResponse, "headers": DICTIONARY_HEADERS,
                         "description": "The dictionary: raw bytes (`format=binary`, the default) or JSON "
                         "(`format=json`: `source`, `model`, `codec` (codec.json: `codec`, `level`, "
                         "`max_frame_bytes`, `dict_id`, `dict_size_bytes`, `dict_sha256`, ...), "
                         "`dictionary` in base64)",
                         "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                             "format": "binary"}}}},
                   **error_responses(401, 404, 409, 422, 503, why={
                       422: "An unknown query parameter, or `format` other than binary or json."})},
    )
    async def dictionary(
        self,
        source: Annotated[str, PathParam(description="log source name, as registered",
                                         pattern=SOURCE_NAME_PATTERN)],
        request: Request,
        fmt: Annotated[DictionaryFormat, Query(alias="format", description="binary: the raw bytes; "
                                               "json: codec.json and the dictionary in base64")] = "binary",
    ) -> Response:
        import base64

        unknown = sorted(set(request.query_params) - {"format"})
        if unknown:
            return _error(422, f"unknown query parameter(s) {[u[:64] for u in unknown[:5]]}; known: format")
        try:
            mv = await self._frames_source(source)
            loaded = await self._frames_detector(mv)
        except BodyError as exc:
            self._rejected.inc(tags={"status": str(exc.status)})
            return _error(exc.status, exc.reason)
        if isinstance(loaded, JSONResponse):
            return loaded
        mid, detector = loaded
        codec = detector.codec
        headers = {"X-Logad-Model": mid, "X-Logad-Codec": str(codec.codec), "X-Logad-Codec-Level": str(codec.level),
                   "X-Logad-Dict-Id": str(codec.dict_id), "X-Logad-Dict-Sha256": codec.dict_sha256,
                   "X-Logad-Max-Frame-Bytes": str(codec.max_frame_bytes), "ETag": f'"{codec.dict_sha256}"'}
        if fmt == "json":
            return JSONResponse({"source": source, "model": {"id": mid, "method": mv.method, "version": mv.version},
                                 "codec": codec.to_json(),
                                 "dictionary": base64.b64encode(bytes(codec.dictionary)).decode("ascii")},
                                headers=headers)
        headers["Content-Disposition"] = f'attachment; filename="{source}.zdict"'
        return Response(bytes(codec.dictionary), media_type="application/octet-stream", headers=headers)

    async def _read_body(self, request: Request) -> bytes:
        """The body, refusing it (413) when its declared length, or what arrived so far,
        passes the limit, and (503) when the replica already holds too many bodies' bytes.
        The bytes count against ``max_held_body_bytes`` until the handler's ``_release``."""
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        expected = int(declared) if declared.isdigit() else 0
        if expected > limit:
            raise BodyError(413, f"body is {expected:,} bytes, over the limit of {limit:,}; send smaller batches")
        self._hold(request, expected)
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"body is over the limit of {limit:,} bytes; send smaller batches")
            if size > request.state.held_bytes:  # no (or a short) declared length: count bytes as they come
                self._hold(request, size - request.state.held_bytes)
            parts.append(chunk)
        return b"".join(parts)

    def _hold(self, request: Request, n: int) -> None:
        """Count ``n`` more body bytes against the replica's cap (503 where they would pass it)."""
        cap = self.args.max_held_body_bytes
        if self._held_bytes + n > cap:
            raise BodyError(503, f"this replica holds {self._held_bytes:,} bytes of request bodies; {n:,} more "
                                 f"would pass its limit of {cap:,}: retry shortly", headers={"Retry-After": "1"})
        self._held_bytes += n
        request.state.held_bytes = getattr(request.state, "held_bytes", 0) + n

    def _release(self, request: Request) -> None:
        self._held_bytes -= getattr(request.state, "held_bytes", 0)
        request.state.held_bytes = 0

    def _refused(self, exc: BodyError) -> JSONResponse:
        self._rejected.inc(tags={"status": str(exc.status)})
        return _error(exc.status, exc.reason, **exc.headers)


def build_app(args: dict[str, Any] | None = None) -> Any:
    """The application ``serve run``/``serve deploy`` and ``logad serve`` start.

    ``args`` are the fields of :class:`AppArgs` (serve/config.yaml ``args:``);
    the registry defaults to ``$LOGAD_REGISTRY``. A relative registry path is
    made absolute here, against the directory the app is built from.

    Raises:
        ValueError: unknown or invalid arguments, or no registry given.
    """
    parsed = AppArgs.model_validate(dict(args or {}))
    registry = parsed.registry or os.environ.get("LOGAD_REGISTRY")
    if not registry:
        raise ValueError("logad serving needs a registry: set args.registry in the serve config "
                         "or LOGAD_REGISTRY in the environment")
    if "://" not in registry:
        registry = str(Path(registry).expanduser().resolve())
    parsed = parsed.model_copy(update={"registry": registry})
    return Ingress.bind(parsed.model_dump())
