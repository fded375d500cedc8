"""The one hyperparameter schema (data/hyperparameters.py): per method, each key "auto" or a value within bounds,
unknown keys refused naming the known ones, no NaN, infinity or text where a number belongs; and the README's table
and `train -H`'s help rendered from it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.data import hyperparameters
from ftcli.data.hyperparameters import (
    DpoHyperparameters,
    InvalidHyperparameter,
    ReinforcementHyperparameters,
    SupervisedHyperparameters,
    markdown_table,
    parse,
)
from tests.conftest import REPO

BOTH = ["supervised", "dpo", "reinforcement"]


@pytest.mark.parametrize(
    ("method", "key", "value", "says"),
    [
        # the attacks of the review: a rank that made the worker allocate 768 TB, an epoch count JSON reads as inf
        ("supervised", "lora_rank", 10**12, "an integer from 1 to 1024, got 1000000000000"),
        ("supervised", "n_epochs", float("inf"), "an integer from 1 to 50, got Infinity"),
        ("dpo", "beta", float("nan"), "a number above 0, at most 2, got NaN"),
        ("supervised", "lora_rank", "abc", 'got "abc"'),  # `-H lora_rank=abc`: refused, not failed later
        ("supervised", "learning_rate_multiplier", -1, "a number above 0, at most 10, got -1"),
        ("supervised", "learning_rate_multiplier", 0, "got 0"),
        ("supervised", "learning_rate_multiplier", "1", 'got "1"'),  # a string is not read as a number
        ("supervised", "n_epochs", 51, "from 1 to 50"),
        ("supervised", "n_epochs", 0, "from 1 to 50"),
        ("supervised", "n_epochs", True, "got true"),  # nor a boolean
        ("supervised", "n_epochs", 2.5, "got 2.5"),
        ("dpo", "batch_size", 257, "from 1 to 256"),
        ("supervised", "lora_dropout", 0.95, "from 0 to 0.9"),
        ("supervised", "lora_dropout", -0.1, "from 0 to 0.9"),
        ("supervised", "stop_at_loss", 0, "above 0"),
        ("supervised", "max_seq_length", 8, "from 16 to 1048576"),
        ("supervised", "gradient_checkpointing", "maybe", "'auto' or true or false"),
        ("supervised", "fsdp", 1, "true or false, got 1"),
        ("supervised", "quantization", "8bit", "'auto', 'none' or '4bit'"),
        ("dpo", "precision", "fp8", "'auto', 'bf16', 'fp16' or 'fp32'"),
        ("dpo", "beta", 2.5, "at most 2"),
        # reinforcement: OpenAI's bounds for OpenAI's keys, GRPO's own for the rest
        ("reinforcement", "compute_multiplier", 0.00001, "a number above 1e-05, at most 10"),
        ("reinforcement", "compute_multiplier", 11, "at most 10"),
        ("reinforcement", "eval_interval", 0, "an integer at least 1"),
        ("reinforcement", "eval_samples", 1.5, "got 1.5"),
        ("reinforcement", "eval_samples", 257, "from 1 to 256"),  # each one generated per validation prompt
        ("reinforcement", "samples_per_prompt", 1, "from 2 to 256"),  # a group of one has no spread to learn from
        ("reinforcement", "temperature", 0, "a number above 0, at most 2"),
        ("reinforcement", "kl_coefficient", float("nan"), "got NaN"),
        ("reinforcement", "clip_epsilon", 1.5, "at most 1"),
        ("reinforcement", "max_new_tokens", 0, "from 1 to 32768"),
        ("reinforcement", "updates_per_batch", 17, "from 1 to 16"),
    ],
)
def test_a_value_outside_its_type_or_bounds_is_refused_naming_the_key(
    method: str, key: str, value: Any, says: str
) -> None:
    with pytest.raises(InvalidHyperparameter) as refused:
        parse(method, {key: value})
    assert refused.value.key == key
    assert refused.value.message.startswith(f"{key} must be 'auto'") and says in refused.value.message


@pytest.mark.parametrize(
    ("method", "key"), [("supervised", "bogus"), ("supervised", "beta"), ("dpo", "packing"), ("dpo", "learning_rate")]
)
def test_a_key_the_method_doesnt_take_is_refused_naming_those_it_does(method: str, key: str) -> None:
    with pytest.raises(InvalidHyperparameter) as refused:
        parse(method, {"n_epochs": 2, key: 1})
    assert refused.value.key == key
    assert f'unknown hyperparameter "{key}" for {method} training' in refused.value.message
    assert ", ".join(hyperparameters.known(method)) in refused.value.message
    assert refused.value.exit_code == 2  # a usage error, no traceback


def test_auto_null_whole_floats_and_the_bounds_themselves_are_taken() -> None:
    given = parse(
        "supervised", {"n_epochs": 50.0, "batch_size": None, "learning_rate_multiplier": 10, "lora_dropout": 0}
    )
    assert given == SupervisedHyperparameters(n_epochs=50, learning_rate_multiplier=10.0, lora_dropout=0.0)
    assert given.given() == {"n_epochs": 50, "batch_size": "auto", "learning_rate_multiplier": 10.0, "lora_dropout": 0}
    assert isinstance(given.n_epochs, int) and isinstance(given.lora_dropout, float)
    assert parse("dpo", {"beta": 2, "lora_rank": 1024, "precision": "fp32"}) == DpoHyperparameters(
        beta=2.0, lora_rank=1024, precision="fp32"
    )
    assert parse("dpo", {}) == DpoHyperparameters() and DpoHyperparameters().beta == "auto"


def test_reinforcement_takes_openais_keys_and_grpos_own() -> None:
    given = parse("reinforcement", {"eval_interval": 10**6, "compute_multiplier": 10, "reasoning_effort": None})
    assert given == ReinforcementHyperparameters(eval_interval=10**6, compute_multiplier=10.0)
    assert given.reasoning_effort == "default"  # OpenAI's word for it, not "auto"
    assert parse("reinforcement", {"reasoning_effort": "high", "samples_per_prompt": 8}).samples_per_prompt == 8
    with pytest.raises(InvalidHyperparameter, match="must be 'default', 'low', 'medium' or 'high', got \"auto\""):
        parse("reinforcement", {"reasoning_effort": "auto"})
    with pytest.raises(InvalidHyperparameter, match="fsdp can't be used for reinforcement") as refused:
        parse("reinforcement", {"fsdp": True})
    assert refused.value.key == "fsdp"
    with pytest.raises(InvalidHyperparameter, match='unknown hyperparameter "stop_at_loss" for reinforcement'):
        parse("reinforcement", {"stop_at_loss": 0.1})  # a policy gradient's loss says nothing of quality
    assert hyperparameters.openai_keys("reinforcement") == [
        "n_epochs", "batch_size", "learning_rate_multiplier",
        "eval_interval", "eval_samples", "compute_multiplier", "reasoning_effort",
    ]  # fmt: skip


def test_fsdp_and_four_bit_quantization_are_refused_together() -> None:
    with pytest.raises(InvalidHyperparameter, match="can't be combined") as refused:
        parse("supervised", {"fsdp": True, "quantization": "4bit"})
    assert refused.value.key == "fsdp"
    assert parse("supervised", {"fsdp": False, "quantization": "4bit"}).quantization == "4bit"


def test_an_unknown_method_is_refused() -> None:
    with pytest.raises(InvalidHyperparameter, match="no training method"):
        parse("unsupervised", {})


def test_openais_keys_are_marked_per_method() -> None:
    assert hyperparameters.openai_keys("supervised") == ["n_epochs", "batch_size", "learning_rate_multiplier"]
    assert hyperparameters.openai_keys("dpo") == ["n_epochs", "batch_size", "learning_rate_multiplier", "beta"]
    assert "beta" not in hyperparameters.own_keys() and "packing" in hyperparameters.own_keys()


def test_the_readmes_table_is_the_one_the_schema_renders() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- hyperparameters:[^\n]*-->\n(.*?)\n *<!-- /hyperparameters -->", readme, re.DOTALL)
    assert found, "README.md has no generated hyperparameter table"
    in_readme = "\n".join(line.strip() for line in found.group(1).splitlines()) + "\n"
    assert in_readme == markdown_table(), "regenerate it: python -c 'from ftcli.data.hyperparameters import *; ...'"
    for method in BOTH:  # every key of every method has its row
        for key in hyperparameters.known(method):
            assert f"| `{key}` |" in in_readme


def test_train_help_lists_ftcli_serves_keys_from_the_schema() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for key in hyperparameters.own_keys():
        assert key in text
    assert "lora_rank=[1,1024]" in text and "quantization=none|4bit" in text and "packing=true|false (sft only)" in text
