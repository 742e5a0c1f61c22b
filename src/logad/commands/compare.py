"""`logad compare`: several methods, one windows table, one split, one table of results."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["compare_methods", "register", "run"]

COLUMNS = ("precision", "recall", "f1", "auroc", "aupr")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` subcommand."""
    from logad.evaluation.splits import DEFAULT_PROTOCOL

    p = subparsers.add_parser(
        "compare",
        help="train and score several methods on the same split and tabulate them",
        description=(
            "For each seed, split the windows table once, then fit every method on the same training "
            "part (normal windows for unsupervised methods), pick each threshold without test labels, "
            "and score the same test part. Prints and writes one table: P, R, F1, AUROC, AUPR at the "
            "label-free threshold (mean ± std over seeds), the oracle F1 (test-tuned: an upper bound, "
            "never a result), train time and inference time per window. DeepLog is also shown at the "
            "paper's k = 9, labelled as such."
        ),
    )
    p.add_argument("--windows", required=True, metavar="DIR", help="output folder of `logad ingest`")
    p.add_argument("--methods", nargs="+", required=True, metavar="METHOD",
                   help="e.g. fastlogad unseen deeplog pca isolation-forest")
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, metavar="P", help=f"split protocol (default {DEFAULT_PROTOCOL})")
    p.add_argument("--split-param", action="append", default=[], metavar="KEY=VALUE", help="protocol parameter, repeatable")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="seeds (split and models)")
    p.add_argument("--config", action="append", default=[], metavar="METHOD=FILE",
                   help="method config file (JSON/YAML), repeatable")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="for methods that have a device setting")
    p.add_argument("--output", "-o", metavar="DIR", help="write comparison.md and comparison.json here")
    p.set_defaults(func=run)


def compare_methods(windows, methods: list[str], protocol: str, split_params: dict[str, Any], seeds: list[int],
                    configs: dict[str, dict[str, Any]], *, device: str | None = None, keep_scores: bool = False,
                    log=print) -> dict[str, Any]:
    """Fit and score every method per seed on one split; returns per-run figures and aggregates."""
    import numpy as np

    from logad.evaluation.metrics import aggregate_runs
    from logad.evaluation.report import evaluate_scores
    from logad.evaluation.splits import split_windows
    from logad.methods import get_method
    from logad.methods.deeplog import PAPER_K

    classes = {m: get_method(m) for m in methods}
    runs: dict[str, list[dict[str, float]]] = {}
    kept: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        splits: dict[bool, Any] = {}
        for name, cls in classes.items():
            if cls.supervised not in splits:
                splits[cls.supervised] = split_windows(windows, protocol, supervised=cls.supervised, seed=seed,
                                                       **split_params)
            split = splits[cls.supervised]
            raw = cls.apply_cli_overrides(configs.get(name, {}), seed=seed if "seed" in cls.config_class.model_fields
                                          else None, device=device if "device" in cls.config_class.model_fields else None)
            if "show_progress" in cls.config_class.model_fields:
                raw["show_progress"] = False
            det = cls(raw)
            t0 = time.perf_counter()
            det.fit(split.train, split.val, progress=False)
            train_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            scores = det.score(split.test)
            infer_ms = 1e3 * (time.perf_counter() - t0) / max(len(split.test), 1)
            if keep_scores:
                kept.setdefault(seed, {"test": split.test})[name] = (scores, det.threshold)
            rows = [(name, det.threshold)]
            if name == "deeplog":
                rows.append((f"deeplog (paper k={PAPER_K})", float(PAPER_K)))
            for label, threshold in rows:
                result = evaluate_scores(scores, split.test["label"], threshold)
                m = result["metrics"] or {}
                oracle = (result.get("oracle_upper_bound") or {}).get("f1", float("nan"))
                runs.setdefault(label, []).append(
                    {**{k: float(m.get(k, np.nan)) for k in COLUMNS}, "oracle_f1": float(oracle),
                     "threshold": float(threshold), "train_s": train_s, "infer_ms_per_window": infer_ms})
            f1 = runs[name][-1]["f1"]
            log(f"seed {seed}: {name:<18} F1 {f1:.4f}  (train {train_s:.1f} s, {infer_ms:.3f} ms/window, "
                f"{len(split.test)} test windows)")
    d = split.description
    return {"protocol": protocol, "split_params": split_params, "seeds": seeds,
            "split": {k: v for k, v in d.items() if isinstance(v, int | float | str)},
            "runs": runs, "aggregate": {k: aggregate_runs(v) for k, v in runs.items()},
            **({"scores": kept} if keep_scores else {})}


def format_comparison(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table (mean ± std over seeds)."""
    head = ("| method | precision | recall | F1 (label-free) | AUROC | AUPR | oracle F1 (upper bound) "
            "| train s | infer ms/window |")
    lines = [head, "|---|---|---|---|---|---|---|---:|---:|"]
    def ms(agg: dict[str, Any], key: str, digits: int = 4) -> str:
        return f"{agg[key]['mean']:.{digits}f} ± {agg[key]['std']:.{digits}f}"

    for name, agg in result["aggregate"].items():
        lines.append(f"| {name} | {ms(agg, 'precision')} | {ms(agg, 'recall')} | **{ms(agg, 'f1')}** | "
                     f"{ms(agg, 'auroc')} | {ms(agg, 'aupr')} | {ms(agg, 'oracle_f1')} | {agg['train_s']['mean']:.1f} | "
                     f"{agg['infer_ms_per_window']['mean']:.3f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from logad.commands.train import load_config_file, parse_split_params
    from logad.errors import ConfigError
    from logad.windows import read_windows

    configs: dict[str, dict[str, Any]] = {}
    for item in args.config:
        method, sep, file = item.partition("=")
        if not sep or method not in args.methods:
            raise ConfigError(f"--config expects METHOD=FILE for one of {', '.join(args.methods)}; got {item!r}")
        configs[method] = load_config_file(file)
    windows = read_windows(args.windows)
    print(f"read {len(windows)} windows from {args.windows}; protocol {args.protocol}, seeds {args.seeds}")
    result = compare_methods(windows, args.methods, args.protocol, parse_split_params(args.split_param),
                             args.seeds, configs, device=args.device)
    table = format_comparison(result)
    print(table)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(
            f"# Comparison on {args.windows}\n\nProtocol `{args.protocol}`, seeds {args.seeds}; thresholds chosen "
            "without test labels (oracle F1: tuned on test, an upper bound only).\n\n" + table + "\n")
        (out / "comparison.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"written to {out}/comparison.md and comparison.json")
    return 0
