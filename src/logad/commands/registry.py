"""`logad registry list|show|promote`: what the model registry holds, and what is production."""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run_list", "run_promote", "run_show"]


def _add_registry_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry", metavar="PATH",
        help="registry root: a folder or a URI such as s3://bucket/registry "
        "(default: $LOGAD_REGISTRY, else ./registry)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``registry`` subcommand and its three actions."""
    p = subparsers.add_parser(
        "registry",
        help="list, show and promote registered model versions",
        description=(
            "The registry keeps immutable, versioned models per (source, method). Each "
            "(source, method) has a production version, and each source has one serving "
            "model: the one `logad serve` scores it with."
        ),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", help="list registered versions", description="List every "
                            "registered version (or one source's), marking production and serving.")
    ls.add_argument("--source", metavar="NAME", help="only this source")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_registry_arg(ls)
    ls.set_defaults(func=run_list)

    show = actions.add_parser("show", help="show one version's manifest", description="Show one "
                              "version's manifest: threshold, metrics, the sweep it came from, files.")
    show.add_argument("source", metavar="SOURCE")
    show.add_argument("method", metavar="METHOD", nargs="?", help="default: the source's serving model")
    show.add_argument("version", metavar="VERSION", nargs="?", help="default: production")
    _add_registry_arg(show)
    show.set_defaults(func=run_show)

    promote = actions.add_parser("promote", help="make a version production", description=(
        "Make VERSION the production version of SOURCE/METHOD and the model the HTTP service "
        "scores SOURCE with. A running `logad serve` picks it up without a restart."))
    promote.add_argument("source", metavar="SOURCE")
    promote.add_argument("method", metavar="METHOD")
    promote.add_argument("version", metavar="VERSION", help="a version number, e.g. 3 or v3")
    promote.add_argument("--no-serve", action="store_true",
                         help="set the method's production version only; keep the source's serving model")
    _add_registry_arg(promote)
    promote.set_defaults(func=run_promote)


def _open(args: argparse.Namespace):
    from logad.registry import ModelRegistry, default_registry_root

    return ModelRegistry(default_registry_root(args.registry))


def run_list(args: argparse.Namespace) -> int:
    reg = _open(args)
    versions = reg.list(args.source)
    if args.json:
        print(json.dumps([v.to_dict() for v in versions], indent=2, default=str))
        return 0
    if not versions:
        print(f"registry {reg.root}: no models" + (f" for source {args.source!r}" if args.source else ""))
        return 0
    print(f"registry {reg.root}")
    header = f"{'source':<16} {'method':<18} {'version':>7}  {'created (UTC)':<20} {'threshold':>11}  {'f1':>6}  status"
    print(header)
    print("-" * len(header))
    for v in versions:
        status = ", ".join(s for s, on in (("production", v.production), ("serving", v.serving)) if on)
        f1 = v.metrics.get("f1")
        f1_text = "-" if f1 is None else f"{f1:.3f}"
        thr = f"{v.threshold:.5g}" if v.threshold is not None else "-"
        print(f"{v.source:<16} {v.method:<18} {v.version:>7}  {v.created_at:<20} {thr:>11}  "
              f"{f1_text:>6}  {status}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    reg = _open(args)
    mv = reg.get(args.source, args.method, args.version)
    print(json.dumps(mv.to_dict(), indent=2, default=str))
    return 0


def run_promote(args: argparse.Namespace) -> int:
    reg = _open(args)
    mv = reg.promote(args.source, args.method, args.version, serve=not args.no_serve)
    print(f"promoted {mv.tag} to production" + ("; it now serves this source" if mv.serving else ""))
    return 0
