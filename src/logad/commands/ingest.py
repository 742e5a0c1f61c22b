"""`logad ingest`: raw logs → windows table, template store and run summary."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="read raw logs, parse them with Drain3 and write the windows table",
        description=(
            "Read files or folders of plain, .gz or .zst logs (local paths or URIs such as "
            "s3://bucket/logs/), split headers, mine or match Drain3 templates, group lines "
            "into windows and write DIR/windows/*.parquet, DIR/templates.json, "
            "DIR/source.json and DIR/summary.json."
        ),
    )
    p.add_argument("config", metavar="CONFIG", help="source config, e.g. data_pipelines/hdfs.yaml")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="files, folders or URIs to read")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="where to write the results")
    p.add_argument("--labels", metavar="FILE", help="label file (CSV: id,label); overrides the config's")
    p.add_argument(
        "--templates", metavar="FILE",
        help="match against this frozen template store (a templates.json, or an ingest output "
        "folder) instead of mining one; use the training run's store for test data",
    )
    p.add_argument("--shard-mb", type=int, default=64, help="byte-range size for splitting big plain files")
    p.add_argument("--partitions", type=int, default=None, help="shuffle partitions (default: from CPUs and size)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
    p.add_argument("--no-progress", action="store_true", help="hide Ray Data progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from logad.ray_env import init_ray
    from logad.sources.config import load_source_config

    config = load_source_config(args.config)  # validated before any Ray work starts
    templates = args.templates
    if templates and not templates.endswith(".json"):
        templates = templates.rstrip("/") + "/templates.json"
    init_ray(args.address, args.num_cpus, progress=not args.no_progress)
    from logad.pipelines.ingest import run_ingest, summary_lines

    summary = run_ingest(
        config,
        args.inputs,
        args.output,
        labels=args.labels,
        templates=templates,
        shard_bytes=args.shard_mb << 20,
        num_partitions=args.partitions,
        progress=not args.no_progress,
    )
    print("\n".join(summary_lines(summary)))
    return 0
