"""The sampling fields the chat route accepts within OpenAI's bounds are honoured, not ignored (issue 29): stop
sequences end the answer before them (never a part of one sent, even split across tokens), presence and frequency
penalties follow OpenAI's formula, and every edge of the bounds generates without failing."""

from __future__ import annotations

import threading
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")

from ftcli.data.local_bases import build_tiny_tokenizer  # noqa: E402
from ftcli.server.inference import LoadedModel, Sampling, _until_stop_sequence, generate_stream, penalized  # noqa: E402
from ftcli.server.protocol.chat import INT64  # noqa: E402
from ftcli.server.tiny import build_model  # noqa: E402

pytestmark = [pytest.mark.local]
ASK = [{"role": "user", "content": "Say something."}]


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    """`ftcli/tiny`'s architecture and tokenizer, untrained (built in a second, not pretrained)."""
    tokenizer = build_tiny_tokenizer()
    return LoadedModel(build_model(len(tokenizer)).eval(), tokenizer, threading.Lock())


@pytest.mark.parametrize(
    ("deltas", "stops", "expected"),
    [
        (["Hello wor", "ld. Bye"], ("world",), "Hello "),
        (["ab", "c", "STO", "P", "de"], ("STOP",), "abc"),
        (["abc"], ("x", "b"), "a"),
        (["STOP", "more"], ("STOP",), ""),
        (["no stop ", "here"], ("STOP",), "no stop here"),
        (["ST", "OX"], ("STOP",), "STOX"),  # a prefix that doesn't go on is sent after all
    ],
)
def test_the_answer_ends_before_the_first_stop_sequence(
    deltas: list[str], stops: tuple[str, ...], expected: str
) -> None:
    sent = list(_until_stop_sequence(iter(deltas), stops))
    assert "".join(sent) == expected
    assert not any(stop[:1] and stop in "".join(sent) for stop in stops)


def test_penalties_follow_openais_formula() -> None:
    scores = torch.zeros((1, 5))
    generated = torch.tensor([[2, 2, 4]])  # token 2 came twice, token 4 once
    out = penalized(scores, generated, Sampling(presence_penalty=0.5, frequency_penalty=1.0))
    assert out.tolist() == [[0.0, 0.0, -2.5, 0.0, -1.5]]
    boosted = penalized(scores, generated, Sampling(presence_penalty=-2.0, frequency_penalty=0.0))
    assert boosted.tolist() == [[0.0, 0.0, 2.0, 0.0, 2.0]]


def test_a_stop_sequence_ends_a_real_generation(loaded: LoadedModel) -> None:
    whole = "".join(generate_stream(loaded, ASK, Sampling(max_tokens=40, min_tokens=40)))
    assert len(whole) >= 10
    stop = whole[5:8]
    cut = "".join(generate_stream(loaded, ASK, Sampling(max_tokens=40, min_tokens=40, stop=(stop,))))
    assert cut == whole[: whole.index(stop)]


def test_a_frequency_penalty_changes_a_repetitive_answer(loaded: LoadedModel) -> None:
    plain = "".join(generate_stream(loaded, ASK, Sampling(max_tokens=30, min_tokens=30)))
    penalised = "".join(generate_stream(loaded, ASK, Sampling(max_tokens=30, min_tokens=30, frequency_penalty=2.0)))
    assert len(set(penalised)) > len(set(plain))  # an untrained model repeats itself; penalised, less


@pytest.mark.parametrize(
    "edges",
    [
        {"temperature": 2.0, "top_p": 1.0, "seed": INT64[1]},
        {"temperature": 1e-300, "top_p": 1.0, "seed": INT64[0]},  # greedy, not logits divided into infinity
        {"temperature": 1.0, "top_p": 0.0},  # only the most likely token
        {"temperature": 1.0, "top_p": 1e-300},
        {"presence_penalty": -2.0, "frequency_penalty": -2.0},
        {"presence_penalty": 2.0, "frequency_penalty": 2.0, "temperature": 2.0},
    ],
)
def test_every_edge_of_the_bounds_generates(loaded: LoadedModel, edges: dict[str, Any]) -> None:
    assert "".join(generate_stream(loaded, ASK, Sampling(max_tokens=5, min_tokens=5, **edges)))
