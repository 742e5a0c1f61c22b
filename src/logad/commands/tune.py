"""`logad tune`: a Ray Tune sweep over one method, its winner registered."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tune`` subcommand."""
    p = subparsers.add_parser(
        "tune",
        help="run a Ray Tune sweep for one method and register the best model",
        description=(
            "Sweep a method's hyperparameters with Ray Tune (tune/<method>.yaml: space, metric, "
            "scheduler, resources per trial). Trials run concurrently as far as the cluster's "
            "resources allow, report every epoch (ASHA stops weak ones early) and never see the "
            "test split. The best trial is restored (or retrained) and registered. Joins the "
            "cluster at $RAY_ADDRESS, else starts a local Ray."
        ),
    )
    p.add_argument("config", metavar="CONFIG", help="sweep file, e.g. tune/fastlogad.yaml")
    p.add_argument("--windows", required=True, metavar="DIR", help="output folder of `logad ingest`")
    p.add_argument("--source", required=True, metavar="NAME", help="log source name (registry key)")
    p.add_argument("--num-samples", type=int, metavar="N", help="trials (default: the file's num_samples)")
    p.add_argument("--max-epochs", type=int, metavar="E", help="main-phase epochs per trial (default: the file's)")
    p.add_argument("--storage", default="tune-results", metavar="PATH",
                   help="results and checkpoints: a folder or a URI such as s3://bucket/tune "
                   "(shared storage on multi-node clusters; default ./tune-results)")
    p.add_argument("--name", metavar="NAME", help="experiment name (default METHOD-SOURCE)")
    p.add_argument("--registry", metavar="PATH", help="register the best model in this registry")
    p.add_argument("--promote", action="store_true",
                   help="make the registered model production and the source's serving model")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep at STORAGE/NAME")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from logad.errors import ConfigError
    from logad.tuning import format_trials, load_tune_spec, run_sweep

    if args.promote and not args.registry:
        raise ConfigError("--promote needs --registry PATH")
    spec = load_tune_spec(args.config)
    result = run_sweep(
        spec, args.windows, args.source, num_samples=args.num_samples, max_epochs=args.max_epochs,
        storage=args.storage, name=args.name, registry=args.registry, promote=args.promote,
        resume=args.resume, verbose=0,
    )
    print(format_trials(result))
    print(f"{len(result.trials)} trials in {result.wall_s:.0f} s ({3600 * len(result.trials) / max(result.wall_s, 1e-9):.0f}"
          f" trials/hour), {result.stopped_early} stopped early, up to {result.max_concurrent_seen} at once; "
          f"results in {result.experiment_path}")
    print(f"best: {result.best.trial_id} with {result.metric} = {result.best.best_metric:.5g}; "
          f"model in {result.model_dir}")
    if result.registered is not None:
        mv = result.registered
        status = ", ".join(s for s, on in (("production", mv.production), ("serving", mv.serving)) if on)
        print(f"registered {mv.tag}" + (f" ({status})" if status else ""))
    return 0
