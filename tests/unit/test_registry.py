"""The model registry: versions, production and serving aliases, crash safety, safe names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from logad.cli import main
from logad.methods import get_method, load_detector
from logad.registry import ModelRegistry, RegistryError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hdfs_eventid"
TINY = dict(
    hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
    generator_hidden_size=16, generator_num_layers=1, generator_num_heads=2,
    generator_intermediate_size=32, batch_size=32, warmup_epochs=1, epochs=2, min_hst_steps=0,
    learning_rate=1e-3, hst_learning_rate=1e-2, device="cpu", show_progress=False, seed=0,
)


def _frame(seqs: list[list[int]], prefix: str) -> pd.DataFrame:
    return pd.DataFrame({
        "window_id": [f"{prefix}{i}" for i in range(len(seqs))],
        "event_ids": seqs,
        "lines": [[f"E{e}" for e in s] for s in seqs],
        "label": pd.array([0] * len(seqs), dtype="Int8"),
    })


@pytest.fixture(scope="module")
def windows() -> pd.DataFrame:
    seqs = [[int(x) for x in line.split()] for line in (FIXTURE / "hdfs_train").read_text().splitlines()]
    return _frame(seqs[:300], "w")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, windows) -> Path:
    det = get_method("fastlogad")(TINY)
    det.fit(windows.iloc[:250], windows.iloc[250:])
    out = tmp_path_factory.mktemp("model") / "m"
    det.save(out)
    (out / "templates.json").write_text('{"templates": []}\n')
    return out


def test_first_version_is_production_and_serving(tmp_path, model_dir, windows):
    reg = ModelRegistry(tmp_path / "reg")
    v1 = reg.register(model_dir, "hdfs", metrics={"f1": 0.5})
    assert (v1.version, v1.method, v1.production, v1.serving) == (1, "fastlogad", True, True)
    assert v1.threshold is not None and np.isfinite(v1.threshold)
    v2 = reg.register(model_dir, "hdfs")
    assert (v2.version, v2.production, v2.serving) == (2, False, False)
    assert reg.get("hdfs").version == 1  # serving model unchanged until promoted
    reg.promote("hdfs", "fastlogad", "v2")
    assert reg.get("hdfs").version == 2
    assert [(v.version, v.production) for v in reg.list("hdfs")] == [(1, False), (2, True)]

    path = reg.fetch(reg.get("hdfs"))
    original = get_method("fastlogad").load(model_dir).score(windows)
    np.testing.assert_array_equal(load_detector(path).score(windows), original)


def test_promote_without_serve_keeps_the_serving_model(tmp_path, model_dir):
    reg = ModelRegistry(tmp_path)
    reg.register(model_dir, "app")
    reg.register(model_dir, "app")
    reg.promote("app", "fastlogad", 2, serve=False)
    assert reg.production_version("app", "fastlogad") == 2
    assert reg.serving("app") == ("fastlogad", 1)


@pytest.mark.parametrize("name", ["../../etc", "..", ".", "", "a/b", "x" * 129, "-x", "a b", "é"])
def test_unsafe_source_names_refused(tmp_path, model_dir, name):
    reg = ModelRegistry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="invalid source name"):
        reg.register(model_dir, name)
    assert not (tmp_path / "etc").exists()
    assert not (tmp_path / "reg").exists() or reg.list() == []


def test_interrupted_write_leaves_production_intact(tmp_path, model_dir, windows, monkeypatch):
    reg = ModelRegistry(tmp_path)
    reg.register(model_dir, "hdfs")
    calls = {"n": 0}
    real_upload = ModelRegistry._upload

    def dies_on_second_file(self, local, dest):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk went away")  # a crash half-way through the copy
        real_upload(self, local, dest)

    monkeypatch.setattr(ModelRegistry, "_upload", dies_on_second_file)
    with pytest.raises(OSError):
        reg.register(model_dir, "hdfs", promote=True)
    monkeypatch.undo()

    assert [v.version for v in reg.list()] == [1]
    assert reg.get("hdfs").version == 1
    assert load_detector(reg.fetch(reg.get("hdfs"))).score(windows).shape == (len(windows),)
    # the next write skips past the debris and works
    assert reg.register(model_dir, "hdfs").version == 2


def test_version_without_manifest_is_invisible(tmp_path, model_dir):
    """A version folder without its manifest (on object stores: a move cut short before the
    commit point) is never listed or served, and its number is never reused."""
    reg = ModelRegistry(tmp_path)
    reg.register(model_dir, "hdfs")
    shutil.copytree(model_dir, tmp_path / "hdfs" / "fastlogad" / "v000002")
    assert [v.version for v in reg.list()] == [1]
    assert reg.get("hdfs").version == 1
    with pytest.raises(RegistryError, match="no version 2"):
        reg.promote("hdfs", "fastlogad", 2)
    assert reg.register(model_dir, "hdfs").version == 3


def test_tampered_file_is_detected(tmp_path, model_dir):
    reg = ModelRegistry(tmp_path)
    mv = reg.register(model_dir, "hdfs")
    (tmp_path / "hdfs" / "fastlogad" / "v000001" / "templates.json").write_text("{}")
    with pytest.raises(RegistryError, match="checksum"):
        reg.fetch(mv)


def test_file_uri_root(tmp_path, model_dir, windows):
    """A file:// URI root is accepted and reported back in the version's URI."""
    reg = ModelRegistry(f"file://{tmp_path}/reg")
    mv = reg.register(model_dir, "hdfs")
    assert mv.uri.startswith("file://")
    assert load_detector(reg.fetch(mv)).score(windows).shape == (len(windows),)


def test_unknown_things_say_what_exists(tmp_path, model_dir):
    reg = ModelRegistry(tmp_path)
    with pytest.raises(RegistryError, match="no production model"):
        reg.get("nope")
    reg.register(model_dir, "hdfs")
    with pytest.raises(RegistryError, match="versions: 1"):
        reg.get("hdfs", "fastlogad", 7)
    with pytest.raises(RegistryError, match="invalid version"):
        reg.promote("hdfs", "fastlogad", "latest")


def test_cli_list_show_promote(tmp_path, model_dir, capsys):
    root = str(tmp_path / "reg")
    reg = ModelRegistry(root)
    reg.register(model_dir, "hdfs", metrics={"f1": 0.75})
    reg.register(model_dir, "hdfs")
    assert main(["registry", "list", "--registry", root]) == 0
    out = capsys.readouterr().out
    assert "production, serving" in out and "0.750" in out
    assert main(["registry", "promote", "hdfs", "fastlogad", "2", "--registry", root]) == 0
    assert "promoted hdfs/fastlogad/v2" in capsys.readouterr().out
    assert main(["registry", "show", "hdfs", "--registry", root]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["serving"] is True
    assert main(["registry", "promote", "../x", "fastlogad", "1", "--registry", root]) == 2
    assert "invalid source name" in capsys.readouterr().err


def test_register_refuses_a_non_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no model"):
        ModelRegistry(tmp_path / "reg").register(tmp_path / "empty", "hdfs")
    shutil.rmtree(tmp_path / "empty")
