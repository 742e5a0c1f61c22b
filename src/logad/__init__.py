"""logad: log anomaly detection at cluster scale on Ray.

Ingest raw or compressed logs with Ray Data, parse them with Drain3 into a
windows table, train and tune detectors, and serve them over HTTP.

Importing this package starts nothing: no Ray, no logging set-up, no files.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
