"""Sweep throughput: trials per hour for tune/fastlogad.yaml on this machine's CPUs.

Ingests the bundled HDFS sample once (bench/scratch/hdfs_sample), then runs the
sweep file's search space with a bounded budget (``--num-samples`` trials of at
most ``--max-epochs`` HST epochs, ASHA as in the file, one CPU per trial so
trials run side by side) under the chronological protocol (the file's
``fastlogad`` protocol needs the 2% sample's 4,855 training normals; the
bundled sample has fewer). Reports wall time, trials per hour, how many trials
ran at once and how many ASHA stopped early.

    python bench/tune_throughput.py --num-samples 8 --max-epochs 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, record  # noqa: E402

WORK = ROOT / "bench" / "scratch"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-samples", type=int, default=8)
    ap.add_argument("--max-epochs", type=int, default=4)
    ap.add_argument("--cpus-per-trial", type=float, default=1.0)
    ap.add_argument("--no-record", action="store_true", help="print only; record no run (bench/results, docs/benchmarks.md)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_ADDRESS", "local")  # a fresh local Ray, never another job's cluster on this host

    from logad.pipelines.ingest import run_ingest
    from logad.ray_env import init_ray
    from logad.sources.config import load_source_config
    from logad.tuning import format_trials, load_tune_spec, run_sweep

    init_ray(progress=False)
    import ray

    windows = WORK / "hdfs_sample"
    if not (windows / "windows").is_dir():
        data = resources.files("logad") / "data"
        run_ingest(load_source_config(ROOT / "data_pipelines" / "hdfs.yaml"), [str(data / "hdfs_sample.log.zst")],
                   str(windows), labels=str(data / "hdfs_sample_labels.csv"), progress=False, log=lambda _: None)
    spec = load_tune_spec(ROOT / "tune" / "fastlogad.yaml")
    spec = spec.model_copy(update={
        "protocol": "chronological", "split_params": {},
        "resources_per_trial": spec.resources_per_trial.model_copy(update={"cpu": args.cpus_per_trial}),
    })
    storage = Path(tempfile.mkdtemp(prefix="logad-tune-bench-"))
    try:
        result = run_sweep(spec, windows, "hdfs", num_samples=args.num_samples, max_epochs=args.max_epochs,
                           storage=storage, log=lambda _: None, verbose=0)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    per_hour = 3600 * len(result.trials) / result.wall_s
    table = format_trials(result)
    md = (
        f"tune/fastlogad.yaml's space, {args.num_samples} trials of at most {args.max_epochs} HST epochs "
        f"(+ {spec.config.get('warmup_epochs', 0)} warm-up), ASHA (grace {spec.scheduler.grace_period}, "
        f"factor {spec.scheduler.reduction_factor:g}), {args.cpus_per_trial:g} CPU per trial, on the bundled "
        f"HDFS sample (chronological split), Ray with {cpus} CPUs and {gpus} GPUs.\n\n"
        f"| trials | wall s | trials/hour | most at once | stopped early |\n|---:|---:|---:|---:|---:|\n"
        f"| {len(result.trials)} | {result.wall_s:.0f} | {per_hour:.0f} | {result.max_concurrent_seen} | "
        f"{result.stopped_early} |\n\n```\n{table}\n```\n\n"
        "Fractional-GPU trials (`gpu: 0.25`, four per GPU) were not measured: no GPU on this machine."
    )
    print(md)
    if not args.no_record:
        record("Tune sweep throughput (FastLogAD, CPU trials)", md,
               {"trials": len(result.trials), "wall_s": result.wall_s, "trials_per_hour": per_hour,
                "max_concurrent": result.max_concurrent_seen, "stopped_early": result.stopped_early,
                "cpus": cpus, "gpus": gpus, "num_samples": args.num_samples, "max_epochs": args.max_epochs},
               "tune_throughput.json")


if __name__ == "__main__":
    main()
