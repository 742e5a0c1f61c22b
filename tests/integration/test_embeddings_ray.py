"""Embedding a large table's messages through Ray Data actors gives the vectors of the
in-process path, and the cache then holds them (a real local Ray, the real model)."""

from __future__ import annotations

import numpy as np
import pytest

from logad.embeddings import EmbeddingCache

pytestmark = pytest.mark.usefixtures("ray_session")


def test_ray_data_actors_embed_what_the_process_would():
    texts = [f"session opened for user u{i} by (uid={i})" for i in range(40)] + ["kernel panic"] * 3
    cache = EmbeddingCache()
    assert cache.embed_with_ray(texts, actors=1, batch_size=16) == 41  # distinct texts only
    assert cache.embed_with_ray(texts, actors=1) == 0  # nothing new the second time
    before = cache.misses
    here = EmbeddingCache().lookup(texts)
    np.testing.assert_allclose(cache.lookup(texts), here, atol=1e-5)
    assert cache.misses == before  # every lookup a hit
    assert cache.ensure(texts + ["a new one"], ray_above=0) == 1
