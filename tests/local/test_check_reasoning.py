"""`check --model <local base>` flags reasoning traces (FT320) where the base's chat template has no place for them,
and not where it has one (a Qwen3-style template that renders `reasoning_content` in <think>): the base here is
ftcli/tiny's tokenizer saved in a folder with such a template, built in code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local]

from ftcli.data.check.engine import CheckOptions, check_file  # noqa: E402
from ftcli.data.local_bases import TINY_NAME, build_tiny_tokenizer  # noqa: E402

THINKING_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n"
    "{%- if message.role == 'assistant' and message.reasoning_content %}<think>\n{{ message.reasoning_content }}\n"
    "</think>\n\n{% endif %}{{ message.content }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)


def thinking_base(folder: Path) -> Path:
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = THINKING_TEMPLATE
    tokenizer.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 512}), encoding="utf-8")
    return folder


def test_reasoning_is_flagged_only_where_the_template_has_no_place_for_it(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "Two and two."},
        ]
    }
    path = tmp_path / "thinking.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    options = {"profile": "local-training", "workers": 1}
    chatml = check_file(path, options=CheckOptions(model=TINY_NAME, **options))  # type: ignore[arg-type]
    (flag,) = [d for d in chatml.diagnostics if d.code == "FT320"]
    assert "its chat template has no place for reasoning" in flag.message
    base = thinking_base(tmp_path / "thinking-base")
    thinking = check_file(path, options=CheckOptions(model=str(base), **options))  # type: ignore[arg-type]
    assert "FT320" not in {d.code for d in thinking.diagnostics}


def test_reasoning_a_qwen3_style_template_leaves_out_is_flagged_on_its_line_and_message(tmp_path: Path) -> None:
    """Qwen3's template keeps reasoning only in the answers after the last user message: an earlier answer's is
    dropped, so no job would train it (FT321, naming the line and message); the last answer's is kept."""
    from tests.local.thinking import reasoning_chat, thinking_tokenizer

    folder = tmp_path / "qwen3-style"
    thinking_tokenizer().save_pretrained(folder)  # the template modelled on Qwen3's; no weights needed to count
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 512}), encoding="utf-8")
    kept = reasoning_chat("2+2?", "Two and two.", "4")
    follow_up = [{"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}]
    dropped = {"messages": [*kept["messages"], *follow_up]}  # the first answer's reasoning, before the last question
    last_kept = {"messages": [*kept["messages"][:1], {"role": "assistant", "content": "4"}, follow_up[0],
                              {**follow_up[1], "reasoning_content": "Three and three."}]}  # fmt: skip
    path = tmp_path / "turns.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (kept, dropped, last_kept)), encoding="utf-8")
    report = check_file(path, options=CheckOptions(model=str(folder), workers=1, profile="local-training"))
    (flag,) = [d for d in report.diagnostics if d.code == "FT321"]
    assert (flag.line, flag.path, flag.severity.value) == (2, "messages[1]", "error")
    assert "the base's chat template leaves out there" in flag.message
    assert "FT320" not in {d.code for d in report.diagnostics}  # the template has a place for reasoning
