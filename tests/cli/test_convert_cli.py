from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ftcli.cli.app import app

runner = CliRunner()
REPLACE = "你一个名叫ChatLAW，由北京大学团队开发的人工智能助理：=你一个人工智能法律助理："


def test_chatlaw_command_from_the_issue(datasets: Path, tmp_path: Path) -> None:
    output = tmp_path / "fine_tuning.jsonl"
    result = runner.invoke(
        app,
        [
            "convert",
            str(datasets / "chatlaw/demo_data_法律咨询.jsonl"),
            "-o",
            str(output),
            "--preset",
            "chatlaw",
            "--system-replace",
            REPLACE,
        ],
    )
    assert result.exit_code == 0, result.output
    first = json.loads(output.read_text(encoding="utf-8").splitlines()[0])
    assert first["messages"][0]["content"].startswith("你一个人工智能法律助理：")
    assert "wrote 20 records" in result.stderr


def test_detection_is_printed(datasets: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["convert", str(datasets / "llamafactory/alpaca_en_demo.json"), "-o", str(tmp_path / "a.jsonl")]
    )
    assert result.exit_code == 0 and "detected: alpaca" in result.stderr


def test_skipped_records_exit_1_unless_skip_invalid(tmp_path: Path) -> None:
    source = tmp_path / "raw.jsonl"
    source.write_text('{"q": "a", "a": "b"}\n{"q": "c"}\n', encoding="utf-8")
    args = ["convert", str(source), "-o", str(tmp_path / "out.jsonl"), "--map", "user=q", "--map", "assistant=a"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "line 2: a: missing or empty" in result.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1
    assert runner.invoke(app, [*args, "--force", "--skip-invalid"]).exit_code == 0


def test_split_writes_two_files(datasets: Path, tmp_path: Path) -> None:
    output = tmp_path / "train.jsonl"
    result = runner.invoke(
        app,
        [
            "convert",
            str(datasets / "llamafactory/alpaca_en_demo.json"),
            "-o",
            str(output),
            "--split",
            "0.1",
            "--seed",
            "3",
            "--dedup",
        ],
    )
    assert result.exit_code == 0, result.output
    train = set(output.read_text().splitlines())
    validation = set((tmp_path / "train.validation.jsonl").read_text().splitlines())
    assert len(validation) == round(len(train | validation) * 0.1) and not train & validation


def test_refuses_to_overwrite(tmp_path: Path, datasets: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_text("mine")
    result = runner.invoke(app, ["convert", str(datasets / "llamafactory/alpaca_en_demo.json"), "-o", str(output)])
    assert result.exit_code == 2 and "already exists" in result.stderr and output.read_text() == "mine"


def test_bad_map_syntax_is_a_usage_error(tmp_path: Path) -> None:
    source = tmp_path / "raw.jsonl"
    source.write_text('{"q": "a"}\n')
    result = runner.invoke(app, ["convert", str(source), "-o", str(tmp_path / "o.jsonl"), "--map", "user"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr
