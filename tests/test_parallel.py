"""run_jobs: the same results in this process and on spawned ones, failures named."""

import math
import operator

import pytest

from alignax.parallel import run_jobs
from alignax.workdir import config_changes_allowed, config_changes_are_allowed


def test_results_in_job_order_in_process_and_on_two_processes():
    jobs = [(i, 10 * i) for i in range(5)]
    expected = [11 * i for i in range(5)]
    assert run_jobs(operator.add, jobs, workers=1) == expected
    assert run_jobs(operator.add, jobs, workers=2) == expected


def test_a_failing_job_is_named():
    with pytest.raises(RuntimeError, match=r"job 1 of 3 .*sqrt.*1 failed"):
        run_jobs(math.sqrt, [(4.0,), (-1.0,), (9.0,)], workers=2)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        run_jobs(math.sqrt, [(4.0,)], workers=0)


def test_spawned_jobs_inherit_allow_config_change():
    for allowed in (True, False):
        with config_changes_allowed(allowed):
            assert run_jobs(config_changes_are_allowed, [(), ()], workers=2) == [allowed] * 2
