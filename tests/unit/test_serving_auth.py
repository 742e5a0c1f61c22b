"""Where the API token comes from and how it is checked (no Ray; the HTTP side is in
tests/integration/test_serving_hostile.py)."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from logad.cli import main
from logad.serving.auth import ENV_VAR, BearerAuth, resolve_token_digest, token_sha256

TOKEN = secrets.token_urlsafe(32)


def test_the_token_comes_from_the_digest_the_file_or_the_environment(tmp_path):
    digest = hashlib.sha256(TOKEN.encode()).digest()
    f = tmp_path / "token"
    f.write_text(f"\n  {TOKEN}  \n")
    assert resolve_token_digest(token_sha256(TOKEN), None, {}) == digest
    assert resolve_token_digest(token_sha256(TOKEN).upper(), None, {}) == digest
    assert resolve_token_digest(None, str(f), {ENV_VAR: "another-token-entirely"}) == digest  # file first
    assert resolve_token_digest(None, None, {ENV_VAR: TOKEN}) == digest
    assert resolve_token_digest(None, None, {}) is None  # open


@pytest.mark.parametrize("sha, file, env, words", [
    ("a" * 64, "x", None, "not both"),
    ("a" * 63, None, None, "64 hex digits"),
    ("g" * 64, None, None, "64 hex digits"),
    (None, "missing", None, "cannot read the API token file"),
    (None, "empty", None, "at least 16 visible ASCII characters"),
    (None, None, "short", "at least 16"),
    (None, None, "has a space inside it", "no spaces"),
    (None, None, "", "at least 16"),  # set but empty: a mistake, not an open API
])
def test_an_unusable_token_setting_is_refused(tmp_path, sha, file, env, words):
    (tmp_path / "empty").write_text("\n")
    path = None if file is None else str(tmp_path / file)
    with pytest.raises(ValueError, match=words):
        resolve_token_digest(sha, path, {} if env is None else {ENV_VAR: env})


def test_bearer_auth_allows_only_the_token():
    auth = BearerAuth()
    assert auth.allows(None) and auth.allows("anything")  # not configured: open
    auth.configure(hashlib.sha256(TOKEN.encode()).digest())
    assert auth.allows(TOKEN)
    for other in (None, "", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "\udcff" + TOKEN[1:]):
        assert not auth.allows(other), other


def test_serve_refuses_a_bad_token_before_starting_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    registry = str(tmp_path / "registry")
    assert main(["serve", "--registry", registry, "--token-file", str(tmp_path / "nope")]) == 2
    assert "cannot read the API token file" in capsys.readouterr().err
    monkeypatch.setenv(ENV_VAR, "short")
    assert main(["serve", "--registry", registry]) == 2
    assert f"${ENV_VAR} must be at least 16" in capsys.readouterr().err


def test_serve_passes_only_the_digest(tmp_path, monkeypatch):
    from logad.commands.serve import _token_digest

    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert _token_digest(None) is None
    assert _token_digest(str(f)) == hashlib.sha256(TOKEN.encode()).hexdigest()
    monkeypatch.setenv(ENV_VAR, TOKEN)
    assert _token_digest(None) == hashlib.sha256(TOKEN.encode()).hexdigest()


def test_detect_reads_the_token_from_the_flag_the_file_or_the_environment(tmp_path, monkeypatch):
    import argparse

    from logad.commands.detect import _token

    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    for name in (ENV_VAR, "LOGAD_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    def ns(**kw):
        return argparse.Namespace(**{"token": None, "token_file": None, **kw})

    assert _token(ns()) is None
    assert _token(ns(token_file=str(f))) == TOKEN
    assert _token(ns(token="flag-token-value", token_file=str(f))) == "flag-token-value"
    monkeypatch.setenv("LOGAD_TOKEN", "older-variable-name")
    assert _token(ns()) == "older-variable-name"
    monkeypatch.setenv(ENV_VAR, TOKEN)
    assert _token(ns()) == TOKEN
    with pytest.raises(Exception, match="cannot read the token file"):
        _token(ns(token_file=str(tmp_path / "missing")))
