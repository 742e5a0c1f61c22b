"""`logad train`: windows table → split → fitted detector saved as a model directory."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["load_config_file", "parse_split_params", "register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    from logad.evaluation.splits import DEFAULT_PROTOCOL

    p = subparsers.add_parser(
        "train",
        help="train a detector on a windows table and save it as a model directory",
        description=(
            "Split the windows table written by `logad ingest` with a named protocol, fit the "
            "method on the training part (normal windows only for unsupervised methods), pick "
            "its threshold on the validation part without test labels, report the test split, "
            "and write MODEL_DIR (config.json, model.safetensors, vocabulary, threshold, "
            "training.json and a copy of DIR/templates.json)."
        ),
    )
    p.add_argument("--method", required=True, metavar="NAME", help="detector to train, e.g. fastlogad")
    p.add_argument("--windows", required=True, metavar="DIR", help="output folder of `logad ingest`")
    p.add_argument("--output", "-o", required=True, metavar="MODEL_DIR", help="where to write the model")
    p.add_argument(
        "--protocol", default=DEFAULT_PROTOCOL, metavar="P",
        help=f"split protocol: chronological, fastlogad, random-session, random-lines (CoLog's, leaky) or "
        f"leave-one-source-out "
        f"(default {DEFAULT_PROTOCOL})",
    )
    p.add_argument(
        "--split-param", action="append", default=[], metavar="KEY=VALUE",
        help="protocol parameter, repeatable, e.g. train_fraction=0.6, num_train=4855 or (leave-one-source-out) "
        "holdout=NAME",
    )
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="training epochs (method's main phase)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="seed for the model and the split")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--config", metavar="FILE", help="method config as JSON or YAML (keys of the method's config)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--registry", metavar="PATH",
        help="also register the model in this registry (a folder or URI; needs --source)",
    )
    p.add_argument("--source", metavar="NAME", help="log source name to register the model under")
    p.add_argument(
        "--promote", action="store_true",
        help="make the registered version production and the source's serving model "
        "(the first version of a source and method becomes production by itself)",
    )
    p.set_defaults(func=run)


def load_config_file(path: str | None) -> dict[str, Any]:
    """Read a JSON or YAML mapping of method config keys (``{}`` when no file).

    Raises:
        ConfigError: unreadable file, bad syntax or not a mapping (names the file).
    """
    from logad.errors import ConfigError

    if not path:
        return {}
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read method config {path}: {exc}") from exc
    import yaml

    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"method config {path} is not valid JSON/YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"method config {path} must be a mapping of keys to values")
    return data


def parse_split_params(items: list[str]) -> dict[str, Any]:
    """``["num_train=4855", "val_fraction=0.1"]`` → ``{"num_train": 4855, "val_fraction": 0.1}``."""
    from logad.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--split-param expects KEY=VALUE; got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Train, save and report; returns the exit status."""
    from logad.errors import ConfigError

    if (args.source or args.promote) and not args.registry:
        raise ConfigError("--source and --promote need --registry PATH")
    if args.registry and not args.source:
        raise ConfigError("--registry needs --source NAME (the log source the model is for)")
    if args.registry:
        from logad.registry import ModelRegistry, validate_name

        validate_name("source", args.source)  # fail before training, not after
        registry = ModelRegistry(args.registry)
    from logad.evaluation.report import evaluate_scores, format_metrics_table
    from logad.evaluation.splits import split_windows
    from logad.methods import get_method
    from logad.windows import read_windows

    cls = get_method(args.method)
    raw = load_config_file(args.config)
    raw = cls.apply_cli_overrides(raw, epochs=args.epochs, seed=args.seed, device=args.device)
    if args.no_progress and "show_progress" in cls.config_class.model_fields:
        raw["show_progress"] = False
    try:
        config = cls.make_config(raw)
    except ConfigError as exc:
        where = f" (from {args.config})" if args.config else ""
        raise ConfigError(f"{exc}{where}") from None
    seed = args.seed if args.seed is not None else int(getattr(config, "seed", 0))
    split_params = parse_split_params(args.split_param)

    windows = read_windows(args.windows)
    split = split_windows(windows, args.protocol, supervised=cls.supervised, seed=seed, **split_params)
    d = split.description
    print(f"read {len(windows)} windows from {args.windows}")
    print(
        f"split {args.protocol!r} (seed {seed}): train {d['num_train']} "
        f"(anomalous {d['num_train_anomalous']}), val {d['num_val']}, test {d['num_test']} "
        f"(anomalous {d['num_test_anomalous']})"
        + "".join(f", {k.removeprefix('num_')} {v}" for k, v in d.items()
                  if k.startswith("num_dropped") and v)
    )
    if "holdout" in d:
        print(f"held out {d['holdout']!r} (by {d['by']}; test part), trained on {', '.join(d['train_sources'])}")

    detector = cls(config)
    t0 = time.perf_counter()
    report = detector.fit(split.train, split.val)
    fit_s = time.perf_counter() - t0
    out = Path(args.output)
    detector.save(out)
    templates = Path(args.windows) / "templates.json"
    if templates.is_file():
        shutil.copyfile(templates, out / "templates.json")
    source_config = Path(args.windows) / "source.json"
    if source_config.is_file():  # how to split, mask and group raw lines when serving
        shutil.copyfile(source_config, out / "source.json")
    training = {
        "method": cls.name,
        "windows": str(Path(args.windows).resolve()),
        "protocol": args.protocol,
        "split_params": split_params,
        "seed": seed,
        "split": d,
        "fit": report.to_dict(),
    }
    (out / "training.json").write_text(json.dumps(training, indent=2, default=str) + "\n")
    print(f"fitted {cls.name} in {fit_s:.1f} s: {len(report.history)} epochs, best epoch "
          f"{report.best_epoch}{' (stopped early)' if report.stopped_early else ''}; "
          f"threshold {detector.threshold:.6g} ({detector.threshold_kind})")
    for note in report.notes:
        print(f"  {note}")

    result: dict[str, Any] = {}
    if len(split.test):
        t0 = time.perf_counter()
        scores = detector.score(split.test)
        score_s = time.perf_counter() - t0
        result = evaluate_scores(scores, split.test["label"], detector.threshold)
        print(f"test split: {result['num_windows']} windows scored in {score_s:.2f} s "
              f"({result['num_windows'] / max(score_s, 1e-9):.0f} windows/s), "
              f"{result['num_flagged']} flagged")
        if result["metrics"]:
            print(format_metrics_table(result, f"{detector.threshold_kind} (stored)"))
    print(f"model written to {out}" + (" (with templates.json)" if templates.is_file() else ""))
    if args.registry:
        metrics = {k: v for k, v in (result.get("metrics") or {}).items() if isinstance(v, int | float)}
        mv = registry.register(out, args.source, metrics=metrics, threshold=detector.threshold,
                               promote=args.promote)
        status = ", ".join(s for s, on in (("production", mv.production), ("serving", mv.serving)) if on)
        print(f"registered {mv.tag} in {registry.root}" + (f" ({status})" if status else ""))
    return 0
