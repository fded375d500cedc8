"""The bad-input corpus: every file in ../shared/datasets/ and a set of hostile inputs written here, through
`check` and `convert` as a user runs them (the installed command, in a subprocess). Each run ends with a report or
a clear error and exit code 0, 1 or 2: never a traceback, and never an output file left half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
FTCLI = [sys.executable, "-m", "ftcli"]


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": "x"}
    for level in range(depth):
        value = {f"level{level}": value}
    return value


def _tool_line(depth: int) -> str:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": json.dumps(_nested(depth))}}
    return json.dumps(
        {
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": json.dumps(_nested(depth))},
                {"role": "assistant", "content": "done"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": _nested(depth)}}],
        }
    )


HUGE = {"role": "user", "content": "x " * 25_000_000}  # 50 MB on one line
GOOD = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})

HOSTILE: dict[str, Callable[[Path], Path]] = {
    "truncated": lambda d: _write(d / "truncated.jsonl", (GOOD + "\n") * 3 + GOOD[:25]),
    "invalid_utf8": lambda d: _write_bytes(d / "latin1.jsonl", (GOOD + "\n").encode() + b'{"messages": "caf\xe9"}\n'),
    "nul_bytes": lambda d: _write_bytes(d / "nul.jsonl", (GOOD + "\n").encode() + b"\x00\x00{\x00}\n" + b"\x00" * 64),
    "single_50mb_line": lambda d: _write(d / "huge.jsonl", json.dumps({"messages": [HUGE, {"role": "assistant"}]})),
    "nested_tool_arguments_10_levels": lambda d: _write(d / "nested.jsonl", _tool_line(10) + "\n"),
    # JSON escapes of half a surrogate pair: no character, so no UTF-8 for it (in a text and in a key)
    "lone_surrogates": lambda d: _write(
        d / "surrogates.jsonl",
        (GOOD + "\n") * 3 + '{"messages": [{"role": "user", "content": "a \\ud800"}, '
        '{"role": "assistant", "content": "b"}], "\\udc00": 1}\n',
    ),
    "crlf_endings": lambda d: _write_bytes(d / "crlf.jsonl", ((GOOD + "\r\n") * 12).encode()),
    "empty_file": lambda d: _write(d / "empty.jsonl", ""),
    "only_blank_lines": lambda d: _write(d / "blank.jsonl", "\n \n\t\n"),
    "json_array_of_scalars": lambda d: _write(d / "scalars.json", "[1, 2, 3]"),
    "directory": lambda d: (d / "a_folder").mkdir() or d / "a_folder",  # type: ignore[func-returns-value]
    "missing_file": lambda d: d / "does-not-exist.jsonl",
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FTCLI, *args], capture_output=True, text=True, cwd=cwd, timeout=600, errors="replace")


def _assert_clean_exit(result: subprocess.CompletedProcess[str], allowed: tuple[int, ...]) -> None:
    assert result.returncode in allowed, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def _corpus() -> list[tuple[str, Callable[[Path], Path]]]:
    shared = [(f"shared:{p.relative_to(DATASETS)}", (lambda d, p=p: p)) for p in sorted(DATASETS.rglob("*.json*"))]
    return shared + list(HOSTILE.items())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "make"), _corpus(), ids=[name for name, _ in _corpus()])
def test_check_and_convert_never_crash(name: str, make: Callable[[Path], Path], tmp_path: Path) -> None:
    source = make(tmp_path)
    checked = _run("check", str(source), "--format", "json", cwd=tmp_path)
    _assert_clean_exit(checked, (0, 1, 2))
    if checked.returncode in (0, 1):
        report = json.loads(checked.stdout)
        lines = source.read_bytes().count(b"\n") + 1
        assert all(1 <= d["line"] <= lines for d in report["diagnostics"] if d.get("line")), name
        assert (checked.returncode == 1) == (report["errors"] > 0), name
        as_text = _run("check", str(source), cwd=tmp_path)  # the rich report prints whatever the data holds
        assert as_text.returncode == checked.returncode and "Traceback" not in as_text.stderr, as_text.stderr[-3000:]
    out = tmp_path / "out" / "converted.jsonl"
    out.parent.mkdir()
    converted = _run("convert", str(source), "-o", str(out), cwd=tmp_path)
    _assert_clean_exit(converted, (0, 1, 2))
    assert not _leftovers(out.parent), "a half-written output was left behind"
    if converted.returncode == 2:
        assert not out.exists() and "error" in converted.stderr.lower()
    else:  # whatever was converted is a clean chat file
        _assert_clean_exit(_run("check", str(out), "--format", "json", cwd=tmp_path), (0, 1, 2))


def test_the_corpus_covers_every_shared_file() -> None:
    # the corpus is built at collection time; without ../shared it would silently shrink to the hostile inputs
    assert DATASETS.is_dir(), f"{DATASETS} is missing: tests need ../shared beside the repository"
    names = {name for name, _ in _corpus()}
    assert len([n for n in names if n.startswith("shared:")]) >= 10
