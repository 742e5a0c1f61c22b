"""The ``logad`` command line.

Every subcommand prints what it did, exits non-zero with a one-line reason on
failure, and has ``--help``. Subcommands live in :mod:`logad.commands`, one
module each, and are imported only when used (so ``logad --help`` is fast and
nothing imports Ray until a command needs it).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from logad import __version__
from logad.errors import LogadError

__all__ = ["build_parser", "main"]

# Order is the order `logad --help` shows.
_COMMANDS = ("ingest", "train", "evaluate", "compare", "tune", "registry", "serve", "detect", "data", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logad",
        description="Log anomaly detection at cluster scale on Ray: ingest logs into windows, "
        "train and evaluate detectors.",
    )
    parser.add_argument("--version", action="version", version=f"logad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"logad.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"logad.commands.{name}":
                continue  # a command not built into this version
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LogadError as exc:
        print(f"logad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"logad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
