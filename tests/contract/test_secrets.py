"""API keys never appear in any output, log, manifest, config, export or error: every command runs (as a user runs
it, in a subprocess, with --debug logging) with a known canary key, against Steady, against a closed port, and
against `ftcli serve` refusing the key with 401; then every byte printed or written is searched for it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

CANARY = "sk-ftcli-canary-7f3a9c2e5b1d0a4468e2"
FRAGMENTS = (CANARY, "7f3a9c2e5b1d", "canary-7f3a")  # any recognisable piece of it is a leak

pytestmark = pytest.mark.contract


def _lines(count: int) -> str:
    return "".join(
        json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}) + "\n"
        for i in range(count)
    )


class Runner:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.outputs: list[tuple[str, str]] = []
        self.env = {
            **os.environ,
            "OPENAI_API_KEY": CANARY,
            "AZURE_OPENAI_API_KEY": CANARY,
            "MY_KEY": CANARY,
            "FTCLI_CONFIG_DIR": str(home / "config"),
            "FTCLI_DATA_DIR": str(home / "data"),
            "FTCLI_PROFILE": "",
            "OPENAI_BASE_URL": "",
            "COLUMNS": "200",
        }

    def __call__(self, *args: str, stdin: str | None = None) -> int:
        result = subprocess.run(
            [sys.executable, "-m", "ftcli", "--debug", *args],
            capture_output=True,
            text=True,
            cwd=self.home,
            env=self.env,
            input=stdin,
            timeout=120,
        )
        self.outputs.append((" ".join(args), result.stdout + result.stderr))
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        return result.returncode


def test_no_command_prints_or_writes_the_key(steady_url: str, tmp_path: Path) -> None:
    run = Runner(tmp_path)
    data = tmp_path / "train.jsonl"
    data.write_text(_lines(12))
    (tmp_path / "prompts.jsonl").write_text(_lines(2))
    url = ["--base-url", steady_url]

    # Local commands
    assert run("convert", str(data), "-o", "converted.jsonl") == 0
    assert run("check", str(data)) == 0 and run("--json", "check", str(data)) == 0
    assert run("rules") == 0
    # Profiles (keys only by environment variable name)
    assert run("profile", "add", "steady", "--base-url", steady_url, "--api-key-env", "MY_KEY", "--use") == 0
    assert run("profile", "list") == 0 and run("--json", "profile", "list") == 0
    config = tmp_path / "config"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in config.rglob("*") if p.is_file())

    # Every remote verb, plain and --json, through the profile and through --base-url (the current profile outranks
    # OPENAI_API_KEY; --profile names it all the same)
    profile = ["--profile", "steady"]
    # (Steady answers with random valid objects, so a command may end 1 on, say, a file "error" status; what is
    # tested is what each prints and writes)
    assert run(*profile, "upload", str(data)) in (0, 1) and run(
        "--json", *url, "upload", str(data), "--multipart", "--force"
    ) in (0, 1)
    assert run(*url, "train", "--file", str(data), "--model", "gpt-4o-mini-2024-07-18", "--yes") in (0, 1)
    assert run("--json", *profile, "train", "--file", str(data), "--model", "gpt-4.1-mini-2025-04-14", "--yes") in (
        0,
        1,
    )
    for args in (
        ("status",),
        ("--json", "status"),
        ("status", "ftjob-abc123", "--events", "--checkpoints"),
        ("--json", "status", "ftjob-abc123", "--events"),
        ("cancel", "ftjob-abc123", "--yes"),
        ("pause", "ftjob-abc123"),
        ("resume", "ftjob-abc123"),
        ("chat", "--model", "gpt-4o-mini", "--no-stream", "hello"),
        ("--json", "models"),
        ("models", "--fine-tuned"),
        ("export", "--out", "exported", "--job", "ftjob-abc123"),
        ("export", "--golden", "prompts.jsonl", "--model", "gpt-4o-mini", "--out", "golden.jsonl"),
    ):
        assert run(*profile, *args) in (0, 1, 2, 3)

    # Failing ones: a closed port, a missing file, a bad option
    closed = ["--base-url", "http://127.0.0.1:9/v1"]
    assert run(*closed, "status") != 0 and run("--json", *closed, "chat", "--model", "m", "hi") != 0
    assert run(*closed, "upload", str(data), "--force") != 0
    assert run("upload", "missing.jsonl") == 2 and run("train", "--model", "m") == 2

    _assert_nowhere(run, tmp_path)
    reached = [command for command, output in run.outputs if "ftjob" in output or "file-" in output]
    assert len(reached) >= 5, run.outputs  # the verbs really talked to the backend


def test_a_rejected_key_is_not_echoed(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="needs the local extra")
    from tests.e2e.conftest import start_server, stop_server

    server = start_server(tmp_path / "server", env={"FTCLI_SERVER_API_KEY": "the-servers-own-key"})
    try:
        run = Runner(tmp_path)
        assert run("--base-url", server.url, "status") != 0
        assert run("--json", "--base-url", server.url, "chat", "--model", "ftcli/tiny", "hi") != 0
        assert any("401" in out or "key" in out.lower() for _, out in run.outputs)
        _assert_nowhere(run, tmp_path)
    finally:
        stop_server(server)


def _assert_nowhere(run: Runner, root: Path) -> None:
    for command, output in run.outputs:
        for fragment in FRAGMENTS:
            assert fragment not in output, f"`ftcli {command}` printed the key"
    for path in root.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for fragment in FRAGMENTS:
                assert fragment.encode() not in content, f"{path} holds the key"


TOGETHER_CANARY = "tgp_v1_ftcliCanary9d8e7f6a5b4c3d2e1f0"
TOGETHER_FRAGMENTS = (TOGETHER_CANARY, "9d8e7f6a5b4c", "ftcliCanary")


def test_no_command_prints_or_writes_togethers_key(together_url: str, tmp_path: Path) -> None:
    """The same canary hunt on the Together backend (issue 15), against Steady serving Together's spec."""
    run = Runner(tmp_path)
    run.env["TOGETHER_API_KEY"] = TOGETHER_CANARY
    data = tmp_path / "train.jsonl"
    data.write_text(_lines(12))
    assert run("profile", "add", "tg", "--kind", "together", "--base-url", together_url) == 0
    profile = ["--profile", "tg"]
    model = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
    for args in (
        ("upload", str(data)),
        ("--json", "train", "--file", str(data), "--model", model, "--yes"),
        ("status",),
        ("--json", "status", "ft-0123", "--events", "--checkpoints"),
        ("cancel", "ft-0123", "--yes"),
        ("pause", "ft-0123"),
        ("chat", "--model", "acme/legal", "--no-stream", "hello"),
        ("--json", "models", "--trainable"),
        ("export", "--out", "exported", "--job", "ft-0123", "--weights", "adapter"),
    ):
        assert run(*profile, *args) in (0, 1, 2, 3)
    assert run("profile", "add", "closed", "--kind", "together", "--base-url", "http://127.0.0.1:9/v1") == 0
    assert run("--json", "--profile", "closed", "status") != 0  # the error must not show the key either
    for command, output in run.outputs:
        for fragment in TOGETHER_FRAGMENTS:
            assert fragment not in output, f"`ftcli {command}` printed the key"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            for fragment in TOGETHER_FRAGMENTS:
                assert fragment.encode() not in path.read_bytes(), f"{path} holds the key"
    reached = [command for command, output in run.outputs if "ft-" in output or "file-" in output]
    assert len(reached) >= 3, run.outputs


GATEWAY_CANARY = "myGateway_c4n4ryX9wQ2e"  # no known key pattern: only its value gives it away
GATEWAY_FRAGMENTS = (GATEWAY_CANARY, "c4n4ryX9wQ2e")


def test_a_key_without_a_known_pattern_echoed_in_a_401_is_not_printed(tmp_path: Path) -> None:
    """Issue 29: a gateway that echoes the key in its 401 (a real server on loopback, named for it by a profile);
    every way ftcli prints, as a user runs it (subprocess, --debug), plain and --json."""
    from tests.cli.loopback_server import echo_the_key_in_a_401, loopback_server

    run = Runner(tmp_path)
    run.env["GW_KEY"] = GATEWAY_CANARY
    with loopback_server(echo_the_key_in_a_401) as gateway:
        assert run("profile", "add", "gw", "--base-url", gateway.url, "--api-key-env", "GW_KEY", "--use") == 0
        for args in (("models",), ("--json", "models"), ("status",), ("--json", "chat", "--model", "m", "hi")):
            assert run(*args) == 1
    assert gateway.authorizations and all(GATEWAY_CANARY in sent for sent in gateway.authorizations)
    assert all("401" in output for command, output in run.outputs if not command.startswith("profile"))
    for command, output in run.outputs:
        for fragment in (*GATEWAY_FRAGMENTS, *FRAGMENTS):
            assert fragment not in output, f"`ftcli {command}` printed the key"
