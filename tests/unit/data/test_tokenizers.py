from __future__ import annotations

import gzip

import pytest

from ftcli.data import tokenizers
from ftcli.data.catalog import base_model, load_catalog
from ftcli.data.errors import TokenizerIntegrityError


@pytest.mark.parametrize(
    ("name", "text", "ids"),
    [
        ("o200k_base", "hello world", [24912, 2375]),
        ("cl100k_base", "hello world", [15339, 1917]),
        ("cl100k_base", "<|endoftext|>", None),
    ],
)
def test_encodings_match_tiktoken_ids(name: str, text: str, ids: list[int] | None) -> None:
    encoding = tokenizers.get_encoding(name)
    if ids is None:  # special tokens: only when allowed, as in tiktoken
        assert encoding.encode(text, allowed_special="all") == [100257]
        assert len(encoding.encode_ordinary(text)) > 1
    else:
        assert encoding.encode(text) == ids
    assert encoding.name == name


def test_chinese_text_round_trips() -> None:
    encoding = tokenizers.get_encoding("o200k_base")
    text = "外国人策动或帮助中国公民投敌叛变的，应以投敌叛变罪的共犯论处。"
    assert encoding.decode(encoding.encode(text)) == text


def test_damaged_tokenizer_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = gzip.decompress(
        tokenizers.resources.files("ftcli.data").joinpath("tokenizers", "cl100k_base.tiktoken.gz").read_bytes()
    )

    class Damaged:
        def joinpath(self, *_parts: str) -> Damaged:
            return self

        def read_bytes(self) -> bytes:
            return gzip.compress(raw[:-10] + b"AAAA 1\n")

    monkeypatch.setattr(tokenizers.resources, "files", lambda _pkg: Damaged())
    with pytest.raises(TokenizerIntegrityError, match="damaged"):
        tokenizers.load_ranks("cl100k_base")


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("ft:gpt-4.1-mini-2025-04-14:acme::abc123", "o200k_base"),
        ("ft:gpt-3.5-turbo-0125:acme:legal:xyz", "cl100k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-2025-04-14", "o200k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
    ],
)
def test_encoding_resolves_from_the_base_model(model: str, encoding: str) -> None:
    assert load_catalog().lookup(model).encoding == encoding


def test_base_model_of_fine_tuned_names() -> None:
    assert base_model("ft:gpt-4.1-mini-2025-04-14:org::id") == "gpt-4.1-mini-2025-04-14"
    assert base_model("gpt-4o") == "gpt-4o"


def test_counting_encoding_counts_like_tiktoken(datasets) -> None:  # type: ignore[no-untyped-def]
    text = (datasets / "chatlaw/demo_data_法律咨询.jsonl").read_text(encoding="utf-8")
    text += (datasets / "openai-cookbook/toy_chat_fine_tuning.jsonl").read_text(encoding="utf-8")
    for name in ("cl100k_base", "o200k_base"):
        full, light = tokenizers.get_encoding(name), tokenizers.get_counting_encoding(name)
        for chunk in (text[i : i + 500] for i in range(0, len(text), 500)):
            assert light.encode_ordinary(chunk) == full.encode_ordinary(chunk)
        assert light.special_tokens_set == full.special_tokens_set
