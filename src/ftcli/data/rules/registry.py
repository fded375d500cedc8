"""Every rule ftcli knows, in one table. Codes are forever: a removed rule keeps its code, marked removed.

Groups: FT0xx bytes/JSON, FT1xx record schema, FT2xx messages/roles, FT3xx tokens/limits,
FT4xx dataset level (size, duplicates, leakage), FT5xx personal data and secrets.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftcli.data.diagnostics import Severity

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    name: str
    severity: Severity
    why: str
    status: str = "stable"


def _table(*rules: Rule) -> dict[str, Rule]:
    table = {r.code: r for r in rules}
    assert len(table) == len(rules), "duplicate rule code"
    return table


RULES: dict[str, Rule] = _table(
    # FT0xx: bytes and JSON
    Rule("FT001", "invalid-utf8", E, "OpenAI reads training files as UTF-8; other bytes are rejected."),
    Rule("FT002", "invalid-json", E, "Each line of a JSONL file must be one complete JSON value."),
    Rule(
        "FT003",
        "byte-order-mark",
        E,
        "A UTF-8 BOM before the first record makes line 1 invalid JSON for "
        "strict parsers, including the fine-tuning upload validator.",
    ),
    Rule(
        "FT004", "not-jsonl", E, "The file is one JSON document (pretty-printed or an array), not one record per line."
    ),
    Rule("FT005", "blank-line", W, "Blank lines are not records; some validators reject them."),
    Rule("FT006", "empty-file", E, "An empty file has no training examples."),
    Rule(
        "FT007",
        "lone-surrogate",
        E,
        "A \\uD800–\\uDFFF escape without its pair is no character: UTF-8 can't encode it and strict JSON "
        "parsers reject the line.",
    ),
    # FT1xx: record schema
    Rule("FT100", "record-not-object", E, "Each line must be a JSON object."),
    Rule("FT101", "unknown-key", W, "Keys the format does not define are ignored or rejected by the backend."),
    Rule(
        "FT102",
        "legacy-prompt-completion",
        E,
        "prompt/completion records were for retired models; current chat models need `messages`.",
    ),
    Rule("FT103", "mixed-formats", E, "All records in a file must use one format (chat or preference)."),
    Rule("FT104", "wrong-method-format", E, "The record format does not match the training method."),
    Rule(
        "FT105",
        "raw-dataset",
        E,
        "The records are another dataset format (Alpaca, ShareGPT, ChatLaw, LLaMA-Factory v1, multimodal): "
        "`ftcli convert` turns them into chat records first.",
    ),
    Rule(
        "FT106",
        "text-only-dataset",
        E,
        'Together\'s plain-text format {"text": …} has no roles: it trains only on Together, as it is; OpenAI and '
        "local bases need chat records.",
    ),
    Rule(
        "FT107",
        "binary-feedback-label",
        E,
        "A true/false `label` (KTO data) marks answers as desirable or not; trained as chat, the undesirable answers "
        "would be learned as targets.",
    ),
    Rule("FT110", "missing-messages", E, "A chat example needs a `messages` list."),
    Rule("FT111", "empty-messages", E, "`messages` must be a non-empty list."),
    Rule("FT120", "invalid-tools", E, "`tools` must be a list of function definitions with a name."),
    Rule("FT121", "invalid-parallel-tool-calls", E, "`parallel_tool_calls` must be true or false."),
    Rule("FT130", "invalid-preference-input", E, "A DPO record needs `input` with a `messages` list."),
    Rule(
        "FT131",
        "invalid-preference-output",
        E,
        "`preferred_output` and `non_preferred_output` must each be a list with one assistant message.",
    ),
    Rule(
        "FT140",
        "reinforcement-prompt-last",
        E,
        "A reinforcement (RFT) record ends with its prompt, a user or developer message: the model writes the answer "
        "and the grader scores it. A final assistant message would be trained as a prompt that already has its "
        "answer.",
    ),
    Rule(
        "FT141",
        "grader-field-missing",
        E,
        "The grader reads a field of every record ({{item.FIELD}}); a record without it can't be graded, and would "
        "score 0 on every answer.",
    ),
    Rule(
        "FT142",
        "invalid-grader",
        E,
        "The grader (--grader-file) must be one of OpenAI's grader types with its fields: a backend refuses the job "
        "otherwise.",
    ),
    # FT2xx: messages and roles
    Rule("FT200", "message-not-object", E, "Each message must be a JSON object."),
    Rule("FT201", "invalid-role", E, "Roles are system, developer, user, assistant, tool (and legacy function)."),
    Rule(
        "FT202",
        "missing-content",
        E,
        "Every message needs content, except an assistant message that calls a tool or function.",
    ),
    Rule("FT203", "invalid-content", E, "Content is a string or a list of content parts."),
    Rule(
        "FT204",
        "no-assistant-message",
        E,
        "An example without an assistant turn teaches nothing, and OpenAI rejects the whole file.",
    ),
    Rule("FT205", "unknown-message-key", W, "Message keys the format does not define are rejected or ignored."),
    Rule("FT206", "invalid-weight", E, "`weight` is 0 or 1 and only on assistant messages."),
    Rule("FT207", "invalid-name", E, "`name` must be a non-empty string."),
    Rule(
        "FT208",
        "invalid-reasoning",
        E,
        "An assistant message's reasoning is a string in `reasoning_content` (or `reasoning`, not both); other "
        "roles have none.",
    ),
    Rule(
        "FT210",
        "invalid-tool-call",
        E,
        'A tool call needs an id, type "function", a function name and JSON arguments given as a string.',
    ),
    Rule("FT211", "orphan-tool-reply", E, "A tool message must answer a tool call id of an earlier assistant message."),
    Rule(
        "FT212", "unanswered-tool-call", W, "A tool call followed by more messages should get a tool reply with its id."
    ),
    Rule("FT213", "invalid-function-call", E, "A legacy `function_call` needs a name and string arguments."),
    Rule("FT220", "image-in-assistant", E, "Images are only allowed in user messages."),
    Rule("FT221", "too-many-images", E, "OpenAI accepts at most 64 images per example."),
    Rule(
        "FT222", "invalid-image", E, "Images must be http(s) URLs or base64 data URLs of JPEG, PNG or WEBP up to 10 MB."
    ),
    Rule(
        "FT230",
        "missing-system-message",
        W,
        "Examples without a system message train a different behaviour from those with one; keep it consistent.",
    ),
    Rule("FT231", "missing-user-message", W, "An example without a user message rarely matches how the model is used."),
    Rule("FT232", "empty-assistant-content", W, "An empty assistant answer trains the model to say nothing."),
    Rule(
        "FT233",
        "empty-prompt",
        W,
        "An empty user message trains an answer to nothing: the model learns to talk unasked.",
    ),
    Rule(
        "FT234",
        "unfilled-placeholder",
        W,
        "Text like {{name}} is a template placeholder left unfilled: the model learns the braces, not the name.",
    ),
    # FT3xx: tokens and limits
    Rule(
        "FT301",
        "over-context-limit",
        W,
        "Examples over the model's training context are truncated: the end, often the answer, is lost.",
    ),
    Rule("FT302", "unknown-model", INFO, "The model is not in ftcli's catalog: limits and price are unknown."),
    Rule("FT303", "method-not-supported", E, "The model does not support this fine-tuning method."),
    Rule("FT304", "model-shut-down", W, "The model is shut down or soon will be."),
    Rule(
        "FT310",
        "special-token",
        W,
        "Text like <|endoftext|> is a special token to the tokenizer and can break training.",
    ),
    Rule(
        "FT320",
        "reasoning-not-trained",
        W,
        "The model can't train on reasoning traces (OpenAI's format has no field for them; a local base's chat "
        "template may have no place): the traces are left out or the file is refused.",
    ),
    Rule(
        "FT321",
        "reasoning-left-out",
        E,
        "Reasoning on an answer before the conversation's last is not trained: a Qwen3-style template keeps "
        "reasoning only after the last user message, and Together trains a reasoning conversation's last answer "
        "only. Split the conversation so each example ends with the answer whose reasoning it trains.",
    ),
    # FT4xx: dataset level
    Rule("FT401", "too-few-examples", E, "OpenAI requires at least 10 training examples."),
    Rule("FT402", "duplicate-example", W, "Exact duplicates weigh one example several times."),
    Rule(
        "FT403",
        "near-duplicate-example",
        W,
        "Examples that differ only in case, spacing or punctuation weigh one example several times.",
    ),
    Rule(
        "FT404",
        "validation-overlap",
        W,
        "An example in both training and validation files makes validation loss look better than it is.",
    ),
    # FT5xx: personal data and secrets
    Rule("FT501", "pii-email", W, "E-mail addresses are personal data; the model may learn and repeat them."),
    Rule("FT502", "pii-phone", W, "Phone numbers are personal data; the model may learn and repeat them."),
    Rule("FT503", "pii-cn-mobile", W, "Chinese mobile numbers are personal data."),
    Rule("FT504", "pii-cn-resident-id", W, "Chinese resident ID numbers (valid checksum) identify a person."),
    Rule("FT505", "pii-bank-card", W, "Card numbers (valid Luhn checksum) are financial data."),
    Rule("FT506", "secret-api-key", W, "API keys in training data leak credentials to anyone using the model."),
    Rule("FT507", "secret-private-key", W, "Private keys in training data leak credentials."),
)

PII_PREFIX = "FT5"


@dataclass(frozen=True, slots=True)
class Profile:
    """A named set of rules to leave out, for a use other than checking a file for OpenAI."""

    name: str
    ignore: tuple[str, ...]  # codes, prefixes or names, as --ignore takes them
    why: str


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            "local-training",
            ("too-few-examples", PII_PREFIX, "FT30"),
            "What `ftcli serve` checks before it trains: any number of examples will do, personal data stays on the "
            "user's machine, and OpenAI's models' limits and prices don't apply to a local base.",
        ),
    )
}


def matches(code: str, selectors: tuple[str, ...]) -> bool:
    """A selector is a full code (FT204), a prefix (FT2, FT20) or a rule name (no-assistant-message)."""
    rule = RULES.get(code)
    return any(code.startswith(s.upper()) or (rule is not None and rule.name == s) for s in selectors)
