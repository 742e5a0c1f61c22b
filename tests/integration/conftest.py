"""Integration tests share one real local Ray (2 CPUs) for the whole session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from logad.ray_env import init_ray

    init_ray(num_cpus=2, progress=False)
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.ray)
