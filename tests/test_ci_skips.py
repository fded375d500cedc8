"""The CI rules (tests/ci_skips.py), each run in a pytest of its own: under CI a skip fails unless allow-listed, an
xfail fails however it was declared, and Hypothesis draws the same examples on every run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SAMPLE = """
import pytest

pytest.importorskip("{module}")

def test_skipped_for_a_missing_tool():
    pytest.skip("npm is not installed")

def test_skipped_for_want_of_a_gpu():
    pytest.skip("needs a CUDA GPU (this machine has none)")

@pytest.mark.xfail(reason="known")
def test_expected_to_fail():
    assert False

@pytest.mark.xfail(run=False, reason="never run")
def test_never_run():
    assert False

def test_gives_up_half_way():
    pytest.xfail("gave up")

def test_passes():
    pass
"""

DRAWING = """
import os

from hypothesis import given, strategies as st

@given(st.integers(), st.text())
def test_draws(number, text):
    with open(os.environ["DRAWS"], "a", encoding="utf-8") as out:
        out.write(repr((number, text)) + "\\n")
"""


def run(
    tmp_path: Path, *, ci: str | None, module: str = "json", sample: str = SAMPLE, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(sample.replace("{module}", module))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    env.update(extra_env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.ci_skips",
            "-q",
            "-rfEs",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_under_ci_a_skip_fails_unless_its_reason_is_allowed(tmp_path: Path) -> None:
    result = run(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout
    assert "3 failed, 1 passed, 1 skipped, 1 error" in result.stdout  # the error: xfail(run=False), in its setup
    assert "FAILED test_sample.py::test_skipped_for_a_missing_tool" in result.stdout
    assert "'npm is not installed' is not on the allow-list" in result.stdout


def test_under_ci_an_xfail_fails_however_it_was_declared(tmp_path: Path) -> None:
    result = run(tmp_path, ci="true")
    for outcome, name, reason in (
        ("FAILED", "test_expected_to_fail", "known"),
        ("ERROR", "test_never_run", "[NOTRUN] never run"),  # it never ran: its setup fails
        ("FAILED", "test_gives_up_half_way", "gave up"),
    ):
        assert f"{outcome} test_sample.py::{name}" in result.stdout, result.stdout
        assert f"xfailed under CI, where an expected failure is a failure: {reason}" in result.stdout
    assert "xfailed" not in result.stdout.splitlines()[-1]


def test_under_ci_hypothesis_draws_the_same_examples_every_run(tmp_path: Path) -> None:
    def draws(ci: str | None, name: str) -> list[str]:
        out = tmp_path / name
        result = run(tmp_path, ci=ci, sample=DRAWING, DRAWS=str(out))
        assert result.returncode == 0, result.stdout
        return out.read_text(encoding="utf-8").splitlines()

    first, second = draws("true", "ci-1"), draws("true", "ci-2")
    assert len(first) > 10 and first == second
    assert draws(None, "local-1") != draws(None, "local-2")  # outside CI: random, so the check above means something


def test_a_module_skipped_at_import_fails_under_ci(tmp_path: Path) -> None:
    result = run(tmp_path, ci="true", module="a_module_that_is_not_installed")
    assert result.returncode != 0 and "a_module_that_is_not_installed" in result.stdout
    assert "1 error" in result.stdout


def test_outside_ci_skips_stay_skips(tmp_path: Path) -> None:
    for ci in (None, "false"):
        result = run(tmp_path, ci=ci)
        assert result.returncode == 0, result.stdout
        assert "2 passed" not in result.stdout and "1 passed, 2 skipped, 3 xfailed" in result.stdout
