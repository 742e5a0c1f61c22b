"""cluster.yaml is checked the way `ray up` checks it before it calls a cloud.

`ray up` merges the provider's defaults into the file (``prepare_config``) and
then validates the result against Ray's schema plus semantic checks
(``validate_config``). Both are private Ray APIs, pinned by ``ray<2.61``. No
cloud credentials are needed; what only the cloud can check (IAM, subnets,
instance types, AMIs) is out of reach here.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_up_checks(cfg: dict) -> dict:
    """What `ray up` does to a config before it talks to the provider."""
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def check(cfg: dict) -> dict:
    """Ray's checks plus the worker bounds Ray 2.60 does not check itself."""
    prepared = ray_up_checks(cfg)
    for name, t in prepared["available_node_types"].items():
        lo, hi = t.get("min_workers", 0), t.get("max_workers", prepared["max_workers"])
        if lo > hi:
            raise ValueError(f"node type {name}: min_workers {lo} > max_workers {hi}")
    return prepared


def test_cluster_yaml_validates_like_ray_up(raw):
    cfg = check(raw)
    types = cfg["available_node_types"]
    assert cfg["provider"]["type"] == "aws"
    assert set(types) == {"head", "cpu_worker", "gpu_worker"} and cfg["head_node_type"] == "head"
    # the head coordinates only; workers of both kinds scale from zero
    assert types["head"]["resources"] == {"CPU": 0}
    for name in ("cpu_worker", "gpu_worker"):
        assert types[name]["min_workers"] == 0 < types[name]["max_workers"] <= cfg["max_workers"]
    assert cfg["idle_timeout_minutes"] > 0
    # one-GPU instances for the GPU type (g5.xlarge: 1x A10G), labelled for placement
    assert types["gpu_worker"]["node_config"]["InstanceType"].split(".")[0] in {"g5", "g6", "g4dn", "p3"}
    assert types["gpu_worker"]["labels"] == {"pool": "gpu"}


def test_every_node_installs_logad(raw):
    cfg = check(raw)
    assert cfg["file_mounts"]["/home/ubuntu/logad"] == "."
    assert any("pip install" in c and "-e ~/logad" in c for c in cfg["setup_commands"])
    assert any('ray[default]==2.60.0' in c for c in cfg["setup_commands"])
    # setup_commands run on every node type (ray merges them with the head/worker ones)
    assert all("setup_commands" not in t for t in cfg["available_node_types"].values())


def _without(d: dict, key: str) -> dict:
    d = copy.deepcopy(d)
    del d[key]
    return d


def _edit(path: tuple, value):
    def f(cfg: dict) -> dict:
        cfg = copy.deepcopy(cfg)
        node = cfg
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        return cfg

    return f


BROKEN = {  # name: (how to break it, what the error says)
    "head_node_type missing": (lambda c: _without(c, "head_node_type"), "must be one of"),
    "head_node_type not a node type": (_edit(("head_node_type",), "boss"), "must be one of"),
    "worker min_workers > max_workers": (
        _edit(("available_node_types", "gpu_worker", "min_workers"), 5), "min_workers 5 > max_workers 4"),
    "unknown provider type": (_edit(("provider", "type"), "awz"), "Unsupported node provider"),
    "negative resources": (
        _edit(("available_node_types", "cpu_worker", "resources"), {"CPU": -1}), "less than the minimum of 0"),
    "fractional resources": (
        _edit(("available_node_types", "gpu_worker", "resources"), {"GPU": 0.5}), "not of type 'integer'"),
    "misspelled top-level key": (
        lambda c: {**_without(c, "idle_timeout_minutes"), "idle_timeout_minute": 10}, "idle_timeout_minute"),
    "unknown node-type key": (
        _edit(("available_node_types", "gpu_worker", "labelz"), {"pool": "gpu"}), "'labelz' was unexpected"),
    "max_workers not an integer": (_edit(("max_workers",), "ten"), "'ten' is not of type 'integer'"),
    "node type without node_config": (
        _edit(("available_node_types", "cpu_worker"), {"resources": {}, "min_workers": 0, "max_workers": 2}),
        "'node_config' is a required property"),
}


def test_ray_itself_accepts_min_workers_above_max_workers(raw):
    # why check() adds its own bound: validate_config lets this through
    ray_up_checks(BROKEN["worker min_workers > max_workers"][0](raw))


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variants_are_rejected(raw, name):
    broken, message = BROKEN[name]
    with pytest.raises((jsonschema.ValidationError, ValueError, NotImplementedError), match=re.escape(message)):
        check(broken(raw))
