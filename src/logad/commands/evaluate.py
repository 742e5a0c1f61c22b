"""`logad evaluate`: score a windows table with a saved model and report metrics."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["label_note", "register", "run"]


def label_note(windows_dir: str) -> str | None:
    """What a report must say about the labels of an ingest output, when they are not
    ground truth (keyword labels are a heuristic); None otherwise."""
    src = Path(windows_dir) / "source.json"
    if not src.is_file():
        return None
    try:
        labels = json.loads(src.read_text()).get("labels") or {}
    except (OSError, json.JSONDecodeError):
        return None
    if labels.get("kind") == "keywords":
        return ("labels are heuristic: a line is anomalous when its lower-cased message contains a term of "
                "its file type's keyword list (the CoLog rule), not ground truth")
    return None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser(
        "evaluate",
        help="score windows with a saved model and report precision/recall/F1/AUROC/AUPR",
        description=(
            "Score a windows table with MODEL_DIR at its stored threshold (label-free for the unsupervised methods, tuned on validation labels for supervised ones). With no "
            "--protocol every window of DIR is test data (e.g. a separate holdout table); with "
            "--protocol P the table is split as in training (seed and parameters from "
            "MODEL_DIR/training.json unless given) and only the test part is scored. The "
            "oracle (test-tuned) F1 is printed as an upper bound, never as the result."
        ),
    )
    p.add_argument("model", metavar="MODEL_DIR", help="a model directory written by `logad train`")
    p.add_argument("--windows", required=True, metavar="DIR", help="output folder of `logad ingest`")
    p.add_argument("--protocol", default=None, metavar="P", help="evaluate on this protocol's test split")
    p.add_argument("--split-param", action="append", default=[], metavar="KEY=VALUE",
                   help="protocol parameter, repeatable (default: as in training.json)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="split seed (default: the training seed)")
    p.add_argument("--report", metavar="DIR",
                   help="write report.md, report.json, scores.parquet and plots here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score, print metrics, optionally write a report; returns the exit status."""
    from logad.commands.train import parse_split_params
    from logad.evaluation.report import evaluate_scores, format_metrics_table, write_report
    from logad.evaluation.splits import split_windows
    from logad.methods import load_detector
    from logad.windows import read_windows

    model_dir = Path(args.model)
    detector = load_detector(model_dir)
    training_file = model_dir / "training.json"
    training = json.loads(training_file.read_text()) if training_file.is_file() else {}
    windows = read_windows(args.windows)
    print(f"loaded {detector.name} model from {model_dir} "
          f"(threshold {detector.threshold:.6g}, {detector.threshold_kind})")
    print(f"read {len(windows)} windows from {args.windows}")

    counts: dict[str, object] = {}
    if args.protocol:
        params = parse_split_params(args.split_param)
        if not params and training.get("protocol") == args.protocol:
            params = dict(training.get("split_params") or {})
        elif "holdout" in (training.get("split_params") or {}) and training.get("protocol") == args.protocol:
            params.setdefault("holdout", training["split_params"]["holdout"])  # the source the model never saw
        seed = args.seed if args.seed is not None else int(training.get("seed", 0))
        split = split_windows(windows, args.protocol, supervised=detector.supervised, seed=seed, **params)
        test = split.test
        counts = {"protocol": args.protocol, "split_seed": seed, **split.description}
        print(f"split {args.protocol!r} (seed {seed}): scoring the test part, {len(test)} windows "
              f"({split.description['num_test_anomalous']} anomalous)"
              + (f", held out {split.description['holdout']!r}" if "holdout" in split.description else ""))
    else:
        test = windows
        counts = {"protocol": None}
        print("no --protocol: every window is test data")

    t0 = time.perf_counter()
    if detector.line_level:
        scores, line_scores = detector.score_with_lines(test)
    else:
        scores, line_scores = detector.score(test), None
    score_s = time.perf_counter() - t0
    num_lines = int(sum(len(x) for x in test["event_ids"]))
    timings = {"score_s": score_s,
               "windows_per_s": len(test) / max(score_s, 1e-9),
               "lines_per_s": num_lines / max(score_s, 1e-9)}
    result = evaluate_scores(scores, test["label"], detector.threshold)
    print(f"scored {len(test)} windows ({num_lines} lines) in {score_s:.2f} s "
          f"({timings['windows_per_s']:.0f} windows/s); {result['num_flagged']} flagged anomalous")
    if result["metrics"]:
        print(format_metrics_table(result, f"{detector.threshold_kind} (stored)"))
    else:
        print("no labelled windows: metrics skipped")
    lines = None
    if line_scores is not None:
        from logad.evaluation.lines import evaluate_lines, line_frame

        lines = line_frame(test, line_scores, detector.line_threshold)
        line_result = evaluate_lines(lines, detector.line_threshold)
        print(f"lines: {line_result['num_lines']} distinct input lines, {line_result['num_flagged']} flagged "
              f"(line threshold {detector.line_threshold:.6g}), {line_result['num_labelled']} labelled "
              f"({line_result['num_anomalous']} anomalous)")
        if line_result["metrics"]:
            print(format_metrics_table(line_result, f"{detector.threshold_kind} (stored)"))
        else:
            print("no labelled lines: line metrics skipped")
    note = label_note(args.windows)
    if note:
        print(f"note: {note}")
    if args.report:
        write_report(
            args.report, scores=scores, labels=test["label"], window_ids=test["window_id"],
            threshold=detector.threshold, method=detector.name,
            threshold_note=("label-free (chosen on normal validation windows, stored with the model)"
                            if not detector.supervised else
                            getattr(detector, "threshold_strategy", "") or detector.threshold_kind),
            counts=counts, timings=timings, extra={"model_dir": str(model_dir)},
            lines=lines, line_threshold=detector.line_threshold if lines is not None else None, label_note=note,
        )
        print(f"report written to {args.report} (report.md, report.json, scores.parquet"
              + (", line_scores.parquet" if lines is not None else "") + ", plots)")
    return 0
