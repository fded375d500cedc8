from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftcli.data.check.engine import check_file
from ftcli.data.convert.pipeline import ConvertOptions, arrange, convert_file, convert_text
from ftcli.data.convert.presets import PresetOptions
from ftcli.data.convert.sources import read_text
from ftcli.data.errors import DataError

OLD, NEW = "你一个名叫ChatLAW，由北京大学团队开发的人工智能助理：", "你一个人工智能法律助理："


def seed_reference(path: Path) -> bytes:
    """The walk-through's make_dataset.py, as the issue states it."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        messages = [{"role": "system", "content": entry["meta_instruction"].replace(OLD, NEW)}]
        for turn in entry["chat"]:
            messages += [{"role": "user", "content": turn["咨询者"]}, {"role": "assistant", "content": turn["ChatLAW"]}]
        out.append(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return "".join(out).encode("utf-8")


def run(text: str, name: str = "in.jsonl", **kwargs: object) -> tuple[list[dict[str, object]], object]:
    lines, result = convert_text(text, name=name, options=ConvertOptions(**kwargs))  # type: ignore[arg-type]
    return [json.loads(line) for line in lines], result


def test_chatlaw_reproduces_the_seed_byte_for_byte(datasets: Path, tmp_path: Path) -> None:
    source = datasets / "chatlaw/demo_data_法律咨询.jsonl"
    output = tmp_path / "fine_tuning.jsonl"
    result = convert_file(
        read_text(source),
        name=str(source),
        output=output,
        validation_output=None,
        inputs=[source],
        options=ConvertOptions(preset="chatlaw", preset_options=PresetOptions(system_replace=((OLD, NEW),))),
    )
    assert output.read_bytes() == seed_reference(source)
    assert result.written == 20 and not result.skipped
    report = check_file(output)
    assert report.errors == 0 and report.warnings == 0 and report.examples == 20


def test_alpaca_demo(datasets: Path) -> None:
    text = read_text(datasets / "llamafactory/alpaca_en_demo.json")
    records, result = run(text, name="alpaca_en_demo.json")
    assert result.preset == "alpaca" and result.detected and len(records) == 999  # type: ignore[attr-defined]
    raw = json.loads(text)
    with_input = [i for i, r in enumerate(raw) if r["input"].strip()]
    assert len(with_input) == 412
    first = records[with_input[0]]["messages"]
    assert first[0]["content"] == raw[with_input[0]]["instruction"] + "\n" + raw[with_input[0]]["input"]
    assert [m["role"] for m in first] == ["user", "assistant"]


def test_sharegpt_tool_calls(datasets: Path) -> None:
    records, result = run(read_text(datasets / "llamafactory/glaive_toolcall_en_demo.json"), name="g.json")
    assert result.preset == "sharegpt" and len(records) == 300  # type: ignore[attr-defined]
    with_calls = [r for r in records if any("tool_calls" in m for m in r["messages"])]  # type: ignore[union-attr]
    example = with_calls[0]
    assert isinstance(example["tools"], list) and example["tools"][0]["type"] == "function"
    messages = example["messages"]
    call_index = next(i for i, m in enumerate(messages) if "tool_calls" in m)
    call = messages[call_index]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"])  # arguments are a JSON string
    assert messages[call_index + 1] == {**messages[call_index + 1], "role": "tool", "tool_call_id": call["id"]}


def test_sharegpt_preference_to_dpo(datasets: Path) -> None:
    text = read_text(datasets / "llamafactory/dpo_en_demo.json")
    records, _ = run(text, name="dpo.json")
    assert len(records) == 300
    raw = json.loads(text)
    assert records[0]["preferred_output"] == [{"role": "assistant", "content": raw[0]["chosen"]["value"]}]
    assert records[0]["non_preferred_output"] == [{"role": "assistant", "content": raw[0]["rejected"]["value"]}]
    with_system = [r for r in records if r["input"]["messages"][0]["role"] == "system"]  # type: ignore[index]
    assert len(with_system) == 80


def test_converted_files_pass_check(datasets: Path, tmp_path: Path) -> None:
    for name, method in (
        ("alpaca_en_demo.json", "sft"),
        ("glaive_toolcall_en_demo.json", "sft"),
        ("dpo_en_demo.json", "dpo"),
    ):
        source = datasets / "llamafactory" / name
        output = tmp_path / f"{name}.jsonl"
        convert_file(
            read_text(source),
            name=name,
            output=output,
            validation_output=None,
            inputs=[source],
            options=ConvertOptions(),
        )
        report = check_file(output)
        assert report.method == method
        assert report.errors == 0, [d for d in report.diagnostics if d.severity.value == "error"][:3]


def test_prompt_completion_strips_separator_and_stop(datasets: Path) -> None:
    records, result = run(read_text(datasets / "legacy-prompt-completion/semaphore_data1.jsonl"))
    assert result.preset == "prompt-completion" and len(records) == 101  # type: ignore[attr-defined]
    user, assistant = records[0]["messages"]  # type: ignore[misc]
    assert not user["content"].endswith("###") and not assistant["content"].endswith("END")
    assert not assistant["content"].startswith(" ")


def test_field_map_csv_and_system() -> None:
    text = 'question,answer,topic\nWhat is 2+2?,4,math\n"Quoted, comma",yes,misc\n'
    records, result = run(
        text,
        name="qa.csv",
        preset_options=PresetOptions(field_map={"user": "question", "assistant": "answer"}, system="Be exact."),
    )
    assert result.preset == "map"  # type: ignore[attr-defined]
    assert records[1]["messages"] == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Quoted, comma"},
        {"role": "assistant", "content": "yes"},
    ]


def test_bad_records_are_reported_and_the_rest_convert() -> None:
    text = "\ufeff" + "\n".join(
        [
            json.dumps({"instruction": "a", "input": "", "output": "b"}),
            "{broken",
            json.dumps({"instruction": "c", "input": "", "output": ""}),
            json.dumps({"instruction": "d", "input": "", "output": "e"}),
        ]
    )
    records, result = run(text)
    assert len(records) == 2
    assert [(s.location, s.reason) for s in result.skipped] == [  # type: ignore[attr-defined]
        ("line 2", "invalid JSON at column 2: Expecting property name enclosed in double quotes"),
        ("line 3", "output: is empty"),
    ]


def test_pretty_printed_document_converts(datasets: Path) -> None:
    records, result = run(read_text(datasets / "malformed/mistral_cookbook_60_pretty_printed.jsonl"))
    assert result.preset == "openai" and len(records) == 1  # type: ignore[attr-defined]


def test_undetectable_input_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="cannot tell the format of line 1"):
        run(json.dumps({"foo": 1}))


def test_dedup_and_split_keep_examples_apart() -> None:
    lines = [f"{i % 30}\n" for i in range(60)]  # each line twice
    train, validation = arrange(lines, shuffle=True, split=0.2, seed=7)
    assert len(train) + len(validation) == 60
    assert not set(train) & set(validation)
    assert arrange(lines, shuffle=True, split=0.2, seed=7) == (train, validation)
    assert arrange(lines, shuffle=True, split=0.2, seed=8) != (train, validation)
    text = "\n".join(json.dumps({"instruction": "q", "input": "", "output": "a"}) for _ in range(3))
    records, result = run(text, dedup=True)
    assert len(records) == 1 and result.duplicates_dropped == 2  # type: ignore[attr-defined]


def test_never_overwrites_input_or_existing_output(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"instruction": "q", "input": "", "output": "a"}) + "\n")
    before = source.read_bytes()
    options = ConvertOptions(force=True)
    with pytest.raises(DataError, match="never overwrites its input"):
        convert_file(
            read_text(source), name="in", output=source, validation_output=None, inputs=[source], options=options
        )
    assert source.read_bytes() == before
    existing = tmp_path / "out.jsonl"
    existing.write_text("keep me")
    with pytest.raises(DataError, match="already exists"):
        convert_file(
            read_text(source),
            name="in",
            output=existing,
            validation_output=None,
            inputs=[source],
            options=ConvertOptions(),
        )
    assert existing.read_text() == "keep me"


def test_nothing_convertible_leaves_no_output(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"instruction": "q", "input": "", "output": ""}) + "\n")
    output = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match="no record"):
        convert_file(
            read_text(source),
            name="in",
            output=output,
            validation_output=None,
            inputs=[source],
            options=ConvertOptions(),
        )
    assert list(tmp_path.iterdir()) == [source]


def test_converting_twice_gives_the_same_bytes(datasets: Path) -> None:
    text = read_text(datasets / "llamafactory/glaive_toolcall_en_demo.json")
    once, _ = convert_text(text, name="g.json", options=ConvertOptions())
    twice, result = convert_text("".join(once), name="g.jsonl", options=ConvertOptions())
    assert result.preset == "openai" and twice == once
