"""Under `CI` a skipped test fails the run, unless its reason is on the allow-list below: reasons no machine of ours
can change. Anything else a test needs (Node and npm, chromium, torch, ../shared) `scripts/test` installs or the
run fails loudly, so a green CI run means every test ran. An expected failure fails too, whichever way it was
declared (`@pytest.mark.xfail`, `xfail(run=False)` that never runs the test, `pytest.xfail()` that stops it half-way):
under CI an xfail is a known defect or an unrun test, and a green run means neither. Hypothesis runs derandomised
under CI (the "ci" profile): the same examples on every run, so a CI failure reproduces and a pass isn't luck.

Loaded by tests/conftest.py; tests/test_ci_skips.py proves it in a pytest of its own.
"""

from __future__ import annotations

import os

import pytest

# reason prefix → why a CI machine may skip it
ALLOWED_IN_CI = {
    "needs a CUDA GPU": "CI machines have no GPU; the GPU paths are benchmarked on a lent GPU (bench/gpu)",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_a_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not report.skipped or not in_ci():
        return
    if hasattr(report, "wasxfail"):  # xfailed: by the marker, by xfail(run=False), or by pytest.xfail()
        report.outcome = "failed"
        report.longrepr = f"xfailed under CI, where an expected failure is a failure: {report.wasxfail or 'xfail'}"
        return
    reason = _skip_reason(report)
    if any(reason.startswith(allowed) for allowed in ALLOWED_IN_CI):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI, and {reason!r} is not on the allow-list (tests/ci_skips.py): {reason}"


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001
    """Hypothesis' "ci" profile, loaded under CI: derandomised (examples from a fixed seed per test), no example
    database, no deadline (a busy CI machine's slow example is not a failure), the failing example's blob printed.
    Hypothesis loads a profile of that name itself when it sees CI set; this one says so here, whatever it does."""
    try:
        from hypothesis import settings
    except ImportError:  # the dev extra is not installed: no property tests to run
        return
    settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
    if in_ci():
        settings.load_profile("ci")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:  # noqa: ARG001
    outcome = yield
    _fail_a_skip(outcome.get_result())  # type: ignore[attr-defined]
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:  # noqa: ARG001
    outcome = yield
    _fail_a_skip(outcome.get_result())  # type: ignore[attr-defined]
    return None
