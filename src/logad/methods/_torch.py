"""Small torch helpers shared by the torch methods (imported only where torch is)."""

from __future__ import annotations

from logad.errors import DataError

__all__ = ["resolve_device"]


def resolve_device(want: str) -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible, else ``"cpu"``; ``"cuda"`` without one raises.

    Raises:
        DataError: ``want`` is ``"cuda"`` and no CUDA GPU is visible.
    """
    import torch

    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise DataError("device='cuda' but no CUDA GPU is visible; use device='cpu'")
    return want
