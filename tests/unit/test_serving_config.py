"""serve/config.yaml is valid for Ray Serve and for the app; `logad serve` fails cleanly (no Ray)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logad.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_serve_config_is_a_valid_ray_serve_config_with_valid_app_args():
    from ray.serve.schema import ServeDeploySchema

    from logad.serving.app import AppArgs, parse_model_id
    from logad.serving.local import load_serve_config

    cfg = load_serve_config(ROOT / "serve" / "config.yaml", registry="reg", port=9123,
                            deployments={"Ingress": {"num_replicas": 2}})
    schema = ServeDeploySchema.model_validate(cfg)
    app = schema.applications[0]
    assert app.import_path == "logad.serving.app:build_app" and schema.http_options.port == 9123
    args = AppArgs.model_validate(app.args)
    assert Path(args.registry).is_absolute()
    deps = {d.name: d for d in app.deployments}
    assert list(deps) == ["Ingress"]  # parsing and scoring share a replica: no hop between them
    assert deps["Ingress"].max_ongoing_requests > 5  # Serve's default would cap the service
    assert deps["Ingress"].max_ongoing_requests >= args.max_batch_size  # or batches never fill
    assert deps["Ingress"].autoscaling_config == {"min_replicas": 2, "max_replicas": 2, "initial_replicas": 2}
    assert parse_model_id("my.source@fastlogad/v12") == ("my.source", "fastlogad", 12)


def test_a_runtime_env_is_merged_over_the_apps(tmp_path):
    import yaml

    from logad.serving.local import load_serve_config

    cfg = load_serve_config(ROOT / "serve" / "config.yaml",
                            runtime_env={"env_vars": {"B": "3"}, "worker_process_setup_hook": "m.f"})
    assert cfg["applications"][0]["runtime_env"] == {"env_vars": {"B": "3"}, "worker_process_setup_hook": "m.f"}
    own = tmp_path / "serve.yaml"
    own.write_text(yaml.safe_dump({"applications": [{
        "name": "logad", "import_path": "logad.serving.app:build_app",
        "runtime_env": {"env_vars": {"A": "1", "B": "2"}, "pip": ["x"]}}]}))
    got = load_serve_config(own, runtime_env={"env_vars": {"B": "3"}})["applications"][0]["runtime_env"]
    assert got == {"env_vars": {"A": "1", "B": "3"}, "pip": ["x"]}


def test_unknown_app_args_are_refused():
    from logad.serving.app import build_app

    with pytest.raises(ValueError, match="max_bodyy"):
        build_app({"registry": "r", "max_bodyy": 1})


def test_serve_command_refuses_a_registry_without_serving_models(tmp_path, capsys):
    assert main(["serve", "--registry", str(tmp_path / "empty")]) == 2
    assert "no source with a serving model" in capsys.readouterr().err


def test_ray_env_sets_serves_request_path_without_overriding_the_user(monkeypatch):
    """Proxies and replicas read these when Ray starts; a user's own value wins."""
    from logad.ray_env import _SERVE_ENV, prepare_ray_env

    for name in _SERVE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_SERVE_USE_GRPC_BY_DEFAULT", "0")
    prepare_ray_env()
    assert os.environ["RAY_SERVE_USE_GRPC_BY_DEFAULT"] == "0"
    assert os.environ["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"] == "0"
    assert os.environ["RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"] == "0"
    # cluster.yaml exports the same values before `ray start`
    text = (ROOT / "cluster.yaml").read_text()
    assert all(f"{k}={v}" in text for k, v in _SERVE_ENV.items())
