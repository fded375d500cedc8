"""text_similarity's metrics against values worked out by hand on small strings, Chinese text included."""

from __future__ import annotations

from typing import Any

import pytest

from ftcli.data.graders import similarity
from ftcli.data.graders.engine import Sample, grade
from ftcli.data.graders.spec import GraderError, parse_grader

pytest.importorskip("sacrebleu", reason="the eval extra (scripts/test installs it)")
pytest.importorskip("rapidfuzz", reason="the eval extra (scripts/test installs it)")

CAT, CAT_REFERENCE = "the cat sat on the mat", "the cat sat on a mat"


def test_fuzzy_match_is_the_normalised_indel_similarity() -> None:
    # kitten / sitting: longest common subsequence "ittn" (4 of 6 + 7 characters) → 2·4 / 13
    assert similarity.fuzzy_match("kitten", "sitting") == pytest.approx(8 / 13)
    assert similarity.fuzzy_match("我爱北京", "我爱上海") == pytest.approx(4 / 8)  # 我爱 in common
    assert similarity.fuzzy_match("same", "same") == 1.0


def test_bleu_is_sacrebleus_sentence_bleu() -> None:
    # n-gram precisions 5/6, 3/5, 2/4, 1/3, no brevity penalty: their geometric mean
    assert similarity.bleu(CAT, CAT_REFERENCE) == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    # Chinese by its characters: 4/7, 3/6, 2/5, 1/4 of 我爱北京天安门 are in 我爱北京
    assert similarity.bleu("我爱北京天安门", "我爱北京") == pytest.approx((4 / 7 * 3 / 6 * 2 / 5 * 1 / 4) ** 0.25)


def test_gleu_is_the_smaller_of_n_gram_precision_and_recall() -> None:
    # 1..4-grams: 18 in each sentence, 5 + 3 + 2 + 1 = 11 shared
    assert similarity.gleu(CAT, CAT_REFERENCE) == pytest.approx(11 / 18)
    # 22 n-grams in the answer, 10 in the reference, all 10 shared: min(10/22, 10/10)
    assert similarity.gleu("我爱北京天安门", "我爱北京") == pytest.approx(10 / 22)


class NoSynonyms:
    """A WordNet with no synonyms: the test's words have none that matter, and no corpus is installed here."""

    def synsets(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return []


def test_meteor_is_nltks_with_its_fragmentation_penalty() -> None:
    # 5 of 6 words match each way (Fmean 5/6); two chunks (the cat sat on | mat) over 5 matches: penalty ½·(2/5)³
    value = similarity.meteor("the cat sat on my mat", CAT_REFERENCE, wordnet=NoSynonyms())
    assert value == pytest.approx(5 / 6 * (1 - 0.5 * (2 / 5) ** 3))


def test_meteor_without_wordnet_is_refused_not_computed_without_synonyms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(similarity, "_wordnet_installed", lambda: False)
    definition = {"type": "text_similarity", "name": "m", "input": "a", "reference": "b", "evaluation_metric": "meteor"}
    with pytest.raises(GraderError, match=r"grader\.evaluation_metric: meteor .*WordNet.*nltk\.downloader wordnet"):
        parse_grader(definition)
    monkeypatch.setattr(similarity, "_wordnet_installed", lambda: True)
    assert parse_grader(definition).evaluation_metric == "meteor"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("rouge_1", 5 / 6),  # 5 of 6 words shared each way
        ("rouge_2", 3 / 5),  # the cat, cat sat, sat on
        ("rouge_3", 2 / 4),
        ("rouge_4", 1 / 3),
        ("rouge_5", 0.0),
        ("rouge_l", 5 / 6),  # the cat sat on … mat
    ],
)
def test_rouge_f_measures(metric: str, expected: float) -> None:
    assert similarity.similarity(metric, CAT, CAT_REFERENCE) == pytest.approx(expected)  # type: ignore[arg-type]


def test_rouge_scores_chinese_by_characters() -> None:
    # 4 shared characters: precision 4/7, recall 4/4 → F = 8/11 (rouge-score's own tokenizer would score it 0)
    assert similarity.similarity("rouge_1", "我爱北京天安门", "我爱北京") == pytest.approx(8 / 11)


def test_cosine_needs_an_embedder_and_computes_the_cosine() -> None:
    definition = {"type": "text_similarity", "name": "c", "input": "{{sample.output_text}}", "reference": "x"}
    with pytest.raises(GraderError, match="no embedding model is configured"):
        parse_grader({**definition, "evaluation_metric": "cosine"})

    def embed(texts: Any) -> list[list[float]]:
        return [[1.0, 0.0] if text == "x" else [1.0, 1.0] for text in texts]

    grader = parse_grader({**definition, "evaluation_metric": "cosine"}, embedder=embed)
    assert grade(grader, {}, Sample("y"), embedder=embed).reward == pytest.approx(2**-0.5)
    unrun = grade(grader, {}, Sample("y"))  # defined with an embedder, graded without one: an error, reward 0
    assert unrun.reward == 0.0 and "embedding" in unrun.errors[0]


def test_text_similarity_grader_fills_its_templates() -> None:
    grader = parse_grader(
        {
            "type": "text_similarity",
            "name": "sim",
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "evaluation_metric": "fuzzy_match",
            "pass_threshold": 0.5,
        }
    )
    assert grade(grader, {"answer": "sitting"}, Sample("kitten")).reward == pytest.approx(8 / 13)


def test_texts_over_the_cap_are_that_samples_error_never_cut_short() -> None:
    over = "word " * (similarity.MAX_TEXT_LENGTH // 5) + "x"
    at_cap = over[: similarity.MAX_TEXT_LENGTH]
    assert similarity.similarity("fuzzy_match", at_cap, at_cap) == 1.0
    for text, reference, what in ((over, "word", "the input"), ("word", over, "the reference")):
        with pytest.raises(GraderError, match=f"rouge_l: {what} is {len(over)} characters, over the 10000"):
            similarity.similarity("rouge_l", text, reference)
    grader = parse_grader(
        {
            "type": "text_similarity",
            "name": "s",
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "evaluation_metric": "fuzzy_match",
        }
    )
    result = grade(grader, {"answer": "word"}, Sample(over))
    assert result.reward == 0.0 and result.kinds == {"other_error"} and "over the 10000" in result.errors[0]
