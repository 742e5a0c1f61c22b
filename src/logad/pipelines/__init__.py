"""Pipelines: the Ray Data job that turns raw logs into the windows table."""

__all__ = ["run_ingest"]


def __getattr__(name: str):  # importing ray is deferred until a pipeline is used
    if name == "run_ingest":
        from logad.pipelines.ingest import run_ingest

        return run_ingest
    raise AttributeError(name)
