"""Ray Tune sweeps over any Detector: specs from ``tune/<method>.yaml``, one driver."""

from logad.tuning.driver import SweepResult, TrialSummary, format_trials, run_sweep
from logad.tuning.spec import TuneSpec, load_tune_spec

__all__ = ["SweepResult", "TrialSummary", "TuneSpec", "format_trials", "load_tune_spec", "run_sweep"]
