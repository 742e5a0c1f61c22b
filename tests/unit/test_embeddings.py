"""The SBERT cache: one vector per distinct message, counted hits and misses, saved with a model."""

from __future__ import annotations

import numpy as np
import pytest

from logad.embeddings import DIMENSION, EmbeddingCache
from logad.errors import DataError

MESSAGES = ["session opened for user root by (uid=0)", "Out of memory: Kill process 812 (java)",
            "session opened for user root by (uid=0)", "CPU0: Temperature above threshold"]


@pytest.fixture(scope="module")
def cache() -> EmbeddingCache:
    c = EmbeddingCache()
    c.lookup(MESSAGES)
    return c


def test_each_distinct_message_is_embedded_once(cache):
    assert (cache.misses, cache.hits, len(cache)) == (3, 1, 3)
    again = cache.lookup(MESSAGES[:2])
    assert (cache.misses, cache.hits) == (3, 3)  # repeats hit, nothing re-embedded
    assert again.shape == (2, DIMENSION)
    assert np.allclose(np.linalg.norm(again, axis=1), 1.0, atol=1e-5)


def test_vectors_carry_meaning(cache):
    v = cache.lookup(["Out of memory: Kill process 812 (java)", "Out of memory: Kill process 977 (httpd)",
                      "session opened for user root by (uid=0)"])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_save_load_and_subset(cache, tmp_path):
    sub = cache.subset(MESSAGES[:2])
    assert len(sub) == 2
    sub.save(tmp_path)
    loaded = EmbeddingCache.load(tmp_path)
    assert np.array_equal(loaded.lookup(MESSAGES[:2]), cache.lookup(MESSAGES[:2]))
    assert loaded.misses == 0
    with pytest.raises(DataError, match="not in the embedding cache"):
        loaded.rows(["never seen before"], embed=False)
    (tmp_path / "embeddings.json").write_text("{}")
    with pytest.raises(DataError):
        EmbeddingCache.load(tmp_path)


def test_truncate_and_head_keep_the_first_vectors(cache):
    c = EmbeddingCache()
    c.merge(cache)
    first = c.lookup(MESSAGES[:2])
    assert c.head(2).lookup(MESSAGES[:2]).tolist() == first.tolist()
    c.truncate(2)
    assert len(c) == 2 and MESSAGES[0] in c and MESSAGES[3] not in c
    assert np.array_equal(c.lookup(MESSAGES[:2]), first)


def test_word_pieces_are_the_tokenizers_lower_cased_pieces_each_once():
    from logad.embeddings import MAX_PIECES, load_sbert, piece_table, word_pieces

    tokenizer = load_sbert().tokenizer
    texts = ["Failed password for root", "FAILED failed", "", "word " * (2 * MAX_PIECES)]
    m = word_pieces(texts)
    assert m.shape == (4, tokenizer.vocab_size) == (4, piece_table().shape[0])
    failed = tokenizer.convert_tokens_to_ids("failed")
    assert m[0, failed] == 1 and m[1].nnz == 1 and m[1, failed] == 1  # cased alike, counted once
    assert set(tokenizer.convert_ids_to_tokens(m[0].indices.tolist())) == {"failed", "password", "for", "root"}
    assert m[2].nnz == 0 and m[3].nnz == 1
    assert piece_table().shape[1] == DIMENSION
