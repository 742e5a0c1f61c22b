"""Windows: the table every method reads, and the rules that build it."""

from logad.windows.schema import WINDOWS_SCHEMA, read_windows, validate_windows

__all__ = ["WINDOWS_SCHEMA", "read_windows", "validate_windows"]
