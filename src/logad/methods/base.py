"""The Detector protocol, its fit report, the artifact format and the method registry.

A detector is a small estimator: hyperparameters live in one pydantic config
object (unknown keys rejected), fitted state is set only by :meth:`Detector.fit`
or :meth:`Detector.load`, and :meth:`Detector.score` returns raw scores, one per
window, where higher means more anomalous. The decision threshold is chosen
without test labels, stored with the model, and never folded into ``score``.

A method that judges single lines (point anomalies) sets ``line_level = True``
and implements :meth:`Detector.score_lines`: one score per line, each line seen
with its context in its window, the lines of a batch concatenated in window
order. Its window scores follow from its lines (their max, or the method's own
collective rule), and its lines have a threshold of their own,
:attr:`Detector.line_threshold`, chosen without test labels like the window one.

Scoring takes a batch and returns a batch (a pandas DataFrame or a pyarrow
Table of windows in, a float64 numpy array out), so Ray Data ``map_batches``,
a Ray Tune trial and a Ray Serve ``@serve.batch`` handler call the same
function. Nothing here imports Ray.

Artifacts are directories of JSON and safetensors, never pickles::

    MODEL_DIR/config.json        {"format_version", "method", "logad_version", "config"}
    MODEL_DIR/model.safetensors  the network weights
    MODEL_DIR/*.json             method state (vocabulary, threshold, fit report)
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from logad import __version__
from logad.errors import ConfigError, DataError, NotFittedError, UnknownNameError

__all__ = [
    "ARTIFACT_FORMAT_VERSION",
    "ContextEvidence",
    "Detector",
    "EpochCallback",
    "FeatureEvidence",
    "FrameEvidence",
    "FitReport",
    "LineEvidence",
    "WindowExplanation",
    "as_windows_frame",
    "available_methods",
    "line_counts",
    "get_method",
    "load_detector",
    "read_artifact_header",
    "read_fitted_state",
    "register_method",
    "write_artifact_header",
    "window_labels",
    "write_fitted_state",
]

ARTIFACT_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"

EpochCallback = Callable[[dict[str, float]], None]
"""Called after every epoch with that epoch's metrics (e.g. a Ray Tune ``report``)."""


@dataclass
class FitReport:
    """What one ``fit`` did: per-epoch losses, the epoch kept, and the time taken.

    Attributes:
        method: the method name.
        history: one dict per epoch, in order (``phase``, ``epoch`` and losses).
        best_epoch: index into ``history`` of the epoch whose weights were kept.
        stopped_early: whether early stopping ended training before the epoch budget.
        train_time_s: wall time of ``fit``.
        num_train_windows: training windows seen.
        num_val_windows: validation windows seen.
        threshold: the threshold stored with the model.
        extra: method-specific figures (vocabulary size, parameter count, ...).
        notes: sentences on choices the fit made by itself, for the person training it
            (``logad train`` prints them).
    """

    method: str
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    train_time_s: float = 0.0
    num_train_windows: int = 0
    num_val_windows: int = 0
    threshold: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def losses(self, key: str) -> list[float]:
        """The per-epoch values of one loss (epochs that do not report it are skipped)."""
        return [float(h[key]) for h in self.history if key in h]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitReport:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class ContextEvidence:
    """A neighbouring line and how much a line's verdict leaned on it (CoLog's attention)."""

    offset: int
    """Where the neighbour sits relative to the judged line in its file (-1: the line before)."""
    line: str
    weight: float
    """Attention weight over the judged line's context (the weights of one line sum to 1)."""


@dataclass
class LineEvidence:
    """One line that drove a window's score."""

    index: int
    """Position of the line in the window (0-based)."""
    line: str
    event_id: int
    probability: float
    """How strongly the detector flags this line (method-specific, in [0, 1])."""
    context: list[ContextEvidence] = field(default_factory=list)
    """Context-aware methods: the neighbouring lines the verdict attended to, strongest first."""


@dataclass
class FeatureEvidence:
    """One input feature that drove a verdict (feature-based methods)."""

    name: str
    value: float
    """The feature's value for this window or line."""
    shap: float
    """Its SHAP value: how far it moved the model's margin from the expected value."""


@dataclass
class FrameEvidence:
    """One compressed frame of a window (methods that read compressed frames, CLAD)."""

    index: int
    """Position of the frame among its window's frames (0-based)."""
    start_line: int
    stop_line: int
    """The window's lines ``[start_line, stop_line)`` the frame holds."""
    bytes: int
    """Compressed size."""
    score: float


@dataclass
class WindowExplanation:
    """Which lines (and, for feature-based methods, which features) drove one window's
    score, strongest first."""

    window_id: str
    score: float
    lines: list[LineEvidence]
    features: list[FeatureEvidence] = field(default_factory=list)
    frames: list[FrameEvidence] = field(default_factory=list)
    """Frame-reading methods: the window's frames, highest score first (the first drove it)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_windows_frame(windows: pd.DataFrame | pa.Table | pa.RecordBatch) -> pd.DataFrame:
    """Accept a batch of windows as a DataFrame, an Arrow Table or a RecordBatch.

    Only ``event_ids`` is required; ``window_id``, ``lines`` and ``label`` are used
    where present.

    Raises:
        DataError: the batch has no ``event_ids`` column or is of another type.
    """
    if isinstance(windows, pa.RecordBatch):
        windows = pa.Table.from_batches([windows])
    if isinstance(windows, pa.Table):
        windows = windows.to_pandas(types_mapper={pa.int8(): pd.Int8Dtype()}.get)
    if not isinstance(windows, pd.DataFrame):
        raise DataError(
            f"windows must be a pandas DataFrame or a pyarrow Table; got {type(windows).__name__}"
        )
    if "event_ids" not in windows.columns:
        raise DataError(
            "windows batch has no 'event_ids' column; read one with logad.windows.read_windows"
        )
    return windows


def window_labels(windows: pd.DataFrame) -> np.ndarray:
    """Each window's ``label`` as float64, NaN where unknown (or where there is no column)."""
    if "label" not in windows:
        return np.full(len(windows), np.nan)
    return pd.to_numeric(windows["label"], errors="coerce").to_numpy(dtype=np.float64)


def line_counts(windows: pd.DataFrame) -> np.ndarray:
    """Lines per window (the length of each ``event_ids``), int64."""
    return np.fromiter((len(x) for x in windows["event_ids"]), np.int64, len(windows))


class Detector(ABC):
    """Base class of every anomaly detector.

    Subclasses set ``name``, ``supervised`` and ``config_class``, and register
    with :func:`register_method`. A detector is constructed from a config (a
    ``config_class`` instance, a mapping, or keyword overrides), fitted with
    :meth:`fit`, and persisted with :meth:`save` / :meth:`load`.
    """

    name: ClassVar[str]
    supervised: ClassVar[bool] = False
    line_level: ClassVar[bool] = False
    """True: the method scores lines (:meth:`score_lines`), not only windows."""
    scoring_columns: ClassVar[tuple[str, ...]] = ()
    """Windows columns besides ``event_ids`` that :meth:`score` reads (e.g. ``lines``): the
    service passes them to its scorer, which otherwise sends template ids only."""
    config_class: ClassVar[type[BaseModel]]

    def __init__(self, config: BaseModel | Mapping[str, Any] | None = None, **overrides: Any) -> None:
        self.config = self.make_config(config, **overrides)
        self._threshold: float | None = None
        self._line_threshold: float | None = None

    @classmethod
    def make_config(cls, config: BaseModel | Mapping[str, Any] | None = None, **overrides: Any) -> Any:
        """Validate a config; unknown keys and bad values raise :class:`ConfigError`."""
        if isinstance(config, BaseModel):
            data = config.model_dump()
        else:
            data = dict(config or {})
        data.update(overrides)
        try:
            return cls.config_class.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                for err in exc.errors()
            )
            fields = ", ".join(sorted(cls.config_class.model_fields))
            raise ConfigError(
                f"invalid {cls.name} config: {problems} (known keys: {fields})"
            ) from None

    @classmethod
    def apply_cli_overrides(
        cls,
        config: Mapping[str, Any],
        *,
        epochs: int | None = None,
        seed: int | None = None,
        device: str | None = None,
    ) -> dict[str, Any]:
        """Fold the generic ``--epochs/--seed/--device`` flags into a config mapping.

        The default maps them onto fields called ``epochs``, ``seed`` and
        ``device`` when the method's config has them. A seed is welcome whether or not
        the method draws random numbers: it also draws the split, so one seed works for
        every method.

        Raises:
            ConfigError: ``--epochs`` or ``--device`` was given to a method with no such field.
        """
        out = dict(config)
        for key, value in (("epochs", epochs), ("seed", seed), ("device", device)):
            if value is None:
                continue
            if key == "seed" and key not in cls.config_class.model_fields:
                continue  # a deterministic method: the seed draws the split only
            if key not in cls.config_class.model_fields:
                raise ConfigError(f"method {cls.name!r} has no {key!r} setting; drop --{key}")
            out[key] = value
        return out

    # -- fitted state -----------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return self._threshold is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(self.name)

    @property
    def threshold(self) -> float:
        """The decision threshold: ``score > threshold`` means anomalous."""
        self._check_fitted()
        assert self._threshold is not None
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._check_fitted()
        self._threshold = float(value)

    @property
    def threshold_kind(self) -> str:
        """How the stored threshold was chosen, in a few words (for reports): label-free for
        the unsupervised methods; a supervised method says what it tuned on."""
        return "label-free" if not self.supervised else "validation-tuned"

    def predict(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        """Verdicts at the stored threshold: 1 anomalous, 0 normal."""
        return (self.score(windows) > self.threshold).astype(np.int8)

    @property
    def line_threshold(self) -> float:
        """The line threshold of a line-level method: ``line score > line_threshold`` flags
        the line. Chosen without test labels and stored with the model; methods whose
        window score is the max of their line scores share the window threshold."""
        self._check_fitted()
        if not self.line_level:
            raise NotImplementedError(f"method {self.name!r} scores windows, not lines")
        return self.threshold if self._line_threshold is None else self._line_threshold

    def score_lines(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        """Raw per-line scores (float64; higher = more anomalous), one per line: the lines
        of every window of the batch, concatenated in window order (so
        ``np.split(scores, np.cumsum(line_counts(windows))[:-1])`` gives each window's).
        A line is seen with its context in its window, so a line in two windows may
        score twice, differently. Only for ``line_level`` methods."""
        raise NotImplementedError(f"method {self.name!r} scores windows, not lines")

    def score_with_lines(self, windows: pd.DataFrame | pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """Window scores and line scores of one batch. The default calls :meth:`score` and
        :meth:`score_lines`; a method that gets both from one pass overrides it."""
        return self.score(windows), self.score_lines(windows)

    def predict_lines(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        """Line verdicts at the stored line threshold (1 anomalous, 0 normal), as :meth:`score_lines`."""
        return (self.score_lines(windows) > self.line_threshold).astype(np.int8)

    # -- sweeps -------------------------------------------------------------------------------

    @classmethod
    def sweep_state(cls, train: pd.DataFrame, val: pd.DataFrame, config: Mapping[str, Any]) -> Any:
        """What every trial of a sweep would otherwise compute for itself from the same data
        (CoLog: the SBERT vectors of every distinct message), computed once by the sweep's
        driver and handed to each trial's :meth:`adopt_sweep_state`. None: nothing to share."""
        return None

    def adopt_sweep_state(self, state: Any) -> None:
        """Take what :meth:`sweep_state` computed, before :meth:`fit` (the default keeps nothing)."""
        return None

    # -- the contract -----------------------------------------------------------------------

    @abstractmethod
    def fit(
        self,
        train: pd.DataFrame,
        val: pd.DataFrame,
        *,
        progress: bool | EpochCallback | None = None,
    ) -> FitReport:
        """Fit on ``train``, early-stop and pick the threshold on ``val``.

        Unsupervised methods expect normal-only ``train`` and ``val`` (labels, where
        present, are not read); supervised ones read ``label``.

        Args:
            train: training windows.
            val: validation windows.
            progress: ``None`` shows bars as the config says, ``False``/``True`` hides
                or shows them, a callable is called after each epoch with its metrics.
        """

    @abstractmethod
    def score(self, windows: pd.DataFrame | pa.Table) -> np.ndarray:
        """Raw anomaly scores (float64), one per window; higher = more anomalous."""

    @abstractmethod
    def explain(self, windows: pd.DataFrame | pa.Table) -> list[WindowExplanation]:
        """Per window, the lines that drove its score, strongest first."""

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the artifact directory (config.json, model.safetensors, JSON state)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> Detector:
        """Read an artifact directory written by :meth:`save`."""

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "unfitted"
        return f"{type(self).__name__}({state}, {self.config!r})"


# -- artifact header ----------------------------------------------------------------------------


def write_artifact_header(path: str | Path, method: str, config: BaseModel) -> Path:
    """Create ``path`` and write its ``config.json``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    header = {
        "format_version": ARTIFACT_FORMAT_VERSION,
        "method": method,
        "logad_version": __version__,
        "config": config.model_dump(mode="json"),
    }
    (out / CONFIG_FILE).write_text(json.dumps(header, indent=2) + "\n")
    return out


def read_artifact_header(path: str | Path, method: str | None = None) -> dict[str, Any]:
    """Read and check ``path/config.json`` (and, with ``method``, that it holds that method).

    Raises:
        DataError: the file is missing, is not JSON, has another format version, or holds
            another method's model.
    """
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise DataError(f"no model at {path}: {file} is missing; train one with `logad train`")
    try:
        header = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {file}: {exc}") from exc
    if not isinstance(header, dict) or "method" not in header or "config" not in header:
        raise DataError(f"{file} is not a logad model config (needs 'method' and 'config')")
    version = header.get("format_version")
    if version != ARTIFACT_FORMAT_VERSION:
        raise DataError(
            f"{file} has model format version {version!r}; this logad ({__version__}) reads "
            f"version {ARTIFACT_FORMAT_VERSION}: retrain the model or use a matching logad"
        )
    if method is not None and header["method"] != method:
        raise DataError(f"{file} holds a {header['method']!r} model, not {method!r}")
    return header


# -- fitted state -------------------------------------------------------------------------------

STATE_FILE = "state.json"


def write_fitted_state(path: str | Path, detector: Detector, **extra: Any) -> None:
    """Write ``path/state.json``: the detector's thresholds, how they were chosen, ``extra``
    (method state such as the level it was trained at) and its fit report."""
    report = getattr(detector, "fit_report", None)
    state = {"threshold": detector._threshold, "line_threshold": detector._line_threshold,
             "threshold_strategy": getattr(detector, "threshold_strategy", ""), **extra,
             "fit_report": report.to_dict() if report else None}
    (Path(path) / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def read_fitted_state(path: str | Path, detector: Detector, *, levels: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read ``path/state.json`` into ``detector`` (thresholds, threshold strategy, fit report)
    and return it, for the method's own keys.

    Raises:
        DataError: the file is missing or malformed, has no numeric threshold, or (with
            ``levels``) no ``level`` among them.
    """
    from logad.methods._events import read_state

    file = Path(path) / STATE_FILE
    state = read_state(file)
    if not isinstance(state.get("threshold"), int | float):
        raise DataError(f"{file} needs a numeric 'threshold'")
    if levels and state.get("level") not in levels:
        raise DataError(f"{file} needs a 'level' ({' or '.join(levels)})")
    detector._threshold = float(state["threshold"])
    line = state.get("line_threshold")
    detector._line_threshold = float(line) if isinstance(line, int | float) else None
    detector.threshold_strategy = str(state.get("threshold_strategy", ""))  # type: ignore[attr-defined]
    if state.get("fit_report"):
        detector.fit_report = FitReport.from_dict(state["fit_report"])  # type: ignore[attr-defined]
    return state


# -- registry -----------------------------------------------------------------------------------

_METHODS: dict[str, type[Detector]] = {}
# Built-in methods register themselves when their module is imported. They are imported
# lazily, and by name where one is asked for, so `import logad.methods` and loading one
# model stay free of the other methods' start-up cost (torch, xgboost, shap, ...).
_BUILTIN_MODULES: dict[str, str] = {
    "fastlogad": "logad.methods.fastlogad",
    "unseen": "logad.methods.unseen",
    "pca": "logad.methods.pca",
    "isolation-forest": "logad.methods.isolation_forest",
    "deeplog": "logad.methods.deeplog",
    "classical": "logad.methods.classical",
    "colog": "logad.methods.colog",
    "clad": "logad.methods.clad",
}
_builtins_loaded = False

D = TypeVar("D", bound=type[Detector])


def register_method(cls: D) -> D:
    """Class decorator: add a detector class to the registry under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    existing = _METHODS.get(name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"method {name!r} is already registered by {existing.__qualname__}")
    _METHODS[name] = cls
    return cls


def _load_builtins(name: str | None = None) -> None:
    """Import the built-in method ``name`` (every built-in where ``name`` is None or not one)."""
    global _builtins_loaded
    if name is not None and name in _BUILTIN_MODULES:
        if name not in _METHODS:
            importlib.import_module(_BUILTIN_MODULES[name])
        return
    if not _builtins_loaded:
        for module in _BUILTIN_MODULES.values():
            importlib.import_module(module)
        _builtins_loaded = True


def available_methods() -> list[str]:
    """Names of every registered method, sorted."""
    _load_builtins()
    return sorted(_METHODS)


def get_method(name: str) -> type[Detector]:
    """The detector class registered as ``name`` (importing only its module).

    Raises:
        UnknownNameError: no such method; the message lists the known ones.
    """
    _load_builtins(name)
    try:
        return _METHODS[name]
    except KeyError:
        _load_builtins()
        raise UnknownNameError("method", name, sorted(_METHODS)) from None


def load_detector(path: str | Path) -> Detector:
    """Load any saved detector: read ``config.json``'s method and dispatch to its class."""
    header = read_artifact_header(path)
    return get_method(str(header["method"])).load(path)
