"""`logad demo`: the main job end to end on the bundled HDFS sample and a local Ray."""

from __future__ import annotations

import argparse
import collections
from importlib import resources
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the main job end to end on bundled sample data (local Ray)",
        description="Ingest the bundled HDFS sample (43,512 lines, 2,228 blocks) with a local Ray, "
        "train and evaluate a small FastLogAD on it, register it in a model registry, serve it "
        "over HTTP with Ray Serve and send it a few real requests, printing what was found.",
    )
    p.add_argument("--output", "-o", default="demo-output", help="folder for everything the demo writes")
    p.add_argument("--config", default=None, help="source config (default: data_pipelines/hdfs.yaml)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs for the demo model")
    p.add_argument("--skip-train", action="store_true", help="stop after ingest")
    p.add_argument("--skip-serve", action="store_true", help="stop after training and evaluation")
    p.set_defaults(func=run)


def _find_config(explicit: str | None) -> Path:
    from logad.errors import ConfigError

    if explicit:
        return Path(explicit)
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        cand = base / "data_pipelines" / "hdfs.yaml"
        if cand.is_file():
            return cand
    raise ConfigError("cannot find data_pipelines/hdfs.yaml: run from the repo root or pass --config")


def run(args: argparse.Namespace) -> int:
    from logad.ray_env import init_ray
    from logad.sources.config import load_source_config

    config = load_source_config(_find_config(args.config))
    data = resources.files("logad") / "data"
    sample, labels = str(data / "hdfs_sample.log.zst"), str(data / "hdfs_sample_labels.csv")
    out = Path(args.output)
    print(f"== 1/5 ingest: {sample}\n   (a local Ray starts; config {args.config or 'data_pipelines/hdfs.yaml'})")
    init_ray(progress=False)
    from logad.parsing import TemplateStore
    from logad.pipelines.ingest import run_ingest, summary_lines
    from logad.windows import read_windows

    summary = run_ingest(config, [sample], str(out / "windows"), labels=labels, progress=False)
    print("\n".join(summary_lines(summary)))
    windows = read_windows(out / "windows")
    store = TemplateStore.load(out / "windows" / "templates.json")
    text = {t.id: t.text for t in store.templates}
    counts = collections.Counter(e for ids in windows["event_ids"] for e in ids)
    print("\n   most frequent templates:")
    for tid, n in counts.most_common(5):
        print(f"   {n:>8,}  {text.get(tid, '<unknown>')[:90]}")
    anomalous = windows[windows["label"] == 1]
    if len(anomalous):
        w = anomalous.iloc[0]
        print(f"\n   an anomalous block, {w.window_id} ({len(w.lines)} lines), ends with:")
        for line in w.lines[-3:]:
            print(f"     {line[:110]}")
    if args.skip_train:
        return 0
    return _train_and_evaluate(args, out)


def _train_and_evaluate(args: argparse.Namespace, out: Path) -> int:
    """Train a small FastLogAD on the ingested sample and evaluate it, through the CLI."""
    from logad.cli import main

    model, report = out / "model", out / "report"
    epochs = str(args.epochs or 10)
    registry = out / "registry"
    print(f"\n== 2/5 train: a small FastLogAD, chronological split, {epochs} epoch(s) (CPU is fine), "
          f"registered and promoted in {registry}")
    rc = main(["train", "--method", "fastlogad", "--windows", str(out / "windows"), "--output", str(model),
               "--protocol", "chronological", "--epochs", epochs, "--seed", "0", "--no-progress",
               "--registry", str(registry), "--source", "hdfs", "--promote"])
    if rc:
        return rc
    print(f"\n== 3/5 evaluate: the chronological test split at the label-free threshold → {report}")
    rc = main(["evaluate", str(model), "--windows", str(out / "windows"), "--protocol", "chronological",
               "--seed", "0", "--report", str(report)])
    if rc:
        return rc
    _tiny_sweep(out, registry)
    if not args.skip_serve:
        _serve_and_detect(out, registry)
    print(f"\ndone: windows in {out / 'windows'}, model in {model} (registry {registry}), "
          f"report in {report}/report.md")
    return 0


def _tiny_sweep(out: Path, registry: Path) -> None:
    """A 3-trial Ray Tune sweep (ASHA from the second epoch); the winner is promoted and served."""
    import shutil

    from logad.tuning import TuneSpec, format_trials, run_sweep

    spec = TuneSpec.model_validate({
        "method": "fastlogad", "metric": "val_bce", "mode": "min", "num_samples": 3, "max_epochs": 6,
        "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 2},
        "resources_per_trial": {"cpu": 1}, "protocol": "chronological",
        "config": {"hidden_size": 64, "num_layers": 1, "num_heads": 2, "intermediate_size": 128,
                   "warmup_epochs": 1},
        "space": {"hst_learning_rate": {"type": "loguniform", "low": 3e-4, "high": 1e-2},
                  "mask_ratio": {"type": "uniform", "low": 0.3, "high": 0.7}},
    })
    print("\n== 4/5 tune: a tiny Ray Tune sweep (3 trials of up to 6 HST epochs, ASHA), winner promoted")
    shutil.rmtree(out / "tune", ignore_errors=True)
    result = run_sweep(spec, out / "windows", "hdfs", storage=out / "tune", registry=str(registry),
                       promote=True, log=lambda msg: print(f"   {msg}"), verbose=0)
    print("\n".join(f"   {line}" for line in format_trials(result).splitlines()))
    print(f"   {len(result.trials)} trials in {result.wall_s:.0f} s, up to {result.max_concurrent_seen} at once; "
          f"registered {result.registered.tag} (production, serving)")


def _serve_and_detect(out: Path, registry: Path) -> None:
    """Serve the registry with Ray Serve and post real test-period lines to it over HTTP."""
    from logad.serving.local import serve_and_probe
    from logad.windows import read_windows

    windows = read_windows(out / "windows").sort_values("start", kind="stable")
    late = windows.iloc[len(windows) * 3 // 4:]  # from the test part of the timeline
    picked = [*late[late["label"] == 1].head(3).itertuples(), *late[late["label"] == 0].head(5).itertuples()]
    lines = [line for w in picked for line in w.lines]
    labels = {w.window_id: int(w.label) for w in picked}
    print(f"\n== 5/5 serve: Ray Serve on 127.0.0.1, then POST /v1/sources/hdfs/detect with "
          f"{len(lines)} raw lines of {len(picked)} test-period blocks")
    reply = serve_and_probe(str(registry), "hdfs", lines, log_level="WARNING",
                           log=lambda msg: print(f"   {msg}"))
    model = reply.get("model", {})
    summary = reply["summary"]
    print(f"   {reply['url']} answered with model {model.get('method')} v{model.get('version')}: "
          f"{summary.get('lines')} lines → {len(reply['windows'])} windows, "
          f"{summary.get('anomalous_windows')} anomalous ({reply['timing_ms']['total']:.0f} ms)")
    print(f"   {'block':<28} {'score':>9} {'threshold':>9}  verdict    label")
    for w in reply["windows"]:
        label = labels.get(w["window_id"])
        print(f"   {w['window_id']:<28} {w['score']:>9.4f} {w['threshold']:>9.4f}  "
              f"{'ANOMALY' if w['verdict'] == 'anomalous' else 'normal':<9}  "
              f"{'anomalous' if label == 1 else 'normal' if label == 0 else '?'}")
        for ev in (w.get("evidence") or [])[:2]:
            print(f"      drove the score: {ev['line'][:100]}")
