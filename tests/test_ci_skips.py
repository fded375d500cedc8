"""The CI skip rule (tests/ci_skips.py), run in a pytest of its own: under CI a skip fails unless allow-listed."""

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

def test_passes():
    pass
"""


def run(tmp_path: Path, *, ci: str | None, module: str = "json") -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE.format(module=module))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
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
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed" in result.stdout
    assert "FAILED test_sample.py::test_skipped_for_a_missing_tool" in result.stdout
    assert "'npm is not installed' is not on the allow-list" in result.stdout


def test_a_module_skipped_at_import_fails_under_ci(tmp_path: Path) -> None:
    result = run(tmp_path, ci="true", module="a_module_that_is_not_installed")
    assert result.returncode != 0 and "a_module_that_is_not_installed" in result.stdout
    assert "1 error" in result.stdout


def test_outside_ci_skips_stay_skips(tmp_path: Path) -> None:
    for ci in (None, "false"):
        result = run(tmp_path, ci=ci)
        assert result.returncode == 0, result.stdout
        assert "2 passed" not in result.stdout and "1 passed, 2 skipped, 1 xfailed" in result.stdout
