from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftcli.data import tokenizers
from ftcli.data.catalog import base_model, load_catalog
from ftcli.data.errors import DataError, TokenizerIntegrityError


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


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (key, *_strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _shared_texts(datasets: Path) -> list[str]:
    """Every string of every shared data set (keys and values), and each file's raw text in 500-char slices."""
    texts: list[str] = []
    for path in sorted(p for p in datasets.rglob("*.json*") if p.is_file()):
        raw = path.read_bytes().decode("utf-8", errors="replace")
        texts += [raw[i : i + 500] for i in range(0, len(raw), 500)]
        for line in raw.removeprefix("\ufeff").splitlines() if path.suffix == ".jsonl" else [raw]:
            try:
                texts += _strings(json.loads(line))
            except ValueError:
                continue
    return texts


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
@pytest.mark.parametrize("engine", ["bpe-openai", "tiktoken"])
def test_counters_count_exactly_like_tiktoken_on_the_shared_data(datasets: Path, name: str, engine: str) -> None:
    reference, counter = tokenizers.get_encoding(name), tokenizers.get_counting_encoding(name, engine)  # type: ignore[arg-type]
    texts = _shared_texts(datasets)
    assert len(texts) > 5000
    assert counter.engine == engine
    assert [counter.count(t) for t in texts] == [len(reference.encode_ordinary(t)) for t in texts]
    assert counter.special_tokens_set == reference.special_tokens_set


# Characters where tokenizers disagree if their pre-tokenization differs: every kind of space and line break,
# contractions in both cases, letters of each Unicode letter category and marks, digits, CJK, emoji.
_TRICKY = list(" \t\n\r\x0b\x0c\u00a0\u2003\u3000\u2028'sStTlLdDmMvVeErR")
_TRICKY += list("aZ9０１Ǆǅʰ漢字カナ한글ÀéñßΣσДж\u0301\u0651🙂👍🏽\u200d.,!?-_/()[]{}\"'«»…—–·、。！？")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(alphabet=st.sampled_from(_TRICKY) | st.characters(), max_size=120),
    name=st.sampled_from(["cl100k_base", "o200k_base"]),
)
def test_bpe_openai_counts_generated_text_like_tiktoken(text: str, name: str) -> None:
    reference = tokenizers.get_encoding(name)
    assert tokenizers.get_counting_encoding(name, "bpe-openai").count(text) == len(reference.encode_ordinary(text))


@pytest.mark.parametrize("engine", ["bpe-openai", "tiktoken"])
def test_lone_surrogates_count_as_tiktoken_counts_them(engine: str) -> None:
    reference = tokenizers.get_encoding("o200k_base")
    text = "a\ud800b \udfff"
    assert tokenizers.get_counting_encoding("o200k_base", engine).count(text) == len(reference.encode_ordinary(text))  # type: ignore[arg-type]


def test_auto_prefers_bpe_openai() -> None:
    assert tokenizers.get_counting_encoding("o200k_base").engine == "bpe-openai"


def test_a_bpe_openai_wheel_whose_vocabulary_is_not_openais_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.machinery
    import importlib.util

    real_spec = importlib.util.find_spec("bpe_openai")
    assert real_spec is not None and real_spec.submodule_search_locations
    real = Path(next(iter(real_spec.submodule_search_locations)))
    fake = tmp_path / "bpe_openai"
    (fake / "data").mkdir(parents=True)
    for binary in real.glob("_bindings*"):
        (fake / binary.name).symlink_to(binary)
    (fake / "data/o200k_base.tiktoken.gz").symlink_to(real / "data/o200k_base.tiktoken.gz")
    raw = gzip.decompress((real / "data/cl100k_base.tiktoken.gz").read_bytes())
    (fake / "data/cl100k_base.tiktoken.gz").write_bytes(gzip.compress(raw.replace(b" 100\n", b" 101\n", 1)))
    fake_spec = importlib.machinery.ModuleSpec("bpe_openai", None, is_package=True)
    fake_spec.submodule_search_locations = [str(fake)]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: fake_spec if name == "bpe_openai" else real_find_spec(name, *a)
    )
    tokenizers.get_counting_encoding.cache_clear()
    try:
        assert tokenizers.get_counting_encoding("cl100k_base").engine == "tiktoken"
        with pytest.raises(DataError, match="bpe-openai counter is not available"):
            tokenizers.get_counting_encoding("cl100k_base", "bpe-openai")
        assert tokenizers.get_counting_encoding("o200k_base").engine == "bpe-openai"
    finally:
        tokenizers.get_counting_encoding.cache_clear()


def test_auto_falls_back_to_tiktoken_without_bpe_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bpe_openai" else real_find_spec(name, *a)
    )
    tokenizers.get_counting_encoding.cache_clear()
    try:
        counter = tokenizers.get_counting_encoding("o200k_base")
        assert counter.engine == "tiktoken"
        assert counter.count("hello world") == 2
    finally:
        tokenizers.get_counting_encoding.cache_clear()
