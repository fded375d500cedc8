"""Issue 23's property: for records of every preset, each text field of a source record appears in what convert
wrote, unchanged except for the preset's documented edits (prompt/completion separators and stop sequences and the
whitespace around them; a blank Alpaca input or system prompt left out; `--system-replace`), or the record is
refused with its location. And whatever convert writes, check finds no error in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftcli.data.check.engine import CheckOptions, check_file
from ftcli.data.convert.pipeline import ConvertOptions, convert_text
from ftcli.data.convert.presets import LEGACY_SEPARATORS, LEGACY_STOPS, PresetOptions

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
STRUCTURE = {"from", "role", "type"}  # keys whose strings name a part of the format, not text the model reads
MAP = {"user": "{a}\\n\\n{b}", "assistant": "c", "system": "d"}
SYSTEM_REPLACE = (("OLD", "NEW"),)

text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)


def turns(*senders: str) -> st.SearchStrategy[list[dict[str, str]]]:
    return st.tuples(*(st.fixed_dictionaries({"from": st.just(s), "value": text}) for s in senders)).map(list)


def v1_message(role: str, *kinds: str) -> st.SearchStrategy[dict[str, Any]]:
    parts = st.tuples(*(st.fixed_dictionaries({"type": st.just(k), "value": text}) for k in kinds)).map(list)
    return st.fixed_dictionaries({"role": st.just(role), "content": parts})


cases: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "alpaca": st.fixed_dictionaries(
        {"instruction": text, "input": text, "output": text}, optional={"system": text, "history": st.lists(
            st.tuples(text, text).map(list), max_size=2)}),
    "sharegpt": st.fixed_dictionaries({"conversations": turns("human", "gpt", "human", "gpt")}, optional={
        "system": text}),
    "chatlaw": st.fixed_dictionaries({"meta_instruction": text, "chat": st.lists(
        st.fixed_dictionaries({"咨询者": text, "ChatLAW": text}), min_size=1, max_size=2)}),
    "map": st.fixed_dictionaries({"a": text, "b": text, "c": text, "d": text}),
    "llamafactory-v1": st.fixed_dictionaries({"messages": st.tuples(
        v1_message("system", "text"), v1_message("user", "text"), v1_message("assistant", "reasoning", "text"),
    ).map(list)}),
    "openai": st.fixed_dictionaries({"messages": st.tuples(
        st.fixed_dictionaries({"role": st.just("system"), "content": text}),
        st.fixed_dictionaries({"role": st.just("user"), "content": text}),
        st.fixed_dictionaries({"role": st.just("assistant"), "content": text, "reasoning": text}),
    ).map(list)}),
}  # fmt: skip
legacy = st.tuples(text, st.sampled_from(LEGACY_SEPARATORS), text, st.sampled_from(LEGACY_STOPS))


def texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in STRUCTURE:
                yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


def convert(preset: str, records: list[dict[str, Any]], tmp_path: Path) -> list[tuple[dict[str, Any], str | None]]:
    """Each source record with the text of what convert wrote for it, or None where it was refused; and what it
    wrote passes check."""
    source = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    options = PresetOptions(field_map=MAP if preset == "map" else {}, system_replace=SYSTEM_REPLACE)
    lines, result = convert_text(source, name="in.jsonl", options=ConvertOptions(preset=preset, preset_options=options))
    refused = {int(s.location.removeprefix("line ")) for s in result.skipped}
    assert len(lines) + len(refused) == len(records)
    written = iter(lines)
    pairs = [(r, None if n in refused else next(written)) for n, r in enumerate(records, start=1)]
    if lines:
        path = tmp_path / f"{preset}.jsonl"
        path.write_text("".join(lines), encoding="utf-8")
        report = check_file(path, options=CheckOptions(workers=1, ignore=("FT401", "FT5", "FT310")))
        assert report.errors == 0, report.diagnostics
    return [(r, None if line is None else "\x00".join(texts(json.loads(line)))) for r, line in pairs]


def edited(raw: str) -> str:
    """A system prompt after --system-replace, trimmed."""
    return raw.replace("OLD", "NEW").strip()


@SETTINGS
@given(
    st.sampled_from(sorted(cases)).flatmap(lambda p: st.tuples(st.just(p), st.lists(cases[p], min_size=1, max_size=4)))
)
def test_every_text_of_a_record_is_written_unchanged_or_the_record_is_refused(
    tmp_path: Path, case: tuple[str, list[dict[str, Any]]]
) -> None:
    preset, records = case
    for record, written in convert(preset, records, tmp_path):
        if written is None:
            continue  # refused, with its line (counted above)
        for raw in texts(record):
            assert raw.strip() in written or edited(raw) in written, (preset, raw, written)


@SETTINGS
@given(st.lists(legacy, min_size=1, max_size=4))
def test_prompt_completion_keeps_each_text_without_its_separator_and_stop(
    tmp_path: Path, rows: list[tuple[str, str, str, str]]
) -> None:
    records = [
        {"prompt": prompt + sep, "completion": " " + completion + stop} for prompt, sep, completion, stop in rows
    ]
    for (prompt, _, completion, _), (_, written) in zip(
        rows, convert("prompt-completion", records, tmp_path), strict=True
    ):
        if written is None:
            continue
        assert prompt.strip() in written and completion.strip() in written
        assert bool(prompt.strip()), "an empty prompt must be refused (FT233), not written without a word"
