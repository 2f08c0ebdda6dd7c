"""Hypothesis profiles, so that a failing property test can be reproduced.

With CI set (true/1), the property tests are derandomised: the same examples on every run, no
example database, so a red CI run is red again when re-run, and locally with
``CI=true python -m pytest ...``. Recent Hypothesis does this by itself when it sees CI; the
profile keeps it so with any Hypothesis the ranges in pyproject.toml allow. Every profile
prints the ``@reproduce_failure`` blob of a failing example. HYPOTHESIS_PROFILE=NAME picks one.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", print_blob=True)
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI", "").lower() in ("true", "1") else "dev"))
