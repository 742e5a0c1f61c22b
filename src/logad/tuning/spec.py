"""`tune/<method>.yaml`: a sweep as config (space, metric, scheduler, resources).

Example::

    method: fastlogad
    metric: val_bce            # reported by the method after every epoch
    mode: min
    num_samples: 8
    max_epochs: 6              # the method's main-phase epochs (its `epochs` setting)
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
    resources_per_trial: {cpu: 1, gpu: 0.25}   # gpu is dropped on a cluster without GPUs
    max_concurrent_trials: null                # null: as many as resources allow
    protocol: fastlogad
    split_params: {num_train: 4855}
    config: {batch_size: 32}                   # fixed method settings
    space:
      learning_rate: {type: loguniform, low: 1.0e-5, high: 1.0e-3}
      hidden_size: {type: choice, values: [64, 128, 256]}

Space entries: ``choice`` / ``grid`` (``values``), ``uniform`` / ``loguniform``
(``low``, ``high``), ``quniform`` (``low``, ``high``, ``q``), ``randint``
(``low`` inclusive, ``high`` exclusive). A ``grid`` multiplies the trials:
every grid point runs ``num_samples`` times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from logad.errors import ConfigError

__all__ = ["Resources", "Scheduler", "SpaceEntry", "TuneSpec", "load_tune_spec"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceEntry(_Strict):
    """One searched hyperparameter."""

    type: Literal["choice", "grid", "uniform", "loguniform", "quniform", "randint"]
    values: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    q: float | None = None

    @model_validator(mode="after")
    def _check(self) -> SpaceEntry:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"'{self.type}' needs a non-empty 'values' list")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"'{self.type}' needs 'low' and 'high'")
            if not self.low < self.high:
                raise ValueError(f"'low' ({self.low}) must be below 'high' ({self.high})")
            if self.type == "loguniform" and self.low <= 0:
                raise ValueError("'loguniform' needs low > 0")
            if self.type == "quniform" and not self.q:
                raise ValueError("'quniform' needs 'q'")
        return self

    def to_tune(self) -> Any:
        """The matching ``ray.tune`` search-space object."""
        from ray import tune

        if self.type == "choice":
            return tune.choice(self.values)
        if self.type == "grid":
            return tune.grid_search(self.values)
        if self.type == "uniform":
            return tune.uniform(self.low, self.high)
        if self.type == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.type == "quniform":
            return tune.quniform(self.low, self.high, self.q)
        return tune.randint(int(self.low), int(self.high))


class Scheduler(_Strict):
    """``asha`` stops weak trials at rungs; ``fifo`` runs every trial to the end."""

    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1, description="epochs every trial gets before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1.0, description="keep 1/reduction_factor at each rung")


class Resources(_Strict):
    """What one trial reserves; fractions let several trials share a CPU or a GPU."""

    cpu: float = Field(1.0, gt=0.0)
    gpu: float = Field(0.0, ge=0.0)


class TuneSpec(_Strict):
    """A sweep: one method, its search space, and how trials run."""

    method: str
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    num_samples: int = Field(8, ge=1)
    max_epochs: int | None = Field(None, ge=1, description="the method's main-phase epochs per trial")
    scheduler: Scheduler = Field(default_factory=Scheduler)
    resources_per_trial: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(None, ge=1)
    protocol: str = "fastlogad"
    split_params: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, SpaceEntry] = Field(default_factory=dict)
    seed: int = 0

    @model_validator(mode="after")
    def _no_overlap(self) -> TuneSpec:
        both = sorted(set(self.config) & set(self.space))
        if both:
            raise ValueError(f"keys both fixed in 'config' and searched in 'space': {', '.join(both)}")
        return self


def load_tune_spec(path: str | Path) -> TuneSpec:
    """Read and validate a sweep YAML; every error names the file and the key.

    Also checks that the method exists and that its config accepts every fixed
    and searched key (a typo fails here, not in 8 trials).

    Raises:
        ConfigError: unreadable file, bad YAML, unknown keys or bad values.
    """
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read tune config {p}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"tune config {p} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"tune config {p} must be a mapping (method, metric, space, ...)")
    try:
        spec = TuneSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid tune config {p}: {problems}") from None

    from logad.methods import get_method

    cls = get_method(spec.method)
    known = set(cls.config_class.model_fields)
    unknown = sorted((set(spec.config) | set(spec.space)) - known)
    if unknown:
        raise ConfigError(
            f"invalid tune config {p}: {spec.method} has no setting(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})")
    if spec.max_epochs is not None and "epochs" not in known:
        raise ConfigError(f"invalid tune config {p}: max_epochs set but {spec.method} has no 'epochs' setting")
    return spec
