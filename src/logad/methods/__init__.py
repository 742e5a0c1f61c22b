"""Anomaly detectors behind one protocol, looked up by name in a registry.

``get_method("fastlogad")`` returns the class; ``load_detector(path)`` loads any
saved detector by the method named in its ``config.json``. Method modules are
imported on first lookup, so importing this package stays light.
"""

from logad.methods.base import (
    ARTIFACT_FORMAT_VERSION,
    ContextEvidence,
    Detector,
    EpochCallback,
    FeatureEvidence,
    FitReport,
    FrameEvidence,
    LineEvidence,
    WindowExplanation,
    as_windows_frame,
    available_methods,
    get_method,
    line_counts,
    load_detector,
    read_artifact_header,
    register_method,
    write_artifact_header,
)

__all__ = [
    "ARTIFACT_FORMAT_VERSION",
    "ContextEvidence",
    "Detector",
    "EpochCallback",
    "FeatureEvidence",
    "FrameEvidence",
    "FitReport",
    "LineEvidence",
    "WindowExplanation",
    "as_windows_frame",
    "available_methods",
    "get_method",
    "line_counts",
    "load_detector",
    "read_artifact_header",
    "register_method",
    "write_artifact_header",
]
