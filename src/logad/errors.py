"""The one error hierarchy of logad.

Every error a user can cause is a :class:`LogadError`; its message says what
was wrong, where, and what to do next. The CLI prints it as one line and exits
non-zero; the HTTP API turns it into a 4xx with the same reason.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "LogadError",
    "NotFittedError",
    "UnknownNameError",
]


class LogadError(Exception):
    """Base class of every error logad raises on purpose."""


class ConfigError(LogadError, ValueError):
    """A configuration file or option is invalid (names the file and key)."""


class DataError(LogadError, ValueError):
    """Input data is missing, unreadable or has the wrong shape."""


class NotFittedError(LogadError, RuntimeError):
    """A detector was used before ``fit()`` or ``load()``."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"this {name} detector is not fitted yet: call fit() or Detector.load(path) first"
        )


class UnknownNameError(LogadError, KeyError):
    """A name (method, protocol, strategy) is not registered; lists the known ones."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])
