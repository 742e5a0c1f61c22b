"""`logad serve`: run the HTTP detection service (Ray Serve) on what the registry promoted."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["register", "run"]

DEFAULT_CONFIG = Path("serve") / "config.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = subparsers.add_parser(
        "serve",
        help="serve the registry's models over HTTP (Ray Serve, autoscaling)",
        description=(
            "Deploy the logad Ray Serve application and keep it running until Ctrl-C. Each "
            "source is scored by its serving model in the registry (`logad registry promote` "
            "changes it; the service picks that up within a second, without a restart). "
            "SERVE_CONFIG is a Ray Serve config (the same file `serve run` / `serve deploy` "
            "take); default ./serve/config.yaml when it exists, else built-in defaults. "
            "Joins the Ray cluster at $RAY_ADDRESS, or starts a local one. "
            "API: POST /v1/sources/SOURCE/detect, GET /v1/sources, GET /healthz, OpenAPI at /docs."
        ),
    )
    p.add_argument("config", nargs="?", metavar="SERVE_CONFIG", help="Ray Serve config YAML")
    p.add_argument("--registry", metavar="PATH",
                   help="registry folder or URI (default $LOGAD_REGISTRY, else ./registry)")
    p.add_argument("--host", metavar="H", help="HTTP host (default: the config's, 127.0.0.1)")
    p.add_argument("--port", type=int, metavar="P", help="HTTP port (default: the config's, 8000)")
    p.add_argument("--detach", action="store_true",
                   help="return once deployed (only useful with $RAY_ADDRESS: a local Ray ends with this process)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Deploy, print the endpoints, then block until interrupted."""
    from logad.errors import ConfigError
    from logad.registry import ModelRegistry
    from logad.registry import default_registry_root as _root
    from logad.serving.local import deploy, load_serve_config

    config = args.config
    if config is None and DEFAULT_CONFIG.is_file():
        config = str(DEFAULT_CONFIG)
    root = _root(args.registry)
    registry = ModelRegistry(root)
    sources = [s for s in registry.sources() if registry.serving(s) is not None]
    if not sources:
        raise ConfigError(
            f"registry {root} has no source with a serving model; train one with "
            "`logad train ... --registry PATH --source NAME` or promote one with `logad registry promote`"
        )
    cfg = load_serve_config(config, registry=root, host=args.host, port=args.port)
    print(f"deploying logad serve ({config or 'built-in defaults'}) on registry {registry.root}")
    url = deploy(cfg)
    print(f"serving {len(sources)} source(s) at {url}: {', '.join(sources)}")
    print(f"  POST {url}/v1/sources/SOURCE/detect   GET {url}/v1/sources   docs {url}/docs")
    if args.detach:
        print("deployed; `serve status` shows it, `serve shutdown` stops it")
        return 0
    print("Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        print("shutting down")
        serve.shutdown()
    return 0
