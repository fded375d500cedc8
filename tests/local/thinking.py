"""A thinking base built in code, for reasoning tests: ftcli/tiny's byte-level tokenizer with a chat template modelled
on Qwen3's public one (an answer's `reasoning_content` in `<think>\\n…\\n</think>\\n\\n` before it; kept only in the
answers after the last user message, as Qwen3 keeps it; an empty think block on the last answer), and random weights.
Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QWEN3_STYLE_TEMPLATE = (
    "{%- set ns = namespace(last_query_index=-1) %}"
    "{%- for message in messages %}{%- if message.role == 'user' %}{%- set ns.last_query_index = loop.index0 %}"
    "{%- endif %}{%- endfor %}"
    "{%- for message in messages %}"
    "{%- if message.content is string %}{%- set content = message.content %}{%- else %}{%- set content = '' %}"
    "{%- endif %}"
    "{%- if message.role == 'assistant' %}"
    "{%- set reasoning_content = '' %}"
    "{%- if message.reasoning_content is string %}{%- set reasoning_content = message.reasoning_content %}"
    "{%- elif '</think>' in content %}"
    "{%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' "
    "+ content.lstrip('\\n') }}"
    "{%- else %}{{- '<|im_start|>assistant\\n' + content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


# as Qwen3-Thinking-2507's and DeepSeek-R1-0528's templates do: the generation prompt opens the think block itself
OPENING_TEMPLATE = QWEN3_STYLE_TEMPLATE.replace(
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}",
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}",
)


def thinking_tokenizer(template: str = QWEN3_STYLE_TEMPLATE) -> Any:
    from ftcli.data.local_bases import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = template
    return tokenizer


def thinking_base(folder: Path, *, context: int = 512, template: str = QWEN3_STYLE_TEMPLATE) -> Path:
    """A model folder (config, random safetensors weights, tokenizer with the template): a base `check --model` and
    `ftcli serve --model-root` take."""
    from ftcli.server.tiny import build_model
    from ftcli.server.weights import save_pretrained_atomically

    tokenizer = thinking_tokenizer(template)
    model = build_model(len(tokenizer), seed=1)
    model.config.max_position_embeddings = context
    save_pretrained_atomically(folder, model, tokenizer)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["max_position_embeddings"] == context
    return folder


def reasoning_chat(question: str, reasoning: str, answer: str, *, key: str = "reasoning_content") -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer, key: reasoning},
        ]
    }
