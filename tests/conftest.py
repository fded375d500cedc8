from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def bench_module(name: str) -> Iterator[ModuleType]:
    """A module of bench/ (a script folder, not a package), imported with bench/ on the path for a fixture's life."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "bench"))


SHARED = REPO.parent / "shared"

pytest_plugins = ["tests.ci_skips"]  # under CI a skip is a failure, outside a short allow-list


def pytest_configure(config: pytest.Config) -> None:
    # The bases ftcli builds (`ftcli/tiny`, SmolLM2 converted from its GGUF) are built once per test session and
    # shared by every server and data directory the tests make, subprocesses included (they inherit the variable).
    if "FTCLI_BASES_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="ftcli-bases-")
        os.environ["FTCLI_BASES_DIR"] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    # Where `ftcli serve` leaves its per-start key for this user's clients: one folder for the session, so a server
    # and the commands that talk to it find each other whatever data folder a test gives them.
    if "FTCLI_RUNTIME_DIR" not in os.environ:
        runtime = tempfile.mkdtemp(prefix="ftcli-runtime-")
        os.environ["FTCLI_RUNTIME_DIR"] = runtime
        config.add_cleanup(lambda: shutil.rmtree(runtime, ignore_errors=True))


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The real third-party files in ../shared/datasets (read in place, never copied into the repo)."""
    path = SHARED / "datasets"
    if not path.is_dir():
        pytest.fail(f"{path} is missing: tests need ../shared beside the repository")
    return path


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Write records (dicts are JSON-encoded, strings written as-is) one per line."""

    def write(records: list[object], name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    return write


def chat(*turns: tuple[str, str], **extra: object) -> dict[str, object]:
    return {"messages": [{"role": role, "content": content} for role, content in turns], **extra}


def qa(i: int) -> dict[str, object]:
    """A clean chat example, distinct for each i."""
    return chat(
        ("system", "You answer questions about numbers."),
        ("user", f"What is {i} plus {i}?"),
        ("assistant", f"{i} plus {i} is {2 * i}."),
    )
