"""Chat examples → token ids and labels through the model's own chat template, with loss on assistant tokens only
(an assistant message with `weight: 0` gets none). Training encodes with these, and `check --model <local base>`
counts with them, so the estimate and the job's trained tokens are the same numbers. Pure: the tokenizer is passed
in (a Hugging Face tokenizer with a chat template).

An assistant message's reasoning (`reasoning_content` or `reasoning`) goes to the template as `reasoning_content`,
the field Qwen3-style templates render inside `<think>`: it is then part of the answer's trained tokens. What a
template can't render as trained (reasoning it has no place for, an answer it renders differently once the
conversation goes on, images) is a `ChatTemplateError`, never text silently left out."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from ftcli.data.formats.openai import REASONING_KEY, REASONING_KEYS, message_reasoning

IGNORE = -100
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"  # how Qwen3- and DeepSeek-R1-style templates mark reasoning
_PROBE = "ftcli-reasoning-probe"


class ChatTemplateError(ValueError):
    """An example the base's chat template can't render as it would be trained; the message says why and what to
    do (without the line: the caller knows it)."""


class ReasoningLeftOut(ChatTemplateError):
    """A template with a place for reasoning leaves this answer's out where it stands (Qwen3's keeps it only after
    the last user message): `path` names the message (`check` flags it as FT321)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


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
    generation prompt and the prefix plus that message) so any template works, not only ChatML. A trained answer
    must render in the whole conversation as in its prefix, reasoning included: else a ChatTemplateError."""
    render = _renderer(tokenizer, tools)
    text = render(messages, False)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant" or message.get("weight", 1) == 0:
            continue
        span = _answer_span(text, render(messages[:index], True), render(messages[: index + 1], False))
        if span is None or (span.shortened and not _renders(message.get("content"), text[span.start : span.end])):
            raise ChatTemplateError(
                f"the chat template renders messages[{index}] differently once later messages follow, so its tokens "
                "can't be labelled: give the earlier answers weight 0, or split the conversation so each example "
                "ends with the answer it trains"
            )
        reasoning = message_reasoning(message)
        if reasoning is not None and not _renders(reasoning, text[span.start : span.end]):
            if renders_reasoning(tokenizer):
                raise ReasoningLeftOut(_reasoning_left_out(index, has_a_place=True), f"messages[{index}]")
            raise ChatTemplateError(_reasoning_left_out(index, has_a_place=False))
        spans.append((span.start, span.end))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = encoded["input_ids"]
    labels = [IGNORE] * len(ids)
    for position, (char_start, char_end) in enumerate(encoded["offset_mapping"]):
        if any(start <= char_start and char_end <= end for start, end in spans) and char_end > char_start:
            labels[position] = ids[position]
    if max_length is not None and len(ids) > max_length:
        return EncodedChat(ids[:max_length], labels[:max_length], truncated=True)
    return EncodedChat(ids, labels)


def _reasoning_left_out(index: int, *, has_a_place: bool) -> str:
    if not has_a_place:
        return (
            f"messages[{index}] carries reasoning, and the chat template has no place for it (it renders no "
            f"{REASONING_KEY}): train a base whose template renders reasoning (a Qwen3-style thinking model), "
            "or leave the reasoning out"
        )
    return (
        f"messages[{index}] carries reasoning, which the chat template leaves out here (it keeps reasoning only in "
        "the answers after the last user message, as Qwen3's does): split the conversation so each example ends "
        "with the answer whose reasoning it trains, or leave that reasoning out"
    )


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    shortened: bool  # the conversation renders the answer shorter than it renders as its last message


def _answer_span(text: str, prompt: str, upto: str) -> _Span | None:
    """Where an answer is in the whole conversation's `text`: after its `prompt` (the messages before it with the
    generation prompt), as rendered in `upto` (the conversation up to it). A template may render an answer shorter
    once later messages follow (Qwen3's drops an earlier answer's <think> block): then the longest end of its own
    rendering that the conversation still holds at that place. None when the prompt itself renders otherwise."""
    if not (upto.startswith(prompt) and text.startswith(prompt)):
        return None
    start, rendered = len(prompt), upto[len(prompt) :]
    for cut in range(len(rendered) + 1):  # the first cut is the usual case: the answer renders the same
        if text.startswith(rendered[cut:], start):
            return _Span(start, start + len(rendered) - cut, shortened=cut > 0)
    return None  # unreachable: the empty end always matches


def _renders(value: Any, rendered: str) -> bool:
    """Whether a message's text (content or reasoning) is in its rendering: templates trim newlines around it."""
    if isinstance(value, list):
        value = content_text(value)
    return not isinstance(value, str) or value.strip() in rendered


def render_prompt(tokenizer: Any, messages: list[dict[str, Any]], tools: list[Any] | None = None) -> str:
    """The text a model continues to answer `messages` (chat completions), tools rendered as in training."""
    return str(_renderer(tokenizer, tools)(messages, True))


def _renderer(tokenizer: Any, tools: list[Any] | None) -> Any:
    native = supports_tools(tokenizer)

    def render(messages: list[dict[str, Any]], generation_prompt: bool) -> str:
        plain = [template_message(m) for m in messages]
        kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": generation_prompt}
        if native and tools:
            kwargs["tools"] = tools
        elif not native:
            plain = tools_as_text(plain, tools)
        return str(tokenizer.apply_chat_template(plain, **kwargs)) if plain else ""

    return render


def template_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as chat templates read it: its reasoning as `reasoning_content` (either name in the data), text
    parts joined into one string (a template would print a list as its Python repr, or drop it), no `weight`.
    Templates get every other key as it is: apply_chat_template passes the dicts to Jinja unchanged."""
    plain = {k: v for k, v in message.items() if k != "weight" and k not in REASONING_KEYS}
    reasoning = message_reasoning(message)
    if reasoning is not None:
        plain[REASONING_KEY] = reasoning
    content = message.get("content")
    if isinstance(content, list):
        if any(isinstance(part, dict) and part.get("type") != "text" for part in content):
            raise ChatTemplateError(
                "an image (or another non-text content part) in a message: the local backend does not train or "
                "run vision models yet; leave the images out, or train on a backend that takes them"
            )
        plain["content"] = content_text(content)
    return plain


def content_text(parts: list[Any]) -> str:
    """The text of a message's content parts, joined as the chat endpoint joins them."""
    return "".join(str(part.get("text") or "") for part in parts if isinstance(part, dict))


def renders_reasoning(tokenizer: Any) -> bool:
    """Whether the base's chat template has a place for an answer's reasoning (renders its `reasoning_content`)."""
    probe = [
        {"role": "user", "content": "?"},
        {"role": "assistant", "content": "!", REASONING_KEY: _PROBE},
    ]
    try:
        return _PROBE in str(tokenizer.apply_chat_template(probe, tokenize=False))
    except Exception:  # noqa: BLE001 (a template that can't render a plain exchange renders no reasoning either)
        return False


def thinks_in_tags(tokenizer: Any) -> bool:
    """Whether the model writes its reasoning in `<think>…</think>` before the answer (its template renders or
    strips such blocks, as Qwen3's and DeepSeek-R1's do): its chat answers then carry the reasoning apart."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    return THINK_CLOSE in template


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
