"""Chat examples → token ids and labels through the model's own chat template, with loss on assistant tokens only
(an assistant message with `weight: 0` gets none). Training encodes with these, and `check --model <local base>`
counts with them, so the estimate and the job's trained tokens are the same numbers. Pure: the tokenizer is passed
in (a Hugging Face tokenizer with a chat template)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

IGNORE = -100


@dataclass(frozen=True, slots=True)
class EncodedChat:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False  # longer than the job's max_seq_length: the end was cut off

    @property
    def trained_tokens(self) -> int:
        """Tokens the loss is computed on (the answers)."""
        return sum(1 for label in self.labels if label != IGNORE)

    @property
    def tokens(self) -> int:
        """Tokens the model reads: what a job's `trained_tokens` counts, as OpenAI bills them."""
        return len(self.input_ids)


def encode_chat(
    tokenizer: Any, messages: list[dict[str, Any]], *, tools: list[Any] | None = None, max_length: int | None = None
) -> EncodedChat:
    """Render with the chat template; label each assistant message's span (found by rendering the prefix with a
    generation prompt and the prefix plus that message) so any template works, not only ChatML."""
    render = _renderer(tokenizer, tools)
    text = render(messages, False)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant" or message.get("weight", 1) == 0:
            continue
        start = len(render(messages[:index], True))
        end = len(render(messages[: index + 1], False))
        spans.append((start, end))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = encoded["input_ids"]
    labels = [IGNORE] * len(ids)
    for position, (char_start, char_end) in enumerate(encoded["offset_mapping"]):
        if any(start <= char_start and char_end <= end for start, end in spans) and char_end > char_start:
            labels[position] = ids[position]
    if max_length is not None and len(ids) > max_length:
        return EncodedChat(ids[:max_length], labels[:max_length], truncated=True)
    return EncodedChat(ids, labels)


def render_prompt(tokenizer: Any, messages: list[dict[str, Any]], tools: list[Any] | None = None) -> str:
    """The text a model continues to answer `messages` (chat completions), tools rendered as in training."""
    return str(_renderer(tokenizer, tools)(messages, True))


def _renderer(tokenizer: Any, tools: list[Any] | None) -> Any:
    native = supports_tools(tokenizer)

    def render(messages: list[dict[str, Any]], generation_prompt: bool) -> str:
        plain = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
        kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": generation_prompt}
        if native and tools:
            kwargs["tools"] = tools
        elif not native:
            plain = tools_as_text(plain, tools)
        return str(tokenizer.apply_chat_template(plain, **kwargs)) if plain else ""

    return render


def supports_tools(tokenizer: Any) -> bool:
    """Whether the model's chat template renders tools and tool calls itself (Qwen, Llama 3, Mistral do)."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    return "tools" in template and "tool_calls" in template


def tools_as_text(messages: list[dict[str, Any]], tools: list[Any] | None) -> list[dict[str, Any]]:
    """For templates without tool support: the tools described in the system message, calls and results as text in
    the Hermes-style tags many chat models know, so the model still learns when and how to call."""
    out: list[dict[str, Any]] = []
    for message in messages:
        message = dict(message)
        calls = message.pop("tool_calls", None)
        if calls:
            text = [message.get("content") or ""]
            for call in calls:
                function = call.get("function", {})
                arguments = function.get("arguments", "{}")
                with contextlib.suppress(json.JSONDecodeError):  # else kept as the string it is
                    arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
                payload = json.dumps({"name": function.get("name"), "arguments": arguments}, ensure_ascii=False)
                text.append(f"<tool_call>\n{payload}\n</tool_call>")
            message["content"] = "\n".join(part for part in text if part)
        if message.get("role") == "tool":
            message = {"role": "tool", "content": f"<tool_response>\n{message.get('content') or ''}\n</tool_response>"}
        if message.get("content") is None:
            message["content"] = ""
        out.append(message)
    if tools:
        described = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
        preamble = f"You may call these tools:\n<tools>\n{described}\n</tools>"
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{preamble}".strip()}
        else:
            out.insert(0, {"role": "system", "content": preamble})
    return out


def encode_preference(
    tokenizer: Any, example: dict[str, Any], *, max_length: int | None = None
) -> tuple[EncodedChat, EncodedChat]:
    """A DPO example as (prompt + preferred, prompt + non-preferred). Earlier assistant turns belong to the prompt
    (weight 0): only the compared answers are scored."""
    data = example["input"]
    prompt = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in data["messages"]]
    tools = data.get("tools")

    def encode(output: list[dict[str, Any]]) -> EncodedChat:
        return encode_chat(tokenizer, [*prompt, *output], tools=tools, max_length=max_length)

    return encode(example["preferred_output"]), encode(example["non_preferred_output"])
