"""Shared test set-up: Ray's environment must be set before anything imports ray."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TQDM_DISABLE", "1")
# Tests start their own Ray: never join a `ray start` cluster another user runs on this host
# (Ray's default for ray.init() without an address), which also rejects num_cpus.
os.environ.setdefault("RAY_ADDRESS", "local")
# A token for the clusters tests start. `ray.init()` writes ~/.ray/auth_token on first use,
# but `ray.cluster_utils.Cluster` (the multi-node tests) expects one to exist already.
if not os.environ.get("RAY_AUTH_TOKEN_PATH") and not (Path.home() / ".ray" / "auth_token").exists():
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
DATA_PIPELINES = ROOT / "data_pipelines"
SAMPLE_DIR = ROOT / "src" / "logad" / "data"


@pytest.fixture(scope="session")
def hdfs_sample() -> tuple[Path, Path]:
    """The bundled HDFS sample (zstd) and its block labels."""
    return SAMPLE_DIR / "hdfs_sample.log.zst", SAMPLE_DIR / "hdfs_sample_labels.csv"


@pytest.fixture(scope="session")
def hdfs_sample_lines(hdfs_sample) -> list[str]:
    import zstandard

    with open(hdfs_sample[0], "rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh).read().decode().splitlines()
