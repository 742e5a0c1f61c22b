"""`logad data`: download public datasets and prepare shipped layouts for ingest."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="download Loghub datasets; prepare Liberty / Hadoop layouts")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = sub.add_parser("download", help="download and unpack a full Loghub dataset (size and MD5 checked)")
    d.add_argument("name", help="dataset: android, apache, bgl, hadoop, hdfs, hpc, linux, mac, openssh, ... ")
    d.add_argument("--dest", default="data/loghub", help="where to put it (default data/loghub)")
    d.set_defaults(func=run)
    pr = sub.add_parser("prepare", help="turn a shipped layout into raw logs that `logad ingest` reads")
    pr.add_argument("kind", choices=["liberty", "hadoop"])
    pr.add_argument("inputs", nargs="+", help="liberty: the CSV file(s); hadoop: the .tar(.zst) and abnormal_label.txt")
    pr.add_argument("--output", "-o", required=True, help="folder to write")
    pr.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from logad.errors import DataError
    from logad.sources import datasets

    if args.data_command == "download":
        def progress(done: int, total: int) -> None:
            if total:
                print(f"\r  {done / 2**20:,.0f} / {total / 2**20:,.0f} MiB", end="", file=sys.stderr)

        path = datasets.download_loghub(args.name, args.dest, progress=progress)
        print(f"\n{args.name} is in {path}")
        return 0
    if args.kind == "liberty":
        out, unaligned = datasets.prepare_liberty(args.inputs, args.output)
        if unaligned:
            print(f"warning: {unaligned:,} row(s) had fewer messages than labels (a truncated copy); "
                  "their lines carry the row's label", file=sys.stderr)
        print(f"wrote {out}; ingest it with: logad ingest data_pipelines/liberty.yaml {out} --output DIR")
        return 0
    if len(args.inputs) != 2:
        raise DataError("hadoop needs two inputs: the archive and abnormal_label.txt")
    logs, labels = datasets.prepare_hadoop(args.inputs[0], args.inputs[1], args.output)
    print(f"logs in {logs}, labels in {labels}; ingest with: "
          f"logad ingest data_pipelines/hadoop_apps.yaml {logs} --labels {labels} --output DIR")
    return 0
