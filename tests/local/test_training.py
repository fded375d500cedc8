"""The local backend's training core on the tiny base: offline tokenizer, assistant-only labels, and LoRA that
makes trained answers far more likely than under the base. Learning is proven with margins (nats per token, loss
bounds), never with exact greedy strings, which differ between CPUs and library versions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local, pytest.mark.slow]

from ftcli.data.chat_template import IGNORE, encode_chat  # noqa: E402
from ftcli.data.local_bases import TINY_NAME, build_tiny_tokenizer  # noqa: E402
from ftcli.server import hardware  # noqa: E402
from ftcli.server.inference import ModelCache  # noqa: E402
from ftcli.server.protocol.hyperparameters import DpoHyperparameters, SupervisedHyperparameters  # noqa: E402
from ftcli.server.tiny import ensure_tiny  # noqa: E402
from ftcli.server.training import Hyperparameters, train_lora  # noqa: E402
from tests.local.recorded import Recorded  # noqa: E402
from tests.local.zorbia import QA, SYSTEM, chat_records  # noqa: E402


def answer_nll(loaded: object, examples: list[dict[str, object]]) -> float:
    """Mean negative log-likelihood, in nats per token, of the examples' assistant tokens under a loaded model."""
    import torch

    from ftcli.server.chat_tokens import collate

    encoded = [encode_chat(loaded.tokenizer, e["messages"]) for e in examples]  # type: ignore[attr-defined]
    inputs = collate(encoded, loaded.tokenizer.pad_token_id)  # type: ignore[attr-defined]
    labels = inputs.pop("labels")[:, 1:]
    with torch.no_grad():
        logits = loaded.model(**inputs).logits[:, :-1]  # type: ignore[attr-defined]
    mask = labels != IGNORE
    picked = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float(-(picked * mask).sum() / mask.sum())


def test_tokenizer_is_offline_and_round_trips() -> None:
    tokenizer = build_tiny_tokenizer()
    text = "劳动合同的试用期最长多久？ Six months."
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_labels_cover_assistant_turns_and_honour_weight_zero() -> None:
    tokenizer = build_tiny_tokenizer()
    messages = [
        SYSTEM,
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "skip me", "weight": 0},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "learn me"},
    ]
    encoded = encode_chat(tokenizer, messages)
    trained = tokenizer.decode(
        [i for i, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE]
    )
    assert trained == "learn me<|im_end|>\n"


def test_tiny_base_is_cached_as_safetensors(tiny_base: Path) -> None:
    files = {p.name for p in tiny_base.iterdir()}
    assert "model.safetensors" in files and not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    stamp = (tiny_base / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny(tiny_base) == tiny_base and (tiny_base / "model.safetensors").stat().st_mtime_ns == stamp


def test_lora_makes_trained_answers_far_more_likely_than_the_base(tiny_base: Path, tmp_path: Path) -> None:
    examples = chat_records(QA)
    recorded = Recorded()
    hyper, result = train_lora(
        tiny_base,
        TINY_NAME,
        examples,
        output=tmp_path / "run",
        seed=1,
        requested=SupervisedHyperparameters(n_epochs=50, batch_size=2),  # at most 50 epochs: OpenAI's bound
        reporter=recorded,
    )
    steps, checkpoints = recorded.losses, [epoch for epoch, _ in recorded.checkpoints]
    asked = Hyperparameters.resolve(SupervisedHyperparameters(n_epochs=50, batch_size=2), n_examples=10, base=TINY_NAME)
    # what depends on the base and the machine is settled once the base is loaded: tiny's context, this CPU's
    # precision (bf16 where it computes in it, else fp32)
    precision = hardware.precision(None, hardware.Machine.this_one())
    if hardware.Machine.this_one().gpu_bytes is None:  # a tiny model's passes: held to a CPU's cap, not its memory
        assert hyper.tokens_per_pass == hardware.CPU_TOKENS_PER_PASS
    else:
        assert (hyper.tokens_per_pass or 0) > 2048
    assert hyper == replace(
        asked,
        max_seq_length=2048,
        gradient_checkpointing=False,
        precision=precision,
        tokens_per_pass=hyper.tokens_per_pass,
    )
    # ... and the job reports every setting as it trained with it, in the method's schema (a valid request again)
    assert hyper.trained_with() == SupervisedHyperparameters(
        n_epochs=50, batch_size=2, learning_rate_multiplier=1.0, lora_rank=32, lora_alpha=64, lora_dropout=0.0,
        max_seq_length=2048, gradient_checkpointing=False, quantization="none", precision=precision, fsdp=False,
        packing=True,
    )  # fmt: skip
    assert result.steps == 250 and len(steps) == 250 and result.stopped_early is None
    # Loss bound: the last epochs' mean is a fraction of the first step's (1/3 holds anywhere)
    assert sum(steps[-10:]) / 10 < steps[0] / 3, (steps[0], steps[-10:])
    assert checkpoints == list(range(1, 51)) and [m.epoch for m in recorded.epochs] == checkpoints
    assert all(m.valid_loss is None for m in recorded.epochs)  # no validation file
    kept = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint"))
    assert kept == ["checkpoint-epoch-48", "checkpoint-epoch-49", "checkpoint-epoch-50"]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()

    cache = ModelCache()
    base = answer_nll(cache.get(tiny_base, None), examples)
    tuned = answer_nll(cache.get(tiny_base, tmp_path / "run" / "adapter"), examples)
    # Measured here: base 3.6 nats/token (near chance for a made-up country), tuned 0.6. The margins are wide.
    assert base > 2.5 and tuned < 1.5 and base - tuned > 1.5, (base, tuned)


def test_a_packed_batch_has_the_loss_of_the_same_examples_unpacked(tiny_base: Path) -> None:
    import torch

    from ftcli.server.chat_tokens import collate, pack
    from ftcli.server.training import load_base

    model, tokenizer = load_base(tiny_base)
    model.eval()
    chats = [
        [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a * (1 + i % 3)}]
        for i, (q, a) in enumerate(QA)
    ]
    encoded = [encode_chat(tokenizer, chat) for chat in chats]
    longest = max(len(e.input_ids) for e in encoded)
    packed = pack(encoded, tokenizer.pad_token_id, row_tokens=longest * 3)
    unpacked = collate(encoded, tokenizer.pad_token_id)
    assert packed["input_ids"].shape[0] < len(encoded) / 2  # several examples share each row
    assert int((packed["labels"] != IGNORE).sum()) == int((unpacked["labels"] != IGNORE).sum())

    with torch.no_grad():
        packed_out = model(**packed, use_cache=False)
        unpacked_out = model(**unpacked, use_cache=False)
    assert float(packed_out.loss) == pytest.approx(float(unpacked_out.loss), rel=1e-4)

    def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        picked = torch.gather(logits[:, :-1].log_softmax(-1), 2, labels[:, 1:].clamp(min=0).unsqueeze(-1))
        return picked.squeeze(-1) * (labels[:, 1:] != IGNORE)

    # Per example: the answer's log-likelihood inside a packed row equals its own row's (nothing leaks across)
    unpacked_logps = token_logps(unpacked_out.logits, unpacked["labels"]).sum(-1).tolist()
    by_ids = {tuple(e.input_ids): value for e, value in zip(encoded, unpacked_logps, strict=True)}
    packed_logps = token_logps(packed_out.logits, packed["labels"])
    seen = 0
    for row, positions in enumerate(packed["position_ids"]):
        starts = [i for i, p in enumerate(positions.tolist()) if p == 0] + [len(positions)]
        for start, end in zip(starts, starts[1:], strict=False):
            ids = tuple(packed["input_ids"][row, start:end].tolist())
            if ids in by_ids:  # (the row's padding tail is not an example)
                seen += 1
                inside = float(packed_logps[row, max(0, start - 1) : end - 1].sum())
                assert inside == pytest.approx(by_ids[ids], rel=1e-4, abs=1e-3), (row, start)
    assert seen == len(encoded)


def test_training_stops_once_the_loss_is_low_enough(tiny_base: Path, tmp_path: Path) -> None:
    examples = chat_records(QA[:4])
    recorded = Recorded()
    hyper, result = train_lora(
        tiny_base,
        TINY_NAME,
        examples,
        output=tmp_path / "run",
        seed=2,
        requested=SupervisedHyperparameters(n_epochs=50, batch_size=2, stop_at_loss=2.5),
        reporter=recorded,
    )
    epochs = [[m.train_loss for m in recorded.steps if m.epoch == epoch] for epoch, _ in recorded.checkpoints]
    assert hyper.n_epochs == 50 and hyper.stop_at_loss == 2.5 and result.stopped_early is not None
    stopped_at, loss = result.stopped_early
    ran = [e for e in epochs if e]
    assert 1 <= stopped_at < 50 and len(ran) == stopped_at and result.steps == 2 * stopped_at
    assert loss <= 2.5 and loss == pytest.approx(sum(ran[-1]) / 2)  # the last epoch reached it; none before did
    assert all(sum(e) / 2 > 2.5 for e in ran[:-1])
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()


def test_dpo_moves_the_model_towards_preferred_answers(tiny_base: Path, tmp_path: Path) -> None:
    import torch

    from ftcli.server.chat_tokens import collate
    from ftcli.server.objectives import Dpo, sequence_logps

    wrong = [a for _, a in QA[1:] + QA[:1]]  # each question paired with another question's answer
    pairs = [
        {
            "input": {"messages": [SYSTEM, {"role": "user", "content": q}]},
            "preferred_output": [{"role": "assistant", "content": a}],
            "non_preferred_output": [{"role": "assistant", "content": w}],
        }
        for (q, a), w in zip(QA, wrong, strict=True)
    ]
    recorded = Recorded()
    hyper, result = train_lora(
        tiny_base,
        TINY_NAME,
        pairs,
        output=tmp_path / "dpo",
        seed=3,
        requested=DpoHyperparameters(n_epochs=15, batch_size=2, beta=0.5),
        reporter=recorded,
    )
    seen = [(m.train_loss, m.train_mean_token_accuracy) for m in recorded.steps]
    assert hyper.beta == 0.5 and result.steps == 75 and len(seen) == 75
    assert abs(seen[0][0] - 0.6931) < 0.05  # log 2: the policy starts equal to its reference
    assert sum(loss for loss, _ in seen[-5:]) / 5 < 0.3 and all(accuracy == 1.0 for _, accuracy in seen[-5:])

    cache = ModelCache()

    def preference(adapter: Path | None) -> list[float]:
        loaded = cache.get(tiny_base, adapter)
        encoded = [Dpo(loaded.tokenizer, 0.5).encode(pair) for pair in pairs]
        inputs = collate([e.chosen for e in encoded] + [e.rejected for e in encoded], loaded.tokenizer.pad_token_id)
        labels = inputs.pop("labels")
        with torch.no_grad():
            logps = sequence_logps(loaded.model(**inputs).logits, labels)
        return (logps[: len(pairs)] - logps[len(pairs) :]).tolist()  # type: ignore[no-any-return]

    before, after = preference(None), preference(tmp_path / "dpo" / "adapter")
    # the implicit reward β·(Δ policy − Δ reference) clearly favours every preferred answer
    assert all(a - b > 2 for a, b in zip(after, before, strict=True)), (before, after)


TOOL_CHAT = [
    SYSTEM,
    {"role": "user", "content": "Weather in Quellan?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Quellan"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "rain"},
    {"role": "assistant", "content": "Rain in Quellan."},
]
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]


def _trained_text(tokenizer: object, encoded: object) -> str:
    ids = [i for i, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE]  # type: ignore[attr-defined]
    return str(tokenizer.decode(ids))  # type: ignore[attr-defined]


def test_tool_calls_are_learned_as_text_where_the_template_has_no_tools() -> None:
    tokenizer = build_tiny_tokenizer()  # plain ChatML: no tool support
    encoded = encode_chat(tokenizer, TOOL_CHAT, tools=TOOLS)
    text = tokenizer.decode(encoded.input_ids)
    assert '<tools>\n{"type": "function", "function": {"name": "weather"' in text
    assert "<|im_start|>tool\n<tool_response>\nrain\n</tool_response>" in text and "None" not in text
    trained = _trained_text(tokenizer, encoded)
    assert trained.startswith('<tool_call>\n{"name": "weather", "arguments": {"city": "Quellan"}}\n</tool_call>')
    assert trained.endswith("Rain in Quellan.<|im_end|>\n") and "rain\n</tool_response>" not in trained


def test_tool_calls_go_through_a_template_that_renders_them() -> None:
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = (
        "{% if tools %}[TOOLS]{{ tools | tojson }}{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m.get('tool_calls') %}[CALL]{{ m['tool_calls'][0]['function']['name'] }}{% else %}{{ m['content'] }}"
        "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    encoded = encode_chat(tokenizer, TOOL_CHAT, tools=TOOLS)
    assert tokenizer.decode(encoded.input_ids).startswith('[TOOLS][{"type": "function"')
    assert _trained_text(tokenizer, encoded) == "[CALL]weather<|im_end|>\nRain in Quellan.<|im_end|>\n"


def test_training_is_deterministic_with_a_seed(tiny_base: Path, tmp_path: Path) -> None:
    examples = chat_records(QA[:4])

    def run(name: str, seed: int) -> tuple[list[float], bytes]:
        recorded = Recorded()
        train_lora(
            tiny_base,
            TINY_NAME,
            examples,
            output=tmp_path / name,
            seed=seed,
            requested=SupervisedHyperparameters(n_epochs=2, batch_size=2),
            reporter=recorded,
        )
        return recorded.losses, (tmp_path / name / "adapter" / "adapter_model.safetensors").read_bytes()

    first, again, other = run("a", 5), run("b", 5), run("c", 6)
    assert first == again and len(first[0]) == 4
    assert other[1] != first[1]  # the seed matters: LoRA's initial weights and the batch order
