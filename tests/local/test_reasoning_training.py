"""Reasoning traces on the local backend (issue 23, point 2), and images refused (point 1): an assistant message's
reasoning is rendered through the base's own chat template (a Qwen3-style `<think>` block) and trained as part of
the answer; `check --model <base>` counts it as the job does; where the template has no place for it, or leaves it
out, or the data holds images, the job fails validation saying so — never trained as if they weren't there.

The thinking base is built in code (tests/local/thinking.py): ftcli/tiny's tokenizer, a template modelled on Qwen3's,
random weights. Labels are asserted on encoded examples, never on greedy strings."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local]

from ftcli.data.chat_template import IGNORE, ChatTemplateError, encode_chat, renders_reasoning  # noqa: E402
from ftcli.data.check.engine import CheckOptions, check_file  # noqa: E402
from ftcli.data.local_bases import TINY_NAME, build_tiny_tokenizer  # noqa: E402
from ftcli.server.runner import JobRunner  # noqa: E402
from ftcli.server.store import Store  # noqa: E402
from tests.local.thinking import reasoning_chat, thinking_base, thinking_tokenizer  # noqa: E402
from tests.local.zorbia import QA  # noqa: E402

REASONED = [reasoning_chat(q, f"The notes on Zorbia say: {a}", a) for q, a in QA[:4]]
# a 1×1 PNG, so that check's image rules (FT220–FT222) pass and only the backend's refusal is left
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


def trained_text(tokenizer: Any, messages: list[dict[str, Any]]) -> str:
    encoded = encode_chat(tokenizer, messages)
    return str(
        tokenizer.decode([i for i, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE])
    )


def test_the_reasoning_is_rendered_in_think_and_its_tokens_are_labelled() -> None:
    tokenizer = thinking_tokenizer()
    record = reasoning_chat("2+2?", "Two and two make four.", "4.")
    assert trained_text(tokenizer, record["messages"]) == "<think>\nTwo and two make four.\n</think>\n\n4.<|im_end|>\n"
    other_name = reasoning_chat("2+2?", "Two and two make four.", "4.", key="reasoning")  # Together's name
    assert encode_chat(tokenizer, other_name["messages"]) == encode_chat(tokenizer, record["messages"])
    assert renders_reasoning(tokenizer) and not renders_reasoning(build_tiny_tokenizer())


def test_earlier_answers_are_labelled_as_the_conversation_renders_them() -> None:
    """Qwen3's template renders an earlier answer without its think block: its label is that rendering, and no
    token of the next user message is ever labelled (as it was when spans were taken from the prefix alone)."""
    tokenizer = thinking_tokenizer()
    messages = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2", "reasoning_content": "r2"},
    ]
    assert trained_text(tokenizer, messages) == "a1<|im_end|>\n<think>\nr2\n</think>\n\na2<|im_end|>\n"


def test_reasoning_the_template_leaves_out_is_refused_not_dropped() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1", "reasoning_content": "r1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2", "reasoning_content": "r2"},
    ]
    with pytest.raises(ChatTemplateError, match=r"messages\[1\] carries reasoning, which the chat template leaves out"):
        encode_chat(thinking_tokenizer(), messages)
    messages[1]["weight"] = 0  # context, not trained: rendered as the template renders history (as at inference)
    assert trained_text(thinking_tokenizer(), messages) == "<think>\nr2\n</think>\n\na2<|im_end|>\n"
    with pytest.raises(ChatTemplateError, match="has no place for it"):
        encode_chat(build_tiny_tokenizer(), REASONED[0]["messages"])  # ChatML renders no reasoning_content


def test_a_preference_pair_trains_each_answers_reasoning() -> None:
    from ftcli.data.chat_template import encode_preference

    tokenizer = thinking_tokenizer()
    record = {
        "input": {"messages": [{"role": "user", "content": "Capital of Zorbia?"}]},
        "preferred_output": [{"role": "assistant", "content": "Quellan.", "reasoning_content": "The notes say so."}],
        "non_preferred_output": [{"role": "assistant", "content": "Paris.", "reasoning": "A guess."}],
    }
    chosen, rejected = encode_preference(tokenizer, record)
    trained = [
        tokenizer.decode([i for i, lab in zip(e.input_ids, e.labels, strict=True) if lab != IGNORE])
        for e in (chosen, rejected)
    ]
    assert trained == [
        "<think>\nThe notes say so.\n</think>\n\nQuellan.<|im_end|>\n",
        "<think>\nA guess.\n</think>\n\nParis.<|im_end|>\n",
    ]


def test_text_parts_are_rendered_as_their_text_not_a_list() -> None:
    tokenizer = build_tiny_tokenizer()
    parts = [{"type": "text", "text": "Capital "}, {"type": "text", "text": "of Zorbia?"}]
    encoded = encode_chat(tokenizer, [{"role": "user", "content": parts}, {"role": "assistant", "content": "Quellan."}])
    assert tokenizer.decode(encoded.input_ids).startswith("<|im_start|>user\nCapital of Zorbia?<|im_end|>")


def test_check_counts_the_reasoning_as_the_encoder_trains_it(tmp_path: Path) -> None:
    base = thinking_base(tmp_path / "thinker")
    path = write(tmp_path / "reasoned.jsonl", REASONED)
    report = check_file(path, options=CheckOptions(model=str(base), workers=1))
    tokenizer = thinking_tokenizer()
    encoded = [encode_chat(tokenizer, r["messages"]) for r in REASONED]
    assert report.statistics.trained_tokens_per_example.total == sum(e.trained_tokens for e in encoded)
    assert report.statistics.tokens_per_example.total == sum(e.tokens for e in encoded)
    reasoning_bytes = sum(len(r["messages"][1]["reasoning_content"].encode()) for r in REASONED)
    answers_bytes = sum(len(r["messages"][1]["content"].encode()) for r in REASONED)
    assert sum(e.trained_tokens for e in encoded) > reasoning_bytes + answers_bytes  # byte tokens: all of both
    assert "FT320" not in {d.code for d in report.diagnostics}


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def validated(tmp_path: Path, model: str, records: list[dict[str, Any]], **hyperparameters: Any) -> tuple[Store, str]:
    """A job on `records` through the server's validation (`validating_files`), as `ftcli serve` runs it."""
    store = Store(tmp_path / "data")
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    row = store.add_file(io.BytesIO(data), limit=1 << 24, filename="train.jsonl", purpose="fine-tune")
    method = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}
    store.save_job({"id": "ftjob-r", "status": "validating_files", "created_at": 0, "model": model, "seed": 1,
                    "training_file": row["id"], "validation_file": None, "method": method})  # fmt: skip
    job = store.job("ftjob-r")
    assert job is not None
    JobRunner(store)._validate(job)
    return store, "ftjob-r"


def refusal(store: Store, job_id: str) -> str:
    job = store.job(job_id)
    assert job is not None and job["status"] == "failed", job
    assert job["error"]["code"] == "invalid_training_file"
    return str(job["error"]["message"])


def test_a_job_trains_the_reasoning_and_its_tokens_are_checks_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ftcli.server import worker
    from ftcli.server.objectives import Supervised

    base = thinking_base(tmp_path / "models" / "thinker")
    monkeypatch.setenv("FTCLI_MODEL_ROOTS", str(tmp_path / "models"))
    monkeypatch.setattr(worker, "exit_with_parent", lambda: None)
    store, job_id = validated(tmp_path, str(base), REASONED, n_epochs=2, batch_size=2, lora_rank=4)
    assert store.job(job_id)["status"] == "queued"  # type: ignore[index]
    worker.run_job(str(tmp_path / "data"), job_id)
    job = store.job(job_id)
    assert job is not None and job["status"] == "succeeded", job
    # what the job trained on: each answer's reasoning, in its <think> block, is labelled with the answer
    objective = Supervised(thinking_tokenizer())
    for record in REASONED:
        encoded = objective.encode(record)
        trained = objective.tokenizer.decode(
            [i for i, lab in zip(encoded.input_ids, encoded.labels, strict=True) if lab != IGNORE]
        )
        answer = record["messages"][1]
        assert trained == f"<think>\n{answer['reasoning_content']}\n</think>\n\n{answer['content']}<|im_end|>\n"
    estimate = check_file(
        write(tmp_path / "t.jsonl", REASONED), options=CheckOptions(model=str(base), epochs=2, workers=1)
    )
    assert job["trained_tokens"] == estimate.estimate.billed_tokens > 0


def test_reasoning_on_a_base_whose_template_has_no_place_for_it_fails_validation(tmp_path: Path) -> None:
    message = refusal(*validated(tmp_path, TINY_NAME, REASONED))
    assert "4 examples (the first: line 1) carry reasoning" in message
    assert "ftcli/tiny's chat template has no place for it" in message and "leave the reasoning out" in message


def test_reasoning_the_template_would_leave_out_fails_validation_naming_the_line(tmp_path: Path) -> None:
    base = thinking_base(tmp_path / "thinker")
    two_turns = {
        "messages": [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1", "reasoning_content": "r1"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a2", "reasoning_content": "r2"},
        ]
    }
    message = refusal(*validated(tmp_path, str(base), [*REASONED, two_turns]))
    assert "line 5: messages[1] carries reasoning, which the chat template leaves out here" in message


def test_images_fail_validation_the_local_backend_trains_no_vision_models(tmp_path: Path) -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    looking = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is in the picture?"}, image]},
            {"role": "assistant", "content": "A single dot."},
        ]
    }
    records = [*[{"messages": r["messages"][:1] + [{"role": "assistant", "content": "x"}]} for r in REASONED], looking]
    assert (
        check_file(
            write(tmp_path / "i.jsonl", records), options=CheckOptions(workers=1, profile="local-training")
        ).errors
        == 0
    )
    message = refusal(*validated(tmp_path, TINY_NAME, records))
    assert "1 example (the first: line 5, messages[0].content[1]) hold images" in message
    assert "the local backend does not train vision models yet" in message
