"""An optional bearer token for the ``/v1`` API of the HTTP service.

Where the token comes from, first match wins (``resolve_token_digest``):

1. ``api_token_sha256`` in the app's args: the SHA-256 (hex) of the token. ``logad serve``
   passes this, read from ``--token-file`` or ``$LOGAD_API_TOKEN`` where it runs, so the
   token itself never lands in Serve's config, which ``serve status`` and the dashboard show.
2. ``api_token_file`` in the app's args (serve/config.yaml): a file every replica can read,
   holding the token (surrounding whitespace ignored).
3. ``$LOGAD_API_TOKEN`` in the replica's environment (a local ``serve run``, or a
   cluster whose nodes export it before ``ray start``).

With none of them the API is open. With one, each ``/v1`` request must carry
``Authorization: Bearer <token>``; anything else is answered 401 with a
``WWW-Authenticate`` header. The presented token is hashed and the digests compared
with :func:`hmac.compare_digest`, so the comparison takes the same time whatever
the token and however much of it matches. ``/healthz``, ``/docs`` and ``/openapi.json``
stay open: they say nothing about the logs or the models.
"""

# No `from __future__ import annotations`: FastAPI must resolve the dependency's signature.
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

from fastapi import HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

__all__ = [
    "ENV_VAR", "MIN_TOKEN_CHARS", "BearerAuth", "check_token", "read_token_file",
    "resolve_token_digest", "token_sha256",
]

ENV_VAR = "LOGAD_API_TOKEN"
MIN_TOKEN_CHARS = 16
_TOKEN = re.compile(r"[!-~]+")  # visible ASCII, no spaces: what fits in one header value
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_token(token: str, where: str) -> str:
    """``token`` without surrounding whitespace, if it is usable.

    Raises:
        ValueError: empty, shorter than 16 characters, or not visible ASCII.
    """
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(token):
        raise ValueError(
            f"the API token from {where} must be at least {MIN_TOKEN_CHARS} visible ASCII characters "
            "with no spaces; make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return token


def read_token_file(path: str | Path) -> str:
    """The token in ``path``.

    Raises:
        ValueError: unreadable file, or not a usable token.
    """
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the API token file {path}: {exc}") from None
    return check_token(text, f"file {path}")


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a token, as ``api_token_sha256`` takes it."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def resolve_token_digest(api_token_sha256: str | None, api_token_file: str | None,
                         environ: Mapping[str, str] | None = None) -> bytes | None:
    """The SHA-256 digest of the token the API requires, or None for an open API.

    Raises:
        ValueError: both args given, a malformed digest, or an unusable token or token file.
    """
    if api_token_sha256 is not None and api_token_file is not None:
        raise ValueError("set api_token_sha256 or api_token_file, not both")
    if api_token_sha256 is not None:
        digest = api_token_sha256.strip().lower()
        if not _HEX64.fullmatch(digest):
            raise ValueError("api_token_sha256 must be 64 hex digits (what `sha256sum` prints for the token)")
        return bytes.fromhex(digest)
    if api_token_file is not None:
        token = read_token_file(api_token_file)
    else:
        raw = (os.environ if environ is None else environ).get(ENV_VAR)
        if raw is None:
            return None
        token = check_token(raw, f"${ENV_VAR}")
    return hashlib.sha256(token.encode("ascii")).digest()


_bearer = HTTPBearer(
    auto_error=False,
    description=f"Required when the service is started with an API token (`logad serve --token-file`, "
    f"${ENV_VAR}, or api_token_file in serve/config.yaml); without one the API is open.",
)


class BearerAuth:
    """The FastAPI dependency that guards the ``/v1`` routes of one replica.

    It starts open; the ingress calls :meth:`configure` with the digest it resolved.
    """

    def __init__(self) -> None:
        self.digest: bytes | None = None
        self.on_reject: Callable[[], None] | None = None

    def configure(self, digest: bytes | None, on_reject: Callable[[], None] | None = None) -> None:
        self.digest = digest
        self.on_reject = on_reject

    def allows(self, presented: str | None) -> bool:
        """Whether a request presenting this bearer token (None: none) may pass."""
        if self.digest is None:
            return True
        if presented is None:
            return False
        seen = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(seen, self.digest)

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None
    ) -> None:
        if self.allows(None if credentials is None else credentials.credentials):
            return
        if self.on_reject is not None:
            self.on_reject()
        reason = ("this service requires an API token: send `Authorization: Bearer <token>` "
                  "(`logad detect --token-file` or $LOGAD_API_TOKEN)") if credentials is None else \
            "the API token is not the one this service was started with"
        raise HTTPException(401, reason, headers={"WWW-Authenticate": 'Bearer realm="logad"'})
