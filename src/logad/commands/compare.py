"""`logad compare`: several methods, one windows table, one split, one table of results.

Line-level methods (``Detector.line_level``) also get a second table, over lines: one row
per distinct input line of the test part (``line_frame``), at the method's line threshold.
With the ``leave-one-source-out`` protocol and no ``holdout`` parameter every source is
held out in turn (one fold each): one table per fold, naming the held-out source, and
the mean over folds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["compare_folds", "compare_methods", "format_comparison", "register", "run"]

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
            "never a result), train time and inference time per window, and under it the F1 of flagging "
            "every test window (the floor where anomalies are common). DeepLog is also shown at the "
            "paper's k = 9, labelled as such. Line-level methods (unseen) get a second table over the "
            "distinct input lines of the test part, at their line threshold, where the table labels lines. "
            "With --protocol leave-one-source-out and no holdout split parameter, every source is held "
            "out in turn: one table per fold, naming the held-out source, and the mean over folds."
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


def _row(result: dict[str, Any], threshold: float, train_s: float, infer_ms: float) -> dict[str, float]:
    """One run's figures (metrics at ``threshold``, the oracle bound, timings)."""
    import numpy as np

    m = result["metrics"] or {}
    oracle = (result.get("oracle_upper_bound") or {}).get("f1", float("nan"))
    return {**{k: float(m.get(k, np.nan)) for k in COLUMNS}, "oracle_f1": float(oracle),
            "threshold": float(threshold), "train_s": train_s, "infer_ms_per_window": infer_ms}


def compare_methods(windows, methods: list[str], protocol: str, split_params: dict[str, Any], seeds: list[int],
                    configs: dict[str, dict[str, Any]], *, device: str | None = None, keep_scores: bool = False,
                    keep_fits: bool = False, log=print) -> dict[str, Any]:
    """Fit and score every method per seed on one split; returns per-run figures and aggregates.

    Line-level methods are also scored per line; where the test part labels lines, their
    line figures are under ``lines`` (``runs`` and ``aggregate``, as for windows).
    ``keep_scores`` keeps, per seed, the test part (``test``), each method's window scores and
    threshold (by name) and, for line-level methods, its line scores and line threshold
    (under ``lines``, by name). ``keep_fits`` keeps each fit's report extras (per method, a list over seeds) under
    ``fits``: how a method chose its threshold and what it found on the way.
    """
    from logad.errors import DataError
    from logad.evaluation.lines import evaluate_lines, line_frame
    from logad.evaluation.metrics import aggregate_runs, flag_all_f1
    from logad.evaluation.report import evaluate_scores
    from logad.evaluation.splits import split_windows
    from logad.methods import get_method
    from logad.methods.deeplog import PAPER_K

    classes = {m: get_method(m) for m in methods}
    runs: dict[str, list[dict[str, float]]] = {}
    line_runs: dict[str, list[dict[str, float]]] = {}
    kept: dict[int, dict[str, Any]] = {}
    fits: dict[str, list[dict[str, Any]]] = {}
    floors: list[float] = []
    for seed in seeds:
        splits: dict[bool, Any] = {}
        for name, cls in classes.items():
            if cls.supervised not in splits:
                splits[cls.supervised] = split_windows(windows, protocol, supervised=cls.supervised, seed=seed,
                                                       **split_params)
            split = splits[cls.supervised]
            if not len(split.test):
                raise DataError(f"the {protocol!r} split leaves no labelled test windows"
                                + (f" (held out: {split.description['holdout']})" if "holdout" in split.description
                                   else ""))
            raw = cls.apply_cli_overrides(configs.get(name, {}), seed=seed if "seed" in cls.config_class.model_fields
                                          else None, device=device if "device" in cls.config_class.model_fields else None)
            if "show_progress" in cls.config_class.model_fields:
                raw["show_progress"] = False
            det = cls(raw)
            t0 = time.perf_counter()
            report = det.fit(split.train, split.val, progress=False)
            train_s = time.perf_counter() - t0
            if keep_fits:
                fits.setdefault(name, []).append(dict(report.extra))
            t0 = time.perf_counter()
            if det.line_level:  # an instance's answer: a model may score lines only when trained on them
                scores, line_scores = det.score_with_lines(split.test)
            else:
                scores, line_scores = det.score(split.test), None
            infer_ms = 1e3 * (time.perf_counter() - t0) / max(len(split.test), 1)
            if keep_scores:
                kept.setdefault(seed, {"test": split.test})[name] = (scores, det.threshold)
                if line_scores is not None:
                    kept[seed].setdefault("lines", {})[name] = (line_scores, det.line_threshold)
            rows = [(name, det.threshold)]
            if name == "deeplog":
                rows.append((f"deeplog (paper k={PAPER_K})", float(PAPER_K)))
            for label, threshold in rows:
                result = evaluate_scores(scores, split.test["label"], threshold)
                runs.setdefault(label, []).append(_row(result, threshold, train_s, infer_ms))
            f1 = runs[name][-1]["f1"]
            line_note = ""
            if line_scores is not None:
                line_result = evaluate_lines(line_frame(split.test, line_scores, det.line_threshold),
                                             det.line_threshold)
                if line_result["metrics"]:
                    line_runs.setdefault(name, []).append(_row(line_result, det.line_threshold, train_s, infer_ms))
                    line_note = f", line F1 {line_runs[name][-1]['f1']:.4f} ({line_result['num_lines']} lines)"
                else:
                    line_note = ", no labelled lines"
            log(f"seed {seed}: {name:<18} F1 {f1:.4f}{line_note}  (train {train_s:.1f} s, {infer_ms:.3f} ms/window, "
                f"{len(split.test)} test windows)")
        test_labels = split.test["label"].dropna()
        floors.append({"f1": flag_all_f1(len(test_labels), int((test_labels == 1).sum()))})
    d = split.description
    out = {"protocol": protocol, "split_params": split_params, "seeds": seeds,
           "split": {k: v for k, v in d.items() if isinstance(v, int | float | str)},
           "runs": runs, "aggregate": {k: aggregate_runs(v) for k, v in runs.items()},
           "flag_all_f1": aggregate_runs(floors)["f1"]}
    if line_runs:
        out["lines"] = {"runs": line_runs, "aggregate": {k: aggregate_runs(v) for k, v in line_runs.items()}}
    if keep_scores:
        out["scores"] = kept
    if keep_fits:
        out["fits"] = fits
    return out


def _mean_over_folds(aggregates: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per method, the mean and (sample) std over folds of each fold's mean; a fold where a
    figure is undefined (AUROC of a one-class test part) is left out of it (``n`` counts
    the folds used)."""
    import numpy as np

    out: dict[str, dict[str, Any]] = {}
    for agg in aggregates:
        for method in agg:
            out.setdefault(method, {})
    for method in out:
        keys = {k for agg in aggregates if method in agg for k in agg[method]}
        for key in sorted(keys):
            values = np.asarray([agg[method][key]["mean"] for agg in aggregates
                                 if method in agg and key in agg[method]], dtype=float)
            values = values[np.isfinite(values)]
            out[method][key] = {
                "mean": float(values.mean()) if len(values) else float("nan"),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "n": int(len(values)),
            }
    return out


def compare_folds(windows, methods: list[str], split_params: dict[str, Any], seeds: list[int],
                  configs: dict[str, dict[str, Any]], *, device: str | None = None, keep_scores: bool = False,
                  log=print) -> dict[str, Any]:
    """Leave-one-source-out over every source: :func:`compare_methods` once per held-out
    source (all seeds and methods), then the mean over folds.

    A source whose windows are all unlabelled cannot be tested: its fold is skipped and
    listed under ``skipped_folds``.
    """
    from logad.errors import DataError
    from logad.evaluation.metrics import aggregate_runs
    from logad.evaluation.splits import LOSO, protocol_sources, split_windows

    sources = protocol_sources(windows, by=split_params.get("by", "auto"))
    folds: list[dict[str, Any]] = []
    skipped: list[str] = []
    for source in sources:
        params = {**split_params, "holdout": source}
        probe = split_windows(windows, LOSO, supervised=False, seed=seeds[0], **params)
        if not len(probe.test):
            log(f"held out {source}: no labelled windows to test; fold skipped")
            skipped.append(source)
            continue
        d = probe.description
        log(f"held out {source}: train {d['num_train']} windows from {', '.join(d['train_sources'])}, "
            f"val {d['num_val']}, test {d['num_test']} ({d['num_test_anomalous']} anomalous)")

        def fold_log(msg: str, source: str = source) -> None:
            log(f"[{source}] {msg}")

        result = compare_methods(windows, methods, LOSO, params, seeds, configs, device=device,
                                 keep_scores=keep_scores, log=fold_log)
        folds.append({"holdout": source, **result})
    if not folds:
        raise DataError(f"no source has labelled windows to test (sources: {', '.join(sources)})")
    out: dict[str, Any] = {
        "protocol": LOSO, "split_params": split_params, "seeds": seeds, "sources": sources,
        "folds": folds, "skipped_folds": skipped,
        "aggregate": _mean_over_folds([f["aggregate"] for f in folds]),
        "flag_all_f1": aggregate_runs([{"f1": f["flag_all_f1"]["mean"]} for f in folds])["f1"],
    }
    line_folds = [f["lines"]["aggregate"] for f in folds if "lines" in f]
    if line_folds:
        out["lines"] = {"aggregate": _mean_over_folds(line_folds)}
    return out


def format_table(aggregate: dict[str, dict[str, Any]]) -> str:
    """One Markdown table: a row per method (mean ± std)."""
    head = ("| method | precision | recall | F1 (label-free) | AUROC | AUPR | oracle F1 (upper bound) "
            "| train s | infer ms/window |")
    lines = [head, "|---|---|---|---|---|---|---|---:|---:|"]
    def ms(agg: dict[str, Any], key: str, digits: int = 4) -> str:
        return f"{agg[key]['mean']:.{digits}f} ± {agg[key]['std']:.{digits}f}"

    for name, agg in aggregate.items():
        lines.append(f"| {name} | {ms(agg, 'precision')} | {ms(agg, 'recall')} | **{ms(agg, 'f1')}** | "
                     f"{ms(agg, 'auroc')} | {ms(agg, 'aupr')} | {ms(agg, 'oracle_f1')} | {agg['train_s']['mean']:.1f} | "
                     f"{agg['infer_ms_per_window']['mean']:.3f} |")
    return "\n".join(lines)


LINES_NOTE = ("Lines (line-level methods; one row per distinct input line of the test part, at the method's "
              "line threshold, against the lines' own labels)")


def _tables(result: dict[str, Any], where: str = "") -> str:
    from logad.evaluation.metrics import format_mean_std

    text = format_table(result["aggregate"])
    floor = result.get("flag_all_f1")
    if floor:
        text += (f"\n\nFlagging every test window: F1 {format_mean_std(floor)} (the floor a method has to "
                 "beat where anomalies are common).")
    if "lines" in result:
        text += f"\n\n{LINES_NOTE}{where}:\n\n" + format_table(result["lines"]["aggregate"])
    return text


def format_comparison(result: dict[str, Any]) -> str:
    """The comparison as Markdown: the window table (mean ± std over seeds), the line table
    of line-level methods beside it; for leave-one-source-out folds, both per fold (naming
    the held-out source) and their mean over folds."""
    if "folds" not in result:
        return _tables(result)
    parts = []
    for fold in result["folds"]:
        d = fold["split"]
        parts.append(f"### Held out: `{fold['holdout']}`\n\n"
                     f"Test: every labelled window of `{fold['holdout']}` ({d.get('num_test')} windows, "
                     f"{d.get('num_test_anomalous')} anomalous); train {d.get('num_train')}, val {d.get('num_val')} "
                     f"from the other sources.\n\nWindows, held out `{fold['holdout']}`:\n\n"
                     + _tables(fold, f", held out `{fold['holdout']}`"))
    n = len(result["folds"])
    held = ", ".join(f"`{f['holdout']}`" for f in result["folds"])
    parts.append(f"### Mean over {n} folds\n\nMean ± std over folds (held out in turn: {held}) of each fold's "
                 "mean over seeds.\n\nWindows:\n\n" + _tables(result, ", mean over folds"))
    if result.get("skipped_folds"):
        parts.append("Skipped (no labelled windows to test): "
                     + ", ".join(f"`{s}`" for s in result["skipped_folds"]))
    return "\n\n".join(parts)


def run(args: argparse.Namespace) -> int:
    from logad.commands.train import load_config_file, parse_split_params
    from logad.errors import ConfigError
    from logad.evaluation.splits import LOSO
    from logad.windows import read_windows

    configs: dict[str, dict[str, Any]] = {}
    for item in args.config:
        method, sep, file = item.partition("=")
        if not sep or method not in args.methods:
            raise ConfigError(f"--config expects METHOD=FILE for one of {', '.join(args.methods)}; got {item!r}")
        configs[method] = load_config_file(file)
    windows = read_windows(args.windows)
    print(f"read {len(windows)} windows from {args.windows}; protocol {args.protocol}, seeds {args.seeds}")
    split_params = parse_split_params(args.split_param)
    if args.protocol == LOSO and "holdout" not in split_params:
        result = compare_folds(windows, args.methods, split_params, args.seeds, configs, device=args.device)
        scope = f", every source held out in turn ({', '.join(result['sources'])})"
    else:
        result = compare_methods(windows, args.methods, args.protocol, split_params, args.seeds, configs,
                                 device=args.device)
        scope = f", held out `{split_params['holdout']}`" if args.protocol == LOSO else ""
    table = format_comparison(result)
    print(table)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(
            f"# Comparison on {args.windows}\n\nProtocol `{args.protocol}`{scope}, seeds {args.seeds}; thresholds "
            "chosen without test labels (oracle F1: tuned on test, an upper bound only).\n\n" + table + "\n")
        (out / "comparison.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"written to {out}/comparison.md and comparison.json")
    return 0
