"""Issue 23: every dataset format converts faithfully or is refused naming why. KTO data, `--map` templates,
LLaMA-Factory's v1 chat and preference formats (reasoning, tool calls, loss_weight), images with `<image>`
placeholders, reasoning fields, empty prompts and unfilled placeholders — each on small fixtures built here, shaped
after LLaMA-Factory's data/ demos (kto_en_demo.json, mllm_demo.json, v1_sft/v1_dpo/v1_multimodal_demo.jsonl,
reason_tool_use_demo_50.jsonl), and every file convert writes passes `check` with no error."""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from ftcli.data.check.engine import CheckOptions, check_file
from ftcli.data.convert.pipeline import ConvertOptions, ConvertResult, convert_file, convert_text
from ftcli.data.convert.presets import PresetOptions, parse_map
from ftcli.data.errors import DataError

Record = dict[str, Any]


def png(width: int = 1, height: int = 1) -> bytes:
    """A real (tiny, grey) PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def run(records: list[Any] | str, **kwargs: Any) -> tuple[list[Record], ConvertResult]:
    text = records if isinstance(records, str) else "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    lines, result = convert_text(text, name="in.jsonl", options=ConvertOptions(**kwargs))
    return [json.loads(line) for line in lines], result


def assert_checks_clean(records: list[Record], tmp_path: Path, method: str | None = None) -> None:
    path = tmp_path / "converted.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    report = check_file(path, options=CheckOptions(workers=1, method=method, model="acme-open-base", ignore=("FT401",)))
    assert report.errors == 0, [d for d in report.diagnostics if d.severity.value == "error"]


def v1(role: str, *parts: tuple[str, str], loss_weight: float | None = None) -> Record:
    message: Record = {"role": role, "content": [{"type": kind, "value": value} for kind, value in parts]}
    if loss_weight is not None:
        message["loss_weight"] = loss_weight
    return message


# -- KTO ----------------------------------------------------------------------------------------------------


def kto(prompt: str, answer: str, label: bool, column: str = "label") -> Record:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], column: label}


KTO = [
    kto("What is 2+2?", "4", True),
    kto("What is 2+2?", "5", False),
    kto("Capital of France?", "Paris", True),
    kto("What is 2+2?", "Four.", True),
    kto("Name a prime.", "9", False),
]


def test_kto_data_is_refused_without_kto_to_naming_the_reason_and_the_options() -> None:
    with pytest.raises(DataError) as refused:
        run(KTO)
    assert "5 of 5 records carry a true/false 'label'" in refused.value.message
    assert "answers labelled false would be trained as targets (FT107)" in refused.value.message
    assert "--kto-to dpo" in (refused.value.hint or "") and "--kto-to sft" in (refused.value.hint or "")
    with pytest.raises(DataError, match="FT107"):  # also when the preset is named, and in ShareGPT's kto_tag
        run([{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "kto_tag": False}])


def test_kto_to_dpo_pairs_a_prompts_answers_and_counts_the_unpaired(tmp_path: Path) -> None:
    records, result = run(KTO, kto_to="dpo")
    assert records == [
        {
            "input": {"messages": [{"role": "user", "content": "What is 2+2?"}]},
            "preferred_output": [{"role": "assistant", "content": "4"}],
            "non_preferred_output": [{"role": "assistant", "content": "5"}],
        }
    ]
    assert result.dropped == {"answers without a partner of the other label (--kto-to dpo)": 3}
    assert not result.skipped
    assert_checks_clean(records, tmp_path, method="dpo")


def test_kto_to_sft_keeps_only_the_desirable_answers(tmp_path: Path) -> None:
    records, result = run(KTO, kto_to="sft")
    assert [r["messages"][-1]["content"] for r in records] == ["4", "Paris", "Four."]
    assert all("label" not in r for r in records)
    assert result.dropped == {"answers labelled false (--kto-to sft)": 2}
    assert_checks_clean(records, tmp_path)


def test_kto_labels_written_as_text_in_a_csv_are_kto_too() -> None:
    """The review's case: CSV has no booleans, so `True`/`False` arrive as text; they were left out as an unread
    column and the undesirable answer became a training target."""
    csv = "prompt,completion,label\nWhat is 2+2?,4,True\nWhat is 2+2?,5,false\n"
    with pytest.raises(DataError, match="FT107"):
        convert_text(csv, name="k.csv", options=ConvertOptions())
    lines, _ = convert_text(csv, name="k.csv", options=ConvertOptions(kto_to="dpo"))
    pair = json.loads(lines[0])
    assert pair["preferred_output"][0]["content"] == "4" and pair["non_preferred_output"][0]["content"] == "5"
    with pytest.raises(DataError, match="FT107"):  # kto_tag's name says what it is: 1 and 0 count there
        run([kto("q", "a", True, column="kto_tag") | {"kto_tag": 0}])


def test_a_label_of_zero_or_one_is_a_class_not_kto() -> None:
    """`label: 0/1` may be the target of a classification set (`--map assistant=label`): not taken for KTO."""
    records, _ = mapped([{"question": "2+2=4?", "label": 1}], user="question", assistant="label")
    assert records[0]["messages"][-1]["content"] == "1"


def test_kto_to_on_data_without_labels_is_an_error() -> None:
    with pytest.raises(DataError, match="no record carries a true/false label"):
        run([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}], kto_to="sft")


# -- --map templates ----------------------------------------------------------------------------------------

NLI = {"premise": "A man plays.", "hypothesis": "Someone plays.", "label": {"name": "entailment", "id": 0}}


def mapped(records: list[Record], **field_map: str) -> tuple[list[Record], ConvertResult]:
    return run(records, preset_options=PresetOptions(field_map=field_map))


def test_map_template_puts_two_fields_in_one_message() -> None:
    records, result = mapped([NLI], user=r"{premise}\n\n{hypothesis}", assistant="label.name")
    assert records[0]["messages"] == [
        {"role": "user", "content": "A man plays.\n\nSomeone plays."},
        {"role": "assistant", "content": "entailment"},
    ]
    assert result.ignored_keys == {}  # premise, hypothesis and label are all read


def test_map_template_braces_escapes_numbers_and_lists() -> None:
    record = {"q": "Sum?", "parts": ["a", "b"], "n": 3, "answers": {"text": ["x", "y"]}}
    records, _ = mapped([record], user="{{literal}} {q}\\t{n}", assistant="parts", reasoning="answers.text.1")
    user, answer = records[0]["messages"]
    assert user["content"] == "{literal} Sum?\t3"
    assert answer == {"role": "assistant", "content": "a\nb", "reasoning_content": "y"}  # a list: one per line
    assert parse_map("question") == [("field", "question")]
    with pytest.raises(ValueError, match="unmatched"):
        parse_map("{open")


def test_map_refuses_objects_and_names_the_field() -> None:
    _, result = mapped([{"q": "a", "a": [{"t": "x"}]}, {"q": "b", "a": {"t": "y"}}], user="q", assistant="a")
    assert [s.reason for s in result.skipped] == [
        "a: is a list of objects or lists: map a path into it, e.g. a.0.FIELD",
        "a: is an object: map a path into it",
    ]


def test_map_reports_the_keys_it_leaves_out() -> None:
    _, result = mapped([{"q": "a", "a": "b", "topic": "math", "empty": ""}], user="q", assistant="a")
    assert result.ignored_keys == {"topic": 1}


# -- LLaMA-Factory v1 ---------------------------------------------------------------------------------------

TOOLS = json.dumps([{"type": "function", "function": {"name": "area", "parameters": {"type": "object"}}}])
V1_CHAT = {
    "messages": [
        v1("system", ("text", "Use tools.")),
        v1("user", ("text", "Area for r=1 and r=2?"), loss_weight=0.0),
        v1(
            "assistant",
            ("reasoning", "Two calls are needed."),
            ("tool_call", '{"name": "area", "arguments": {"r": 1}}'),
            ("tool_call", '{"name": "area", "arguments": {"r": 2}}'),
            loss_weight=1.0,
        ),
        v1("tool", ("text", "3.14")),
        v1("tool", ("text", "12.57")),
        v1("assistant", ("reasoning", "Both known."), ("text", "3.14 and 12.57."), loss_weight=0.0),
        v1("user", ("text", "Thanks")),
        v1("assistant", ("text", "You're welcome.")),
    ],
    "tools": TOOLS,
}


def test_v1_chat_with_reasoning_tool_calls_and_loss_weight(tmp_path: Path) -> None:
    records, result = run([V1_CHAT])
    assert result.preset == "llamafactory-v1" and result.detected and not result.skipped
    messages = records[0]["messages"]
    assert messages[2] == {
        "role": "assistant",
        "reasoning_content": "Two calls are needed.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "area", "arguments": '{"r": 1}'}},
            {"id": "call_2", "type": "function", "function": {"name": "area", "arguments": '{"r": 2}'}},
        ],
    }
    assert messages[3:5] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "3.14"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12.57"},
    ]
    assert messages[5] == {
        "role": "assistant",
        "content": "3.14 and 12.57.",
        "reasoning_content": "Both known.",
        "weight": 0,  # loss_weight 0 → OpenAI's weight 0
    }
    assert messages[1] == {"role": "user", "content": "Area for r=1 and r=2?"}
    assert records[0]["tools"] == json.loads(TOOLS)
    assert_checks_clean(records, tmp_path)


def test_v1_preference_records_become_dpo(tmp_path: Path) -> None:
    prompt = [v1("system", ("text", "Translate."), loss_weight=0.0), v1("user", ("text", "Bonjour"), loss_weight=0.0)]
    record = {
        "chosen_messages": [*prompt, v1("assistant", ("reasoning", "French."), ("text", "Hello"), loss_weight=1.0)],
        "rejected_messages": [*prompt, v1("assistant", ("text", "Goodbye"), loss_weight=1.0)],
    }
    records, result = run([record])
    assert result.preset == "llamafactory-v1"
    assert records == [
        {
            "input": {
                "messages": [{"role": "system", "content": "Translate."}, {"role": "user", "content": "Bonjour"}]
            },
            "preferred_output": [{"role": "assistant", "content": "Hello", "reasoning_content": "French."}],
            "non_preferred_output": [{"role": "assistant", "content": "Goodbye"}],
        }
    ]
    assert_checks_clean(records, tmp_path, method="dpo")
    different = {**record, "rejected_messages": [v1("user", ("text", "Salut")), v1("assistant", ("text", "Hi"))]}
    _, refused = run([different], preset="llamafactory-v1")
    assert refused.skipped[0].reason.startswith("rejected_messages: chosen and rejected conversations differ")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (v1("assistant", ("text", "a"), loss_weight=0.5), "loss_weight 0.5: OpenAI's weight is 0 or 1"),
        (v1("user", ("text", "u"), loss_weight=1.0), "loss_weight 1.0 on a user message: only assistant messages"),
        (v1("user", ("reasoning", "r")), "a 'reasoning' part has no place in a user message"),
        (v1("assistant", ("text", "a"), ("reasoning", "r")), "reasoning must come once, before the answer"),
        (v1("assistant", ("video", "v.mp4")), "a 'video' part has no place"),
        ({"role": "assistant", "content": [{"type": "text", "value": "a"}], "score": 3}, "unknown key 'score'"),
    ],
)
def test_v1_what_has_no_place_in_openais_format_is_refused(message: Record, reason: str) -> None:
    _, result = run([{"messages": [v1("user", ("text", "q")), message]}], preset="llamafactory-v1")
    assert len(result.skipped) == 1 and reason in result.skipped[0].reason, result.skipped


# -- images -------------------------------------------------------------------------------------------------


def write_images(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "1.png").write_bytes(png())
    (folder / "images" / "2.png").write_bytes(png(2, 2))
    return folder


def mllm(text: str, images: list[str], answer: str = "Two people.") -> Record:
    return {
        "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}],
        "images": images,
    }


def test_images_become_data_url_parts_where_their_placeholders_stand(tmp_path: Path) -> None:
    folder = write_images(tmp_path)
    records, result = run(
        [mllm("<image>Who are they?<image>", ["images/1.png", "images/2.png"])],
        preset_options=PresetOptions(image_root=folder),
    )
    assert result.preset == "openai" and not result.skipped
    content = records[0]["messages"][0]["content"]
    assert content == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png()).decode()}},
        {"type": "text", "text": "Who are they?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png(2, 2)).decode()}},
    ]
    assert "images" not in records[0]
    assert_checks_clean(records, tmp_path)  # check's image rules (FT220–FT222) pass them


def test_a_missing_image_refuses_its_record_naming_the_path_or_is_skipped_and_counted(tmp_path: Path) -> None:
    folder = write_images(tmp_path)
    source = [mllm("<image>A?", ["images/1.png"]), mllm("<image>B?", ["images/missing.jpg"])]
    options = PresetOptions(image_root=folder)
    records, result = run(source, preset_options=options)
    assert len(records) == 1 and len(result.skipped) == 1
    assert result.skipped[0].location == "line 2"
    assert f"image {folder / 'images/missing.jpg'} not found" in result.skipped[0].reason
    assert "--images skip" in result.skipped[0].reason and "--image-dir" in result.skipped[0].reason
    records, result = run(source, preset_options=options, images="skip")
    assert len(records) == 1 and not result.skipped
    assert result.dropped == {"records with a missing image (--images skip)": 1}


def test_an_image_path_may_not_reach_outside_the_image_folder(tmp_path: Path) -> None:
    """The review's case: `../secret.png` (or an absolute path, or a link) embedded a file from outside the
    dataset into a training file that is then uploaded."""
    folder = write_images(tmp_path / "data")
    (tmp_path / "secret.png").write_bytes(png())
    (folder / "images" / "link.png").symlink_to(tmp_path / "secret.png")
    for reference in ("../secret.png", str(tmp_path / "secret.png"), "images/link.png"):
        records, result = run([mllm("<image>A?", [reference])], preset_options=PresetOptions(image_root=folder))
        assert records == [] and "is outside" in result.skipped[0].reason, (reference, result.skipped)
        assert "--image-dir" in result.skipped[0].reason


@pytest.mark.parametrize("device", ["/dev/zero", "fifo"])
def test_an_image_that_is_no_plain_file_is_refused_without_reading_it(tmp_path: Path, device: str) -> None:
    """/dev/zero was read until memory ran out, and a FIFO hung: both refused by fstat before any read."""
    if device == "fifo":
        os.mkfifo(tmp_path / "pipe.png")
        root, reference = tmp_path, "pipe.png"
    else:
        root, reference = Path("/dev"), "zero"
    _, result = run([mllm("<image>A?", [reference])], preset_options=PresetOptions(image_root=root))
    assert "is not a plain file" in result.skipped[0].reason


def test_images_in_alpaca_and_sharegpt_and_what_is_refused(tmp_path: Path) -> None:
    folder = write_images(tmp_path)
    options = PresetOptions(image_root=folder)
    alpaca = {"instruction": "<image>Describe.", "input": "", "output": "Grey.", "images": ["images/1.png"]}
    sharegpt = {
        "conversations": [{"from": "human", "value": "<image>What?"}, {"from": "gpt", "value": "A square."}],
        "images": ["images/2.png"],
    }
    for record in (alpaca, sharegpt):
        records, result = run([record], preset_options=options)
        assert not result.skipped and records[0]["messages"][0]["content"][0]["type"] == "image_url"
        assert_checks_clean(records, tmp_path)
    refused = [
        (mllm("No placeholder.", ["images/1.png"]), "1 image but 0 <image> placeholders"),
        (mllm("<image>", ["images/1.png"], answer="<image>"), "<image> in a assistant message"),
        ({**mllm("<image>x", ["images/1.png"]), "videos": ["v.mp4"]}, "has no place for video"),
    ]
    for record, reason in refused:
        _, result = run([record], preset="openai", preset_options=options)
        assert reason in result.skipped[0].reason, result.skipped
    text_only = {"instruction": "What does <image> mean in HTML?", "input": "", "output": "An image tag."}
    records, _ = run([text_only])  # no images column: "<image>" is text
    assert records[0]["messages"][0]["content"] == text_only["instruction"]


def test_v1_multimodal_image_parts_resolve_from_image_dir(tmp_path: Path) -> None:
    folder = write_images(tmp_path)
    record = {
        "messages": [v1("user", ("image_url", "data/images/1.png"), ("text", "Who?")), v1("assistant", ("text", "Me."))]
    }
    _, refused = run([record], preset_options=PresetOptions(image_root=folder))  # relative to the repo, not the file
    assert "not found" in refused.skipped[0].reason
    records, _ = run([record], preset_options=PresetOptions(image_root=tmp_path))
    assert records[0]["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_the_cli_resolves_images_beside_the_data_file(tmp_path: Path) -> None:
    folder = write_images(tmp_path)
    source = folder / "mllm.json"
    source.write_text(json.dumps([mllm("<image>Who?", ["images/1.png"])]), encoding="utf-8")
    output = tmp_path / "out.jsonl"
    result = convert_file(
        source.read_text(),
        name=str(source),
        output=output,
        validation_output=None,
        inputs=[source],
        options=ConvertOptions(preset_options=PresetOptions(image_root=source.parent)),
    )
    assert result.written == 1 and check_file(output, options=CheckOptions(ignore=("FT401",))).errors == 0


# -- reasoning ----------------------------------------------------------------------------------------------


def test_reasoning_is_written_as_reasoning_content_whichever_name_it_came_with(tmp_path: Path) -> None:
    user = {"role": "user", "content": "2+2?"}
    source = [
        {"messages": [user, {"role": "assistant", "content": "4", "reasoning": "Add them."}]},
        {"messages": [user, {"role": "assistant", "content": "4", "reasoning_content": "Add them."}]},
        {"messages": [user, {"role": "assistant", "content": "4", "reasoning": "a", "reasoning_content": "a"}]},
        {"messages": [user, {"role": "assistant", "content": "4", "reasoning": "a", "reasoning_content": "b"}]},
    ]
    records, result = run(source)
    expected = {"role": "assistant", "content": "4", "reasoning_content": "Add them."}
    assert records[0]["messages"][1] == records[1]["messages"][1] == expected
    assert records[2]["messages"][1] == {"role": "assistant", "content": "4", "reasoning_content": "a"}
    assert [(s.location, s.reason) for s in result.skipped] == [
        ("line 4", "messages[1].reasoning: differs from its reasoning_content: give the reasoning once")
    ]
    assert_checks_clean(records, tmp_path)


# -- empty prompts and placeholders -------------------------------------------------------------------------


def test_empty_prompts_are_refused_with_their_code_or_kept_when_asked(datasets: Path, tmp_path: Path) -> None:
    text = (datasets / "malformed/azure_docs_110314_utf8_bom_empty_prompt.jsonl").read_text(encoding="utf-8")
    output = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match="no record") as refused:
        convert_file(
            text, name="azure.jsonl", output=output, validation_output=None, inputs=[], options=ConvertOptions()
        )
    assert not output.exists()
    assert "prompt: is empty" in (refused.value.hint or "") and "(FT233)" in (refused.value.hint or "")
    records, result = run(text, preset_options=PresetOptions(allow_empty_prompt=True))
    assert len(records) == 3 and all(r["messages"][0]["role"] == "assistant" for r in records)
    assert [(n.code, n.message.split(" with")[0]) for n in result.notes] == [("FT233", "3 records")]


def test_unfilled_placeholders_are_reported_not_silent() -> None:
    source = [
        {"instruction": "Who are you?", "input": "", "output": "I am {{name}}, made by {{author}}."},
        {"instruction": "Hi", "input": "", "output": "Hello! I am {{name}}."},
        {"instruction": "Code?", "input": "", "output": "Use ${{ secrets.TOKEN }} in the workflow."},
    ]
    records, result = run(source)
    assert len(records) == 3  # written as they are: the text is the source's
    (note,) = result.notes
    assert note.code == "FT234" and note.message.startswith("2 records hold unfilled template placeholders")
    assert "{{name}}, {{author}}" in note.message and "first at line 1" in note.message


# -- every format: what convert writes, check passes --------------------------------------------------------


def test_every_fixture_format_converts_to_a_file_check_passes(tmp_path: Path) -> None:
    folder = write_images(tmp_path)
    cases: list[tuple[list[Record], dict[str, Any], str | None]] = [
        (KTO, {"kto_to": "dpo"}, "dpo"),
        (KTO, {"kto_to": "sft"}, None),
        ([V1_CHAT], {}, None),
        ([mllm("<image>Who?", ["images/1.png"])], {"preset_options": PresetOptions(image_root=folder)}, None),
        ([NLI], {"preset_options": PresetOptions(field_map={"user": "{premise}", "assistant": "label.name"})}, None),
    ]  # fmt: skip
    for source, kwargs, method in cases:
        records, result = run(source, **kwargs)
        assert records and not result.skipped, (kwargs, result.skipped)
        assert_checks_clean(records, tmp_path, method=method)
