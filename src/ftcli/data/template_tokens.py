"""Token counts for a local base, the way its training job counts them: each example rendered through the base's own
chat template and tokenized by its own tokenizer (`data/chat_template`, the encoder training uses). A job's
`trained_tokens` is then exactly the estimate's billed tokens: every token read (cut at `max_seq_length`), each
epoch; an example's trained tokens are its answers' (assistant messages with weight ≠ 0), their reasoning included
where the template renders it (a Qwen3-style `<think>` block)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ftcli.data.chat_template import EncodedChat, ReasoningLeftOut, encode_chat, encode_preference
from ftcli.data.tokens import ExampleTokens, iter_texts


class TemplateCounter:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.special_tokens = tuple(sorted(set(tokenizer.all_special_tokens) | set(_added_tokens(tokenizer))))

    def chat(self, record: dict[str, Any]) -> ExampleTokens:
        messages = [m for m in record.get("messages") or () if isinstance(m, dict)]
        try:
            encoded = encode_chat(self.tokenizer, messages, tools=record.get("tools"))
        except ReasoningLeftOut as left_out:  # no job trains it as written: FT321 names the message
            return replace(self._texts(record, len(messages)), left_out_reasoning=left_out.path)
        except Exception:  # check fails the record, or no job trains it (a ChatTemplateError): its texts counted
            return self._texts(record, len(messages))
        return ExampleTokens(total=encoded.tokens, trained=encoded.trained_tokens, messages=len(messages))

    def preference(self, record: dict[str, Any]) -> ExampleTokens:
        """Training reads prompt + preferred and prompt + non-preferred: both sequences count."""
        data = record.get("input")
        prompt = data.get("messages") if isinstance(data, dict) else None
        try:
            chosen, rejected = encode_preference(self.tokenizer, record)
        except Exception:  # as for chats: a broken record, its texts counted
            return self._texts(record, len(prompt) + 1 if isinstance(prompt, list) else 1)
        return _pair(chosen, rejected, len(prompt) + 1 if isinstance(prompt, list) else 1)

    def special_tokens_in(self, text: str) -> list[str]:
        return [token for token in self.special_tokens if token in text]

    def _texts(self, record: dict[str, Any], messages: int) -> ExampleTokens:
        text = "\n".join(value for _, value in iter_texts(record))
        tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return ExampleTokens(total=tokens, trained=0, messages=messages)


def _pair(chosen: EncodedChat, rejected: EncodedChat, messages: int) -> ExampleTokens:
    return ExampleTokens(
        total=chosen.tokens + rejected.tokens,
        trained=chosen.trained_tokens + rejected.trained_tokens,
        messages=messages,
    )


def _added_tokens(tokenizer: Any) -> list[str]:
    """Control tokens a template writes (`<|im_start|>`, `<|eot_id|>`), which a tokenizer may not list as special."""
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return [str(token) for token in decoder.values() if getattr(token, "special", False)]
