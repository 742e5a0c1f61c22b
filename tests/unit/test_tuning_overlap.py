"""How many trials ran at once, from the clocks the trials report."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from logad.tuning.driver import _max_overlap


def _result(started: float, *reported: float) -> SimpleNamespace:
    # Tune's own `timestamp` is whole seconds: a short trial would seem to end before it began
    frame = pd.DataFrame({"trial_started": started, "reported_at": list(reported),
                          "timestamp": [int(t) for t in reported]})
    return SimpleNamespace(metrics_dataframe=frame)


def test_sub_second_trials_that_overlap_count_as_concurrent():
    grid = [_result(100.6, 100.7, 100.9), _result(100.65, 100.8, 100.95),
            _result(101.0, 101.2), _result(101.05, 101.3)]
    assert _max_overlap(grid) == 2


def test_back_to_back_trials_are_not_concurrent():
    assert _max_overlap([_result(1.0, 1.5, 2.0), _result(2.5, 3.0)]) == 1


def test_trials_without_reports_are_ignored():
    assert _max_overlap([SimpleNamespace(metrics_dataframe=None), _result(1.0, 2.0)]) == 1
    assert _max_overlap([]) == 0
