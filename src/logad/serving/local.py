"""Start and stop the HTTP service from Python (``logad serve``, the demo and the tests).

::

    from logad.serving.local import start, stop, serve_and_probe

    url = start("registry", port=8000)          # deploys serve/config.yaml's app, waits until healthy
    ...                                          # POST {url}/v1/sources/hdfs/detect
    stop()

    # or, in one call: start, score a batch of lines of one source, stop
    result = serve_and_probe("registry", "hdfs", lines)

Ray is joined at ``$RAY_ADDRESS`` or started locally when this process has not
initialised it yet.
"""

from __future__ import annotations

import copy
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from logad.errors import ConfigError, LogadError

__all__ = [
    "APP_NAME", "default_config", "deploy", "free_port", "load_serve_config", "post_lines", "probe_context",
    "replica_pids", "serve_and_probe",
    "start", "stop",
]

APP_NAME = "logad"
IMPORT_PATH = "logad.serving.app:build_app"


def default_config() -> dict[str, Any]:
    """The config used when no file is given: one app, deployments as the code defines them."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": 8000},
        "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH, "args": {}}],
    }


def load_serve_config(
    path: str | Path | None = None,
    *,
    registry: str | None = None,
    host: str | None = None,
    port: int | None = None,
    args: dict[str, Any] | None = None,
    deployments: dict[str, dict[str, Any]] | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Read a Serve config (Ray's format) and apply overrides to logad's application.

    Args:
        path: serve/config.yaml or similar; None for :func:`default_config`.
        registry: sets ``args.registry`` of every app built by logad (made absolute).
        host, port: set ``http_options``.
        args: more ``args`` for logad's app(s).
        deployments: per deployment name, options merged over the file's
            (e.g. ``{"Ingress": {"num_replicas": 1, "autoscaling_config": None}}``).
        runtime_env: Ray runtime environment keys merged over the app's ``runtime_env``
            (``env_vars`` merged key by key), e.g. ``{"env_vars": {...},
            "worker_process_setup_hook": "module.function"}`` for every replica.

    Raises:
        ConfigError: unreadable file, or a config with no logad application.
    """
    import yaml

    if path is None:
        config = default_config()
    else:
        p = Path(path)
        try:
            config = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read serve config {p}: {exc}") from exc
        if not isinstance(config, dict) or not isinstance(config.get("applications"), list):
            raise ConfigError(f"{p} is not a Ray Serve config (no 'applications' list)")
    config = copy.deepcopy(config)
    apps = [a for a in config["applications"] if str(a.get("import_path", "")).startswith("logad.serving")]
    if not apps:
        raise ConfigError(f"serve config {path} has no application with import_path {IMPORT_PATH}")
    if host is not None or port is not None:
        http = config.setdefault("http_options", {})
        if host is not None:
            http["host"] = host
        if port is not None:
            http["port"] = int(port)
    for app in apps:
        app_args = app.setdefault("args", {}) or {}
        app["args"] = app_args
        if registry is not None:
            app_args["registry"] = registry if "://" in registry else str(Path(registry).expanduser().resolve())
        app_args.update(args or {})
        if runtime_env:
            env = dict(app.get("runtime_env") or {})
            for k, v in runtime_env.items():
                env[k] = {**(env.get(k) or {}), **v} if k == "env_vars" else v
            app["runtime_env"] = env
        for name, opts in (deployments or {}).items():
            deps = app.setdefault("deployments", [])
            found = next((d for d in deps if d.get("name") == name), None)
            if found is None:
                found = {"name": name}
                deps.append(found)
            for k, v in opts.items():
                if v is None:
                    found.pop(k, None)
                else:
                    found[k] = v
            n = found.pop("num_replicas", None) if opts.get("num_replicas") is not None else None
            if n is not None:  # pinned: the code's autoscaling_config would otherwise still apply
                found["autoscaling_config"] = {"min_replicas": n, "max_replicas": n, "initial_replicas": n}
    return config


def deploy(config: dict[str, Any], *, wait_s: float = 180.0, log=print) -> str:
    """Deploy a Serve config on the current Ray (started if needed) and wait until healthy.

    Returns:
        The base URL of the HTTP service, e.g. ``http://127.0.0.1:8000`` (``https://`` where
        ``http_options`` name a certificate: Serve terminates TLS itself).

    Raises:
        LogadError: the config is invalid, or the app failed or did not become healthy in time.
    """
    from logad.ray_env import init_ray

    init_ray(progress=False)
    from pydantic import ValidationError
    from ray import serve
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    try:
        schema = ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        raise ConfigError(f"invalid serve config: {exc}") from None
    client = serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        grpc_options=None,
        global_logging_config=schema.logging_config,
    )
    client.deploy_apps(schema, _blocking=False)
    names = [a.name for a in schema.applications]
    http = client.http_config  # what Serve runs with: fixed when Serve first started here
    if (http.host, http.port) != (schema.http_options.host, schema.http_options.port):
        log(f"note: Serve already runs HTTP on {http.host}:{http.port} in this cluster; "
            "`serve shutdown` first to change it")
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    scheme = "https" if schema.http_options.ssl_certfile else "http"
    url = f"{scheme}://{host}:{http.port}"
    deadline = time.monotonic() + wait_s
    last = ""
    while time.monotonic() < deadline:
        status = serve.status()
        states = {n: status.applications.get(n) for n in names}
        failed = [(n, s) for n, s in states.items() if s is not None and s.status == "DEPLOY_FAILED"]
        if failed:
            n, s = failed[0]
            raise LogadError(f"serve app {n} failed to deploy: {s.message}")
        if all(s is not None and s.status == "RUNNING" for s in states.values()) and _healthy(url):
            return url
        now = ", ".join(f"{n} {getattr(s.status, 'value', s.status) if s else 'PENDING'}"
                        for n, s in states.items())
        if now != last:
            log(f"waiting for serve: {now}")
            last = now
        time.sleep(0.5)
    raise LogadError(f"serve app(s) {names} not healthy after {wait_s:.0f}s; see `serve status`")


def probe_context(url: str) -> ssl.SSLContext | None:
    """For this process's own probes of a service it deployed (``/healthz``, whether ``/v1``
    wants a token): over https, a context that takes the service's certificate as it is
    (often self-signed for a private address). The probes send no secret; clients verify."""
    if not url.startswith("https:"):
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2, context=probe_context(url)) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(
    registry: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: str | Path | None = None,
    args: dict[str, Any] | None = None,
    deployments: dict[str, dict[str, Any]] | None = None,
    runtime_env: dict[str, Any] | None = None,
    wait_s: float = 180.0,
    log_level: str | None = None,
    log=print,
) -> str:
    """Serve ``registry`` over HTTP on ``host:port``; returns the base URL once healthy.

    Uses ``config`` (Ray's Serve config format, e.g. serve/config.yaml) or
    the code's defaults, with the registry, host and port set from the arguments.
    ``port=0`` picks a free port; ``log_level`` (e.g. ``"WARNING"``) overrides
    the config's Serve log level for the controller, proxies and replicas. ``runtime_env``
    is merged over the app's Ray runtime environment (see :func:`load_serve_config`): the
    tests use it to run a ``worker_process_setup_hook`` in every replica.
    """
    if port == 0:
        port = free_port(host)
    cfg = load_serve_config(config, registry=str(registry), host=host, port=port, args=args,
                            deployments=deployments, runtime_env=runtime_env)
    if log_level is not None:
        for holder in (cfg, *cfg["applications"]):
            holder["logging_config"] = {**(holder.get("logging_config") or {}), "log_level": log_level}
    return deploy(cfg, wait_s=wait_s, log=log)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind((host if host not in ("0.0.0.0", "") else "127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(name: str = APP_NAME) -> None:
    """Delete the logad app (Serve itself keeps running for other apps); no-op without Ray."""
    import ray

    if not ray.is_initialized():
        return
    from ray import serve

    try:
        serve.delete(name)
    except Exception:  # noqa: BLE001 - nothing to stop
        pass


def post_lines(url: str, source: str, lines: list[str], *, timeout: float = 60.0,
               explain: str = "anomalous", token: str | None = None) -> dict[str, Any]:
    """POST lines as JSON to ``/v1/sources/SOURCE/detect``; the decoded response.

    ``token`` is sent as ``Authorization: Bearer`` (a service started with an API token).

    Raises:
        LogadError: the service answered with an error status (its reason included).
    """
    body = json.dumps({"lines": lines}).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        f"{url}/v1/sources/{source}/detect?explain={explain}", data=body, method="POST", headers=headers,
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise LogadError(f"{url} answered {exc.code}: {detail}") from None


def serve_and_probe(
    registry: str | Path,
    source: str,
    lines: list[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    keep_running: bool = False,
    log_level: str | None = None,
    log=print,
) -> dict[str, Any]:
    """Start the service on ``registry``, score ``lines`` of ``source`` over real HTTP, stop.

    ``port=0`` (the default) picks a free port; ``keep_running=True`` leaves the app up
    (the returned ``url`` reaches it; :func:`stop` ends it).

    Returns:
        The detect response (``model``, ``summary``, ``windows``) plus ``url``.
    """
    url = start(registry, host=host, port=port, log_level=log_level, log=log)
    try:
        out = post_lines(url, source, lines)
        out["url"] = url
        return out
    finally:
        if not keep_running:
            stop()


def replica_pids(deployment: str = "Ingress", app: str = APP_NAME) -> dict[str, int]:
    """Process ids of a deployment's live replicas, by actor id (fault drills SIGKILL one).

    Asks Ray's state API (``ray.util.state.list_actors``), which needs the dashboard;
    where Ray runs without it (as logad starts it), reads the GCS actor table instead.
    """
    class_name = f"ServeReplica:{app}:{deployment}"
    try:
        from ray.util.state import list_actors

        actors = list_actors(filters=[("class_name", "=", class_name), ("state", "=", "ALIVE")],
                             raise_on_missing_output=False)
        return {a.actor_id: int(a.pid) for a in actors}
    except Exception:  # noqa: BLE001 - no dashboard: the state API's server is not there
        from ray._private import state

        return {aid: int(a["Pid"]) for aid, a in state.actors().items()
                if a["ActorClassName"] == class_name and a["State"] == "ALIVE"}
