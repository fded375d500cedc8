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
    assert result.exit_code == 1 and "line 2: a: missing" in result.stderr
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


def test_mapping_a_role_twice_is_a_usage_error_that_names_the_template(tmp_path: Path) -> None:
    source = tmp_path / "nli.jsonl"
    source.write_text(json.dumps({"premise": "p", "hypothesis": "h", "label": "yes"}) + "\n", encoding="utf-8")
    base = ["convert", str(source), "-o", str(tmp_path / "o.jsonl"), "--map", "assistant=label"]
    twice = runner.invoke(app, [*base, "--map", "user=premise", "--map", "user=hypothesis"])
    assert twice.exit_code == 2 and "--map user is given twice" in twice.stderr and "template" in twice.stderr
    assert not (tmp_path / "o.jsonl").exists()
    assert runner.invoke(app, [*base, "--map", "robot=premise"]).exit_code == 2
    unmatched = runner.invoke(app, [*base, "--map", "user={premise"])
    assert unmatched.exit_code == 2 and "unmatched" in unmatched.stderr
    template = runner.invoke(app, [*base, "--map", r"user={premise}\n\n{hypothesis}"])
    assert template.exit_code == 0, template.output
    user = json.loads((tmp_path / "o.jsonl").read_text())["messages"][0]
    assert user == {"role": "user", "content": "p\n\nh"}


def test_kto_from_the_command_line(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": a}], "label": ok}
        for a, ok in (("4", True), ("5", False), ("four", True))
    ]
    source = tmp_path / "kto.json"
    source.write_text(json.dumps(rows), encoding="utf-8")
    refused = runner.invoke(app, ["convert", str(source), "-o", str(tmp_path / "o.jsonl")])
    assert refused.exit_code == 2 and "FT107" in refused.stderr and "--kto-to dpo" in refused.stderr
    paired = runner.invoke(app, ["--json", "convert", str(source), "-o", str(tmp_path / "o.jsonl"), "--kto-to", "dpo"])
    assert paired.exit_code == 0, paired.output
    document = json.loads(paired.stdout)
    assert document["written"] == 1 and document["dropped"] == {
        "answers without a partner of the other label (--kto-to dpo)": 1
    }
    assert runner.invoke(app, ["check", str(tmp_path / "o.jsonl"), "--ignore", "FT401"]).exit_code == 0


def test_images_beside_the_data_file_and_images_skip(tmp_path: Path) -> None:
    from tests.unit.data.test_convert_formats import png

    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(png())
    rows = [
        {"messages": [{"role": "user", "content": f"<image>{n}?"}, {"role": "assistant", "content": "ok"}],
         "images": [f"pics/{n}.png"]}
        for n in ("a", "b")
    ]  # fmt: skip
    source = tmp_path / "mllm.json"
    source.write_text(json.dumps(rows), encoding="utf-8")
    output = tmp_path / "o.jsonl"
    refused = runner.invoke(app, ["convert", str(source), "-o", str(output)], env={"COLUMNS": "300"})
    assert (
        refused.exit_code == 1 and f"record 2: images[0]: image {tmp_path / 'pics/b.png'} not found" in refused.stderr
    )
    skipped = runner.invoke(app, ["convert", str(source), "-o", str(output), "--force", "--images", "skip"])
    assert skipped.exit_code == 0 and "dropped 1 records with a missing image" in skipped.stderr
    assert len(output.read_text().splitlines()) == 1


def test_a_llamafactory_v1_file_is_detected_and_placeholders_are_reported(tmp_path: Path) -> None:
    user = {"role": "user", "content": [{"type": "text", "value": "Who are you?"}], "loss_weight": 0.0}
    answer = {"role": "assistant", "content": [{"type": "text", "value": "I am {{name}}."}], "loss_weight": 1.0}
    rows = [{"messages": [user, answer]}]
    source = tmp_path / "v1.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = runner.invoke(app, ["convert", str(source), "-o", str(tmp_path / "o.jsonl")], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "detected: llamafactory-v1" in result.stderr
    assert "FT234 1 record holds unfilled template placeholders ({{name}}; first at line 1)" in result.stderr


def test_together_text_is_refused_naming_why(tmp_path: Path) -> None:
    source = tmp_path / "c4.jsonl"
    source.write_text(json.dumps({"text": "plain words"}) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["convert", str(source), "-o", str(tmp_path / "o.jsonl")], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "trains only on Together" in result.stderr
