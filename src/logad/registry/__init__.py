"""Versioned model artifacts per (source, method) on a local path or object storage.

See :mod:`logad.registry.store` for the layout and the crash-safety rules.
"""

from logad.registry.store import (
    DEFAULT_REGISTRY,
    ModelRegistry,
    ModelVersion,
    RegistryError,
    validate_name,
)

__all__ = ["DEFAULT_REGISTRY", "ModelRegistry", "ModelVersion", "RegistryError", "validate_name"]


def default_registry_root(explicit: str | None = None) -> str:
    """``explicit``, else ``$LOGAD_REGISTRY``, else ``./registry``."""
    import os

    return explicit or os.environ.get("LOGAD_REGISTRY") or DEFAULT_REGISTRY
