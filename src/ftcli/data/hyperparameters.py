"""The hyperparameters a fine-tuning job takes: one typed model per training method (supervised, dpo and
reinforcement), each field `"auto"` (ftcli decides, and the job reports what it chose) or a value within its bounds
(reinforcement's `reasoning_effort` is OpenAI's choice of words, "default" where the others say "auto"). Keys a
method doesn't take are refused, naming the ones it does; NaN and infinities are refused, and so are strings and
booleans where a number is expected (no silent coercion).

The one schema everything reads: `ftcli serve` validates a job's request with it (a 400 naming the field), its
worker reads the typed model, the finished job reports in it, `ftcli train -H` is checked against it before anything
is sent to an ftcli server, and the `-H` help and the README's table are rendered from it. It lives in the data core,
not in server/protocol/ (which re-exports it), because the client checks `-H` with it too, and the service layer may
not import the server (the import-linter contract "Layers point down").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from ftcli.data.errors import DataError

Auto = Literal["auto"]
AUTO: Auto = "auto"
MethodName = Literal["supervised", "dpo", "reinforcement"]
T = TypeVar("T")


def _normalised(value: Any) -> Any:
    """null means "auto" (as OpenAI's job objects write it); a whole float (`8.0`) is that integer."""
    if value is None:
        return AUTO
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# "auto" or a value; strict members, so "8" or true is never read as a number
AutoOr = Annotated[Auto | T, BeforeValidator(_normalised)]
Count = Annotated[int, Strict()]
Real = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Switch = Annotated[bool, Strict()]


def _openai(auto: str) -> dict[str, Any]:
    return {"openai": True, "auto": auto}


def _own(auto: str) -> dict[str, Any]:
    return {"openai": False, "auto": auto}


class InvalidHyperparameter(DataError):
    """A hyperparameter the method doesn't take, or a value outside its type and bounds; `key` names it."""

    def __init__(self, message: str, key: str | None) -> None:
        super().__init__(message)
        self.key = key


class TrainingHyperparameters(BaseModel):
    """What every training method takes. OpenAI's own fields keep OpenAI's bounds (its OpenAPI spec), so a job
    that runs on ftcli serve runs there too; the rest are ftcli serve's (LoRA, memory, stopping)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: ClassVar[MethodName]

    n_epochs: AutoOr[Annotated[Count, Field(ge=1, le=50)]] = Field(
        AUTO,
        description="Passes over the training data (`train --epochs`).",
        json_schema_extra=_openai("OpenAI's rule: 3, moved so that examples × epochs stays within 100..25,000"),
    )
    batch_size: AutoOr[Annotated[Count, Field(ge=1, le=256)]] = Field(
        AUTO,
        description="Examples per optimizer step (`train --batch-size`).",
        json_schema_extra=_openai("examples / 8, between 1 and 8"),
    )
    learning_rate_multiplier: AutoOr[Annotated[Real, Field(gt=0, le=10)]] = Field(
        AUTO,
        description="Scales the base's learning rate (`train --lr-multiplier`).",
        json_schema_extra=_openai("1 (rate 2e-4; ftcli/tiny 2e-3)"),
    )
    lora_rank: AutoOr[Annotated[Count, Field(ge=1, le=1024)]] = Field(
        AUTO,
        description="Rank of the LoRA adapter's matrices.",
        json_schema_extra=_own("`serve --lora-rank`, else 16 (ftcli/tiny 32)"),
    )
    lora_alpha: AutoOr[Annotated[Count, Field(ge=1, le=4096)]] = Field(
        AUTO,
        description="LoRA's scaling (alpha / rank multiplies the adapter's output).",
        json_schema_extra=_own("`serve --lora-alpha`, else 32 (ftcli/tiny 64)"),
    )
    lora_dropout: AutoOr[Annotated[Real, Field(ge=0, le=0.9)]] = Field(
        AUTO,
        description="Dropout on the adapter's input while training.",
        json_schema_extra=_own("`serve --lora-dropout`, else 0"),
    )
    max_seq_length: AutoOr[Annotated[Count, Field(ge=16, le=1 << 20)]] = Field(
        AUTO,
        description="Tokens per example; longer ones are truncated (a warning event counts them).",
        json_schema_extra=_own("the model's context, at most 4096"),
    )
    gradient_checkpointing: AutoOr[Switch] = Field(
        AUTO,
        description="Recompute activations in the backward pass instead of keeping them (less memory, slower).",
        json_schema_extra=_own("on for bases over 1B parameters"),
    )
    quantization: AutoOr[Literal["none", "4bit"]] = Field(
        AUTO,
        description="`4bit`: QLoRA (NF4 base, bf16 compute); needs `pip install 'ftcli[gpu]'` (bitsandbytes: CUDA, or "
        "its CPU backend).",
        json_schema_extra=_own("none"),
    )
    precision: AutoOr[Literal["bf16", "fp16", "fp32"]] = Field(
        AUTO,
        description="Numeric precision of training (bf16 needs a GPU or CPU that computes in it, fp16 a CUDA GPU).",
        json_schema_extra=_own(
            "bf16 where the GPU or CPU computes in it (AVX512-BF16, AMX), else fp16 with loss scaling on a GPU, fp32"
        ),
    )
    fsdp: AutoOr[Switch] = Field(
        AUTO,
        description="Shard the base's weights across the job's processes (`serve --processes N`, PyTorch FSDP2).",
        json_schema_extra=_own("off: each process holds the whole model"),
    )

    @model_validator(mode="after")
    def _combinable(self) -> Self:
        if self.fsdp is True and self.quantization == "4bit":
            raise PydanticCustomError(
                "combination",
                "fsdp and quantization '4bit' can't be combined here: QLoRA fits a base of up to 8B parameters on one "
                "24 GB GPU; FSDP shards a larger base across the GPUs of `ftcli serve --processes N`",
                {"key": "fsdp"},
            )
        return self

    def given(self) -> dict[str, Any]:
        """The fields the request set, as JSON (what a job records of its request)."""
        return self.model_dump(mode="json", exclude_unset=True)


# Supervised and DPO training stop at a loss; reinforcement's (a policy gradient's) says nothing of quality
StopAtLoss = AutoOr[Annotated[Real, Field(gt=0, le=100)]]


def _stop_at_loss() -> Any:
    return Field(
        AUTO,
        description="Stop after the first epoch whose mean training loss is at most this (n_epochs is then a ceiling).",
        json_schema_extra=_own("never: every epoch runs"),
    )


class SupervisedHyperparameters(TrainingHyperparameters):
    method: ClassVar[MethodName] = "supervised"

    stop_at_loss: StopAtLoss = _stop_at_loss()

    packing: AutoOr[Switch] = Field(
        AUTO,
        description="A batch's examples in one row, no padding, each attending only to itself (the loss equals the "
        "unpacked one); off: batches of similar lengths, padded.",
        json_schema_extra=_own("on"),
    )


class DpoHyperparameters(TrainingHyperparameters):
    method: ClassVar[MethodName] = "dpo"

    stop_at_loss: StopAtLoss = _stop_at_loss()

    beta: AutoOr[Annotated[Real, Field(gt=0, le=2)]] = Field(
        AUTO,
        description="How far the policy may move from the reference model (`train --beta`).",
        json_schema_extra=_openai("0.1"),
    )


def _default_effort(value: Any) -> Any:
    return "default" if value is None else value


ReasoningEffort = Literal["default", "low", "medium", "high"]


class ReinforcementHyperparameters(TrainingHyperparameters):
    """GRPO on the LoRA adapter (server/grpo.py): OpenAI's RFT fields with its bounds, and the sampling and policy
    settings GRPO itself needs (ftcli's own)."""

    method: ClassVar[MethodName] = "reinforcement"

    eval_interval: AutoOr[Annotated[Count, Field(ge=1)]] = Field(
        AUTO,
        description="Training steps between two rewards measured on the validation file's prompts.",
        json_schema_extra=_openai("the steps of one epoch (once per epoch)"),
    )
    eval_samples: AutoOr[Annotated[Count, Field(ge=1, le=256)]] = Field(
        AUTO,
        description="Answers sampled per validation prompt at each evaluation.",
        json_schema_extra=_openai("1"),
    )
    compute_multiplier: AutoOr[Annotated[Real, Field(gt=0.00001, le=10)]] = Field(
        AUTO,
        description="Scales the exploration: the answers sampled per prompt when `samples_per_prompt` is auto.",
        json_schema_extra=_openai("1"),
    )
    reasoning_effort: Annotated[ReasoningEffort, BeforeValidator(_default_effort)] = Field(
        "default",
        description="OpenAI's effort of its reasoning models; taken, and without effect on ftcli's bases (a warning "
        "event says so when it isn't `default`).",
        json_schema_extra=_openai("default"),
    )
    samples_per_prompt: AutoOr[Annotated[Count, Field(ge=2, le=256)]] = Field(
        AUTO,
        description="GRPO's group: answers sampled per training prompt, their rewards normalised within the group.",
        json_schema_extra=_own("4 × compute_multiplier, at least 2"),
    )
    max_new_tokens: AutoOr[Annotated[Count, Field(ge=1, le=32768)]] = Field(
        AUTO,
        description="The longest answer sampled (tokens); longer ones are cut there and graded as they are.",
        json_schema_extra=_own("256"),
    )
    temperature: AutoOr[Annotated[Real, Field(gt=0, le=2)]] = Field(
        AUTO,
        description="Sampling temperature of the training answers (validation answers too).",
        json_schema_extra=_own("1"),
    )
    kl_coefficient: AutoOr[Annotated[Real, Field(ge=0, le=10)]] = Field(
        AUTO,
        description="Weight of the KL penalty against the base (the adapter switched off); 0: none.",
        json_schema_extra=_own("0.04"),
    )
    clip_epsilon: AutoOr[Annotated[Real, Field(gt=0, le=1)]] = Field(
        AUTO,
        description="PPO's clip range of the policy ratio against the sampling policy.",
        json_schema_extra=_own("0.2"),
    )
    updates_per_batch: AutoOr[Annotated[Count, Field(ge=1, le=16)]] = Field(
        AUTO,
        description="Optimizer updates on each batch of sampled answers (GRPO's μ); from the second on, the clip "
        "keeps the policy near the one that sampled them.",
        json_schema_extra=_own("1"),
    )

    @model_validator(mode="after")
    def _unsharded(self) -> Self:
        if self.fsdp is True:
            raise PydanticCustomError(
                "combination",
                "fsdp can't be used for reinforcement training: each process samples its own answers, and sharded "
                "weights would make every process wait for the longest answer of all",
                {"key": "fsdp"},
            )
        return self


METHODS: dict[str, type[TrainingHyperparameters]] = {
    schema.method: schema for schema in (SupervisedHyperparameters, DpoHyperparameters, ReinforcementHyperparameters)
}
# OpenAI's job object carries these at its top level (`hyperparameters`, the deprecated place): the three of them
JOB_LEVEL = ("n_epochs", "batch_size", "learning_rate_multiplier")


def parse(method: str, values: Mapping[str, Any]) -> TrainingHyperparameters:
    """`values` as the method's typed model; InvalidHyperparameter names the first key that doesn't fit."""
    schema = METHODS.get(method)
    if schema is None:
        raise InvalidHyperparameter(f"no training method {_shown(method)}: {' or '.join(METHODS)}", None)
    try:
        return schema.model_validate(dict(values))
    except ValidationError as exc:
        raise _explained(schema, exc) from None


def known(method: str) -> list[str]:
    return list(METHODS[method].model_fields)


def openai_keys(method: str) -> list[str]:
    """The keys OpenAI itself takes for `method` (the others are ftcli serve's own)."""
    return [name for name in known(method) if _extra(METHODS[method], name).get("openai")]


def all_openai_keys() -> tuple[str, ...]:
    """OpenAI's own keys over every method (what OpenAI and Azure take, whatever the method)."""
    return tuple(dict.fromkeys(key for method in METHODS for key in openai_keys(method)))


def own_keys() -> list[str]:
    """ftcli serve's own keys over every method, in schema order (the ones `train -H` sets)."""
    names = [name for method in METHODS for name in known(method) if name not in openai_keys(method)]
    return list(dict.fromkeys(names))


def methods_of(key: str) -> list[str]:
    return [method for method in METHODS if key in METHODS[method].model_fields]


def rule(method: str, key: str) -> str:
    """What `key` takes, in words: "'auto' or an integer from 1 to 50"."""
    words = [word for option in _options(METHODS[method], key) for word in _words(option)]
    return _alternatives(["'auto'", *words] if _takes_auto(METHODS[method], key) else words)


def help_text() -> str:
    """ftcli serve's own keys with their values (each also takes `auto`), for `ftcli train -H`'s help."""
    parts = []
    for key in own_keys():
        method = methods_of(key)[0]
        only = (
            "" if len(methods_of(key)) == len(METHODS) else f" ({', '.join(_short(m) for m in methods_of(key))} only)"
        )
        shapes = "|".join(_compact(option) for option in _options(METHODS[method], key))
        parts.append(f"{key}={shapes}{only}")
    return ", ".join(parts)


def markdown_table() -> str:
    """The README's hyperparameter table: every key of every method, its values and what `auto` means."""
    lines = ["| key | method | values (or `auto`) | `auto` or left out | what it does |", "|---|---|---|---|---|"]
    keys = list(dict.fromkeys(name for method in METHODS for name in known(method)))
    for key in keys:
        methods = methods_of(key)
        schema = METHODS[methods[0]]
        values = _alternatives([word for option in _options(schema, key) for word in _words(option)])
        lines.append(
            f"| `{key}` | {', '.join(_short(m) for m in methods)} | {values} | {_extra(schema, key)['auto']} | "
            f"{schema.model_fields[key].description} |"
        )
    return "\n".join(lines) + "\n"


# -- explaining a refusal and describing a field (from the model's JSON schema, so the words match the checks) ------


def _explained(schema: type[TrainingHyperparameters], exc: ValidationError) -> InvalidHyperparameter:
    error = exc.errors()[0]
    if error["type"] == "combination":
        return InvalidHyperparameter(error["msg"], str((error.get("ctx") or {}).get("key")))
    key = str(error["loc"][0]) if error["loc"] else None
    if key is None:  # not a mapping at all
        return InvalidHyperparameter(f"hyperparameters must be an object, got {_shown(error['input'])}", None)
    if error["type"] == "extra_forbidden":
        return InvalidHyperparameter(
            f"unknown hyperparameter {_shown(key)} for {schema.method} training; it takes "
            f"{', '.join(schema.model_fields)}",
            key,
        )
    return InvalidHyperparameter(f"{key} must be {rule(schema.method, key)}, got {_shown(error['input'])}", key)


def _shown(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@cache
def _schema(model: type[TrainingHyperparameters]) -> dict[str, Any]:
    return model.model_json_schema()


def _options(model: type[TrainingHyperparameters], key: str) -> list[dict[str, Any]]:
    """The value shapes a field takes besides "auto"."""
    field = _schema(model)["properties"][key]
    return [option for option in field.get("anyOf", [field]) if option.get("const") != AUTO]


def _takes_auto(model: type[TrainingHyperparameters], key: str) -> bool:
    field = _schema(model)["properties"][key]
    return any(option.get("const") == AUTO for option in field.get("anyOf", [field]))


def _extra(model: type[TrainingHyperparameters], key: str) -> dict[str, Any]:
    extra = model.model_fields[key].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _number(value: Any) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _words(option: dict[str, Any]) -> list[str]:
    """One value shape in words; a choice is one word per value."""
    if "enum" in option or "const" in option:
        return [f"'{value}'" for value in option.get("enum", [option.get("const")])]
    if option.get("type") == "boolean":
        return ["true or false"]
    noun = "an integer" if option.get("type") == "integer" else "a number"
    low, above, high = option.get("minimum"), option.get("exclusiveMinimum"), option.get("maximum")
    if low is not None and high is not None:
        return [f"{noun} from {_number(low)} to {_number(high)}"]
    bounds = (
        [f"above {_number(above)}"] if above is not None else [f"at least {_number(low)}"] if low is not None else []
    )
    bounds += [f"at most {_number(high)}"] if high is not None else []
    return [" ".join([noun, ", ".join(bounds)]) if bounds else noun]


def _compact(option: dict[str, Any]) -> str:
    if "enum" in option or "const" in option:
        return "|".join(str(value) for value in option.get("enum", [option.get("const")]))
    if option.get("type") == "boolean":
        return "true|false"
    low, above, high = option.get("minimum"), option.get("exclusiveMinimum"), option.get("maximum")
    start = f"({_number(above)}," if above is not None else f"[{_number(low)}," if low is not None else "(,"
    return f"{start}{_number(high)}]" if high is not None else f"{start})"


def _alternatives(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _short(method: str) -> str:
    return {"supervised": "sft", "reinforcement": "rft"}.get(method, method)
