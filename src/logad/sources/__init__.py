"""Log sources: config files, header splitting, time and label extraction."""

from logad.sources.config import SourceConfig, load_source_config
from logad.sources.lines import LineSplitter

__all__ = ["LineSplitter", "SourceConfig", "load_source_config"]
