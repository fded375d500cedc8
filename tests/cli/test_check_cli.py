from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ftcli.cli.app import app
from tests.conftest import chat, qa

runner = CliRunner()


def test_clean_file_exits_0_and_shows_stats(write_jsonl) -> None:  # type: ignore[no-untyped-def]
    path = write_jsonl([qa(i) for i in range(12)])
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "12 examples" in result.stdout and "estimated cost $" in result.stdout
    assert "ok: 0 errors, 0 warnings" in result.stdout


def test_errors_exit_1_with_line_and_code(write_jsonl) -> None:  # type: ignore[no-untyped-def]
    path = write_jsonl([qa(i) for i in range(12)] + ['{"messages": [}'])
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:13:15: FT002 error" in result.stdout


def test_strict_makes_warnings_fail(write_jsonl) -> None:  # type: ignore[no-untyped-def]
    path = write_jsonl([qa(i) for i in range(12)] + [chat(("system", "s"), ("assistant", "no user"))])
    assert runner.invoke(app, ["check", str(path)]).exit_code == 0
    assert runner.invoke(app, ["check", str(path), "--strict"]).exit_code == 1
    assert runner.invoke(app, ["check", str(path), "--strict", "--ignore", "FT231"]).exit_code == 0


def test_json_format_schema(datasets: Path) -> None:
    result = runner.invoke(
        app,
        [
            "check",
            str(datasets / "openai-cookbook/toy_chat_fine_tuning.jsonl"),
            "--model",
            "gpt-3.5-turbo-0125",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["version"] == 2 and data["examples"] == 5
    assert {"examples", "diagnostics", "errors", "warnings", "statistics", "estimate"} <= set(data)
    for diagnostic in data["diagnostics"]:
        assert {"line", "code", "severity", "path", "message"} <= set(diagnostic)
    assert data["errors"] == 1 and data["warnings"] == 3
    assert data["statistics"]["tokens_per_example"]["max"] == 8032
    assert sorted(e["tokens"] for e in data["largest_examples"]) == [26, 28, 45, 111, 8032]


def test_github_format(datasets: Path) -> None:
    path = datasets / "malformed/semaphore_data3_unescaped_quotes_line6.jsonl"
    result = runner.invoke(app, ["check", str(path), "--format", "github"])
    assert result.exit_code == 1
    assert any(
        line.startswith("::error file=") and ",line=6," in line and "title=FT002::" in line
        for line in result.stdout.splitlines()
    )
    assert result.stdout.splitlines()[-1] == "ftcli check: 0 examples, 2 errors, 0 warnings"


def test_stdin(write_jsonl) -> None:  # type: ignore[no-untyped-def]
    data = write_jsonl([qa(i) for i in range(3)]).read_text()
    result = runner.invoke(app, ["check", "-", "--format", "json"], input=data)
    report = json.loads(result.stdout)
    assert report["file"] == "<stdin>" and report["examples"] == 3
    assert result.exit_code == 1  # fewer than 10 examples


def test_usage_and_io_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["check", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    assert "Traceback" not in missing.output
    directory = runner.invoke(app, ["check", str(tmp_path)])
    assert directory.exit_code == 2 and "is a directory" in directory.stderr
    bad_option = runner.invoke(app, ["check", str(tmp_path), "--format", "xml"])
    assert bad_option.exit_code == 2


def test_rules_lists_every_code() -> None:
    result = runner.invoke(app, ["rules", "--json"])
    codes = [rule["code"] for rule in json.loads(result.stdout)]
    assert codes == sorted(codes) and {"FT002", "FT204", "FT504", "FT404"} <= set(codes)


def test_installed_command_and_module_entry_point(write_jsonl) -> None:  # type: ignore[no-untyped-def]
    path = write_jsonl([qa(i) for i in range(10)])
    module = subprocess.run(
        [sys.executable, "-m", "ftcli", "check", str(path), "-f", "json"], capture_output=True, text=True, check=False
    )
    assert module.returncode == 0, module.stderr
    assert json.loads(module.stdout)["examples"] == 10
    version = subprocess.run(
        [str(Path(sys.executable).parent / "ftcli"), "--version"], capture_output=True, text=True, check=False
    )
    assert version.returncode == 0 and version.stdout.startswith("ftcli ")


def test_root_help_is_fast_because_it_loads_no_command() -> None:
    import subprocess
    import sys

    from ftcli.cli.app import COMMANDS, load_command

    probe = (
        "import sys; from ftcli.cli.app import main; sys.argv = ['ftcli', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ftcli.cli.', 'openai', 'rich.table', 'tiktoken'))))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert all(f"  {name} " in result.stdout for name in COMMANDS)
    assert result.stdout.strip().splitlines()[-1] == "['ftcli.cli.app', 'ftcli.cli.context']"
    assert all(load_command(name).name == name for name in COMMANDS)  # and every entry does load


def test_status_web_prints_the_jobs_page_on_the_local_backend(tmp_path: Path) -> None:
    env = {"FTCLI_CONFIG_DIR": str(tmp_path), "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
    result = CliRunner().invoke(
        app, ["--base-url", "http://127.0.0.1:8765/v1", "status", "ftjob-abc", "--web"], env=env
    )
    assert result.exit_code == 0 and result.stdout.strip() == "http://127.0.0.1:8765/#/jobs/ftjob-abc"
    plain = CliRunner().invoke(app, ["status", "--web"], env=env)
    assert plain.exit_code == 2 and "--web needs a local backend" in plain.output


def test_raw_data_on_stdin_gets_a_convert_command_that_reads_stdin() -> None:
    rows = "".join(json.dumps({"instruction": f"q{i}", "input": "", "output": "a"}) + "\n" for i in range(3))
    result = runner.invoke(app, ["check", "-", "--format", "json"], input=rows)
    assert result.exit_code == 1
    (finding,) = json.loads(result.stdout)["diagnostics"]
    assert finding["code"] == "FT105" and finding["file"] == "<stdin>"
    assert finding["fix"]["hint"] == "ftcli convert - -o converted.jsonl --preset alpaca"


def test_raw_data_has_no_statistics_and_no_estimate_rather_than_zeros() -> None:
    rows = "".join(json.dumps({"instruction": f"q{i}", "input": "", "output": "a"}) + "\n" for i in range(3))
    result = runner.invoke(app, ["check", "-", "--format", "json"], input=rows)
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert (data["examples"], data["statistics"], data["estimate"], data["largest_examples"]) == (0, None, None, [])
    assert "estimated cost" not in runner.invoke(app, ["check", "-"], input=rows).stdout  # the text view agrees
