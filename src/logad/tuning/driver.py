"""The Ray Tune driver: one sweep over one method's Detector, winners into the registry.

The driver reads the windows table once, splits it with the sweep's protocol and
puts only the training and validation parts in Ray's object store: trials never
see the test part, so tuning cannot leak test labels. Each trial fits the
Detector with a per-epoch callback that reports the epoch's metrics to Tune (so
ASHA can stop weak trials at its rungs), then saves the fitted model as the
trial's checkpoint. For unsupervised methods the validation part is normal-only,
so the metric is a normal-validation loss (FastLogAD's ``val_bce``: its HST loss
on validation normals and their pseudo-anomalies, comparable across HST weights).

The best trial (best metric it ever reported) is restored from its checkpoint,
or retrained with its config where ASHA stopped it before it finished, and
registered with the sweep it came from.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from logad.errors import ConfigError, DataError
from logad.tuning.spec import TuneSpec

__all__ = ["SweepResult", "TrialSummary", "run_sweep"]

FIT_COMPLETE = "fit_complete"
FINAL_REPORT = "tune_final_report.json"
"""Kept in a trial's checkpoint: its final report, so a resumed sweep need not fit it again."""


@dataclass
class TrialSummary:
    trial_id: str
    params: dict[str, Any]
    best_metric: float
    iterations: int
    completed: bool
    """Whether the trial ran its fit to the end (False: stopped early by the scheduler or failed)."""
    error: str | None = None
    node_id: str | None = None
    """The Ray node the trial ran on."""


@dataclass
class SweepResult:
    experiment_path: str
    metric: str
    mode: str
    trials: list[TrialSummary]
    best: TrialSummary
    best_config: dict[str, Any]
    model_dir: Path
    registered: Any = None
    wall_s: float = 0.0
    max_concurrent_seen: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stopped_early(self) -> int:
        return sum(1 for t in self.trials if not t.completed and t.error is None)


def _trial(config: dict[str, Any], *, method: str, fixed: dict[str, Any], train: pd.DataFrame,
           val: pd.DataFrame, metric: str, cpus: float, state: Any = None) -> None:
    """One trial: fit with per-epoch reports, then report the kept epoch with the model."""
    started = time.time()  # the trial holds its resources from here (imports and set-up included)
    import ray
    import torch
    from ray import tune

    from logad.methods import get_method

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        # A resumed sweep: this trial had finished (its final checkpoint was recorded), but
        # the driver died before it marked the trial done. Report the kept result again
        # instead of fitting it a second time.
        with checkpoint.as_directory() as kept:
            final = Path(kept) / FINAL_REPORT
            if final.is_file():
                tune.report(json.loads(final.read_text()))
                return
    node = ray.get_runtime_context().get_node_id()
    torch.set_num_threads(max(1, int(cpus)))  # concurrent trials must not oversubscribe cores
    cls = get_method(method)
    params = {**fixed, **config}
    if "show_progress" in cls.config_class.model_fields:
        params["show_progress"] = False
    detector = cls(params)
    if state is not None:  # computed once by the driver for every trial (e.g. CoLog's embeddings)
        detector.adopt_sweep_state(state)

    def on_epoch(metrics: dict[str, float]) -> None:
        if metric in metrics:  # e.g. warm-up epochs without a validation loss are not rungs
            tune.report({**metrics, "trial_started": started, "reported_at": time.time(), "node_id": node})

    report = detector.fit(train, val, progress=on_epoch)
    values = [h[metric] for h in report.history if metric in h and math.isfinite(h[metric])]
    if not values:
        raise DataError(f"{method} never reported {metric!r}; pick a metric it reports per epoch")
    kept = report.history[report.best_epoch] if 0 <= report.best_epoch < len(report.history) else {}
    final = float(kept.get(metric, values[-1]))
    result = {metric: final, FIT_COMPLETE: 1, "threshold": float(detector.threshold),
              "epochs_run": len(report.history), "train_time_s": report.train_time_s,
              "trial_started": started, "reported_at": time.time(), "node_id": node}
    with tempfile.TemporaryDirectory() as tmp:
        detector.save(tmp)
        (Path(tmp) / FINAL_REPORT).write_text(json.dumps(result))
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))


def _cluster_has_gpu() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def run_sweep(
    spec: TuneSpec,
    windows_dir: str | Path,
    source: str,
    *,
    num_samples: int | None = None,
    max_epochs: int | None = None,
    storage: str | Path = "tune-results",
    name: str | None = None,
    registry: str | None = None,
    promote: bool = False,
    resume: bool = False,
    log: Callable[[str], None] = print,
    verbose: int = 1,
) -> SweepResult:
    """Run (or resume) a sweep and register its winner.

    Args:
        spec: the sweep (see :mod:`logad.tuning.spec`).
        windows_dir: output folder of ``logad ingest``.
        source: log source name (registry key, and part of the experiment name).
        num_samples, max_epochs: override the spec's.
        storage: where Tune keeps results and checkpoints: a folder or a pyarrow URI.
        name: experiment name (default ``<method>-<source>``).
        registry: register the best model there (a folder or URI).
        promote: make it production and the source's serving model.
        resume: continue the interrupted sweep at ``storage/name``.

    Raises:
        ConfigError: an experiment exists and ``resume`` is off, or nothing to resume.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    from logad.evaluation.splits import split_windows
    from logad.methods import get_method, load_detector
    from logad.ray_env import init_ray
    from logad.registry import validate_name
    from logad.windows import read_windows

    validate_name("source", source)
    cls = get_method(spec.method)
    fields = cls.config_class.model_fields
    num_samples = num_samples or spec.num_samples
    max_epochs = max_epochs or spec.max_epochs
    name = name or f"{spec.method}-{source}"
    storage = str(storage)
    local_storage = "://" not in storage
    if local_storage:
        storage = str(Path(storage).expanduser().resolve())
    experiment = f"{storage.rstrip('/')}/{name}"

    init_ray(progress=False)
    resources = {"cpu": spec.resources_per_trial.cpu}
    gpu = spec.resources_per_trial.gpu > 0 and _cluster_has_gpu()
    if gpu:
        resources["gpu"] = spec.resources_per_trial.gpu
    fixed = dict(spec.config)
    if max_epochs is not None:
        fixed["epochs"] = max_epochs
    if "device" in fields:
        fixed["device"] = "cuda" if gpu else "cpu"
    if "seed" in fields:
        fixed.setdefault("seed", spec.seed)
    cls.make_config(fixed)  # fail now on a bad fixed config, not in every trial

    windows = read_windows(windows_dir)
    split = split_windows(windows, spec.protocol, supervised=cls.supervised, seed=spec.seed, **spec.split_params)
    if not len(split.train) or not len(split.val):
        raise DataError(f"protocol {spec.protocol!r} left no training or validation windows in {windows_dir}")
    log(f"sweep {name}: {spec.method} on {len(split.train)} train / {len(split.val)} validation windows "
        f"(protocol {spec.protocol}; the {len(split.test)} test windows stay out of tuning)")

    state = cls.sweep_state(split.train, split.val, fixed)
    if state is not None:
        log(f"computed once for every trial: {state!r}")
    trainable = tune.with_resources(
        tune.with_parameters(_trial, method=spec.method, fixed=fixed, train=split.train, val=split.val,
                             metric=spec.metric, cpus=spec.resources_per_trial.cpu, state=state),
        resources,
    )
    t0 = time.perf_counter()
    exists = _experiment_exists(experiment)
    if resume:
        if not exists:
            raise ConfigError(f"nothing to resume at {experiment}: run the sweep without --resume first")
        log(f"resuming {experiment}")
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        if exists:
            raise ConfigError(f"a sweep already exists at {experiment}: pass --resume to continue it, "
                              "or choose another --name or --storage")
        space = {k: v.to_tune() for k, v in spec.space.items()}
        if spec.scheduler.type == "asha":
            max_t = (max_epochs or int(fields["epochs"].default if "epochs" in fields else 100)) + 1
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_t,
                                      grace_period=spec.scheduler.grace_period,
                                      reduction_factor=spec.scheduler.reduction_factor)
        else:
            scheduler = FIFOScheduler()
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=spec.metric, mode=spec.mode, num_samples=num_samples, scheduler=scheduler,
                # the limit goes to the generator: Tune ignores TuneConfig's max_concurrent_trials
                # when the search algorithm is a generator (it warns, and runs them all at once)
                search_alg=BasicVariantGenerator(random_state=spec.seed,
                                                 max_concurrent=spec.max_concurrent_trials or 0),
            ),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, verbose=verbose,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=1),
            ),
        )
    grid = tuner.fit()
    wall = time.perf_counter() - t0

    trials = [_summarize(r, spec) for r in grid]
    ok = [t for t in trials if math.isfinite(t.best_metric)]
    if not ok:
        errors = "; ".join(t.error or "no metric" for t in trials[:3])
        raise DataError(f"no trial of {name} reported {spec.metric!r}: {errors}")
    sign = 1 if spec.mode == "min" else -1
    best = min(ok, key=lambda t: sign * t.best_metric)
    best_result = next(r for r in grid if _trial_id(r) == best.trial_id)
    best_config = {**fixed, **best.params}

    model_dir = Path(experiment if local_storage else tempfile.mkdtemp(prefix="logad-tune-")) / "best_model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    if best.completed and best_result.checkpoint is not None:
        best_result.checkpoint.to_directory(str(model_dir))
        (model_dir / FINAL_REPORT).unlink(missing_ok=True)  # the sweep's bookkeeping, not the model's
        log(f"best trial {best.trial_id}: restored from its checkpoint")
    else:
        log(f"best trial {best.trial_id} was stopped before it finished: retraining it with its config")
        det = cls({**best_config, **({"show_progress": False} if "show_progress" in fields else {})})
        det.fit(split.train, split.val, progress=False)
        det.save(model_dir)
    for extra in ("templates.json", "source.json"):
        if (Path(windows_dir) / extra).is_file():
            shutil.copyfile(Path(windows_dir) / extra, model_dir / extra)
    sweep_info = {"experiment": experiment, "trial_id": best.trial_id, "config": best.params,
                  "metric": spec.metric, "mode": spec.mode, "value": best.best_metric,
                  "num_trials": len(trials), "protocol": spec.protocol}
    (model_dir / "sweep.json").write_text(json.dumps(sweep_info, indent=2, default=str) + "\n")
    threshold = float(load_detector(model_dir).threshold)

    result = SweepResult(
        experiment_path=experiment, metric=spec.metric, mode=spec.mode, trials=trials, best=best,
        best_config=best_config, model_dir=model_dir, wall_s=wall,
        max_concurrent_seen=_max_overlap(grid),
    )
    if registry:
        from logad.registry import ModelRegistry

        reg = ModelRegistry(registry)
        result.registered = reg.register(model_dir, source, metrics={spec.metric: best.best_metric},
                                         sweep=sweep_info, threshold=threshold, promote=promote)
    return result


def _experiment_exists(experiment: str) -> bool:
    from ray import tune

    try:
        return bool(tune.Tuner.can_restore(experiment))
    except Exception:  # unreachable storage reads as "nothing there"; the sweep then reports it
        return False


def _trial_id(result: Any) -> str:
    tid = (result.metrics or {}).get("trial_id")
    if tid:
        return str(tid)
    return str(getattr(result, "path", "")).rstrip("/").rsplit("/", 1)[-1] or str(id(result))


def _summarize(result: Any, spec: TuneSpec) -> TrialSummary:
    df = result.metrics_dataframe
    values = df[spec.metric].dropna() if df is not None and spec.metric in df else pd.Series(dtype=float)
    best = float(values.min() if spec.mode == "min" else values.max()) if len(values) else float("nan")
    metrics = result.metrics or {}
    params = {k: v for k, v in (result.config or {}).items()}
    return TrialSummary(
        trial_id=_trial_id(result), params=params, best_metric=best,
        iterations=int(metrics.get("training_iteration", len(values))),
        completed=bool(metrics.get(FIT_COMPLETE)),
        error=str(result.error).splitlines()[0][:200] if result.error else None,
        node_id=metrics.get("node_id"),
    )


def _max_overlap(grid: Any) -> int:
    """Most trials that were running at the same time (from their reported wall times).

    Uses the trials' own float clocks: Tune's ``timestamp`` is whole seconds, so short
    trials would seem to end before they started.
    """
    spans = []
    for r in grid:
        df = r.metrics_dataframe
        if df is None or "trial_started" not in df or "reported_at" not in df or not len(df):
            continue
        spans.append((float(df["trial_started"].iloc[0]), float(df["reported_at"].iloc[-1])))
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak


def format_trials(result: SweepResult) -> str:
    """A table of every trial: params, best metric, epochs reported, status."""
    keys = sorted({k for t in result.trials for k in t.params})
    head = ["trial", *keys, result.metric, "reports", "status"]
    rows = []
    for t in sorted(result.trials, key=lambda t: t.trial_id):
        status = ("BEST, " if t is result.best else "") + (
            "error" if t.error else "completed" if t.completed else "stopped early")
        rows.append([t.trial_id, *[_fmt(t.params.get(k)) for k in keys], _fmt(t.best_metric), str(t.iterations), status])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)) for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
