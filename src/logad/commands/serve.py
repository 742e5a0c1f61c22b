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
            "API: POST /v1/sources/SOURCE/detect, GET /v1/sources, GET /healthz, OpenAPI at /docs. "
            "With --token-file or $LOGAD_API_TOKEN, /v1 requests must send `Authorization: Bearer TOKEN`."
        ),
    )
    p.add_argument("config", nargs="?", metavar="SERVE_CONFIG", help="Ray Serve config YAML")
    p.add_argument("--registry", metavar="PATH",
                   help="registry folder or URI (default $LOGAD_REGISTRY, else ./registry)")
    p.add_argument("--host", metavar="H", help="HTTP host (default: the config's, 127.0.0.1)")
    p.add_argument("--port", type=int, metavar="P", help="HTTP port (default: the config's, 8000)")
    p.add_argument("--token-file", metavar="PATH",
                   help="file holding the API token /v1 requests must send as `Authorization: Bearer` "
                   "(default $LOGAD_API_TOKEN; neither: the API is open). Only its SHA-256 is passed to Serve")
    p.add_argument("--detach", action="store_true",
                   help="return once deployed (only useful with $RAY_ADDRESS: a local Ray ends with this process)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Deploy, print the endpoints, then block until interrupted."""
    from logad.errors import ConfigError, LogadError
    from logad.registry import ModelRegistry
    from logad.registry import default_registry_root as _root
    from logad.serving.local import deploy, load_serve_config, stop

    digest = _token_digest(args.token_file)  # a bad token fails here, before anything starts
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
    if digest is not None:
        for app in cfg["applications"]:
            if str(app.get("import_path", "")).startswith("logad.serving"):
                app["args"].pop("api_token_file", None)  # the command line's token wins
                app["args"]["api_token_sha256"] = digest
    print(f"deploying logad serve ({config or 'built-in defaults'}) on registry {registry.root}")
    url = deploy(cfg)
    print(f"serving {len(sources)} source(s) at {url}: {', '.join(sources)}")
    print(f"  POST {url}/v1/sources/SOURCE/detect   GET {url}/v1/sources   docs {url}/docs")
    guarded = _requires_token(url)
    if digest is not None and not guarded:  # never leave an open service behind by mistake
        for app in cfg["applications"]:
            if str(app.get("import_path", "")).startswith("logad.serving"):
                stop(app["name"])
        raise LogadError(f"{url}/v1 answered without the API token it was deployed with, so the app "
                         "was deleted again; see `serve status` for what else runs there")
    if guarded:
        print("  /v1 requires the API token (Authorization: Bearer …); /healthz and /docs are open")
    else:
        host = cfg.get("http_options", {}).get("host", "127.0.0.1")
        exposed = " and it listens beyond this machine" if host not in ("127.0.0.1", "localhost", "::1") else ""
        print(f"  no API token: anyone who reaches {url} can use /v1{exposed} (see --token-file)")
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


def _token_digest(token_file: str | None) -> str | None:
    """SHA-256 of the token from ``--token-file`` or ``$LOGAD_API_TOKEN``; None for neither."""
    import os

    from logad.errors import ConfigError
    from logad.serving.auth import ENV_VAR, check_token, read_token_file, token_sha256

    try:
        if token_file is not None:
            return token_sha256(read_token_file(token_file))
        if os.environ.get(ENV_VAR) is not None:
            return token_sha256(check_token(os.environ[ENV_VAR], f"${ENV_VAR}"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return None


def _requires_token(url: str) -> bool:
    """Whether the deployed service refuses ``GET /v1/sources`` without a token."""
    import urllib.error
    import urllib.request

    from logad.serving.local import probe_context

    try:
        with urllib.request.urlopen(f"{url}/v1/sources", timeout=10, context=probe_context(url)):
            return False
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except (urllib.error.URLError, OSError):
        return False
