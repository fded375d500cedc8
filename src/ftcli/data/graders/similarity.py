"""text_similarity's metrics, each computed by the library that defines it, all offline.

OpenAI documents fuzzy_match as "fuzzy string match, using rapidfuzz", gleu as Google's BLEU, rouge-* "as defined
by the rouge python library", and bleu and meteor by name. Here:
- fuzzy_match: rapidfuzz's `fuzz.ratio` (normalised Indel similarity of the two strings), over 100;
- bleu: sacrebleu's sentence BLEU (its defaults: exponential smoothing, 13a tokens), over 100;
- gleu: nltk's sentence GLEU on the same tokens;
- meteor: nltk's METEOR (exact, stem and WordNet synonym matches) on the same tokens. It needs the WordNet corpus
  (`python -m nltk.downloader wordnet`); where it is absent, meteor is refused rather than computed without its
  synonym stage, which would be a different number under METEOR's name;
- rouge_1..rouge_5, rouge_l: Google's rouge-score, F-measure;
- cosine: the cosine of the two texts' embeddings, from an embedding function the caller configures.
Text with Chinese characters is tokenized as sacrebleu's `zh` tokenizer does (one token per character) for
bleu, gleu and meteor, and as ftcli's eval graders do for ROUGE (rouge-score's own tokenizer drops every non-ASCII
letter, which would score Chinese as empty).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from ftcli.data.eval.graders import tokens as rouge_tokens
from ftcli.data.graders.spec import Embedder, GraderError, Metric

INSTALL_HINT = "pip install 'ftcli[eval]'"
# characters of an input or a reference: rouge_l's table, rapidfuzz and METEOR take time in the product of lengths
MAX_TEXT_LENGTH = 10_000
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LIBRARY = {
    "fuzzy_match": "rapidfuzz",
    "bleu": "sacrebleu",
    "gleu": "nltk",
    "meteor": "nltk",
    **{f"rouge_{n}": "rouge_score" for n in ("1", "2", "3", "4", "5", "l")},
}
_PACKAGE = {"rouge_score": "rouge-score"}


def unavailable(metric: Metric) -> str | None:
    """Why `metric` can't run on this machine, or None when it can (cosine: see `similarity`'s embedder)."""
    library = _LIBRARY.get(metric)
    if library is not None and not _importable(library):
        return f"{metric} needs the {_PACKAGE.get(library, library)} package ({INSTALL_HINT})"
    if metric == "meteor" and not _wordnet_installed():
        return (
            "meteor matches synonyms through WordNet, and nltk's WordNet corpus is not installed here "
            "(install it with `python -m nltk.downloader wordnet`; ftcli downloads nothing itself)"
        )
    return None


def similarity(metric: Metric, text: str, reference: str, *, embedder: Embedder | None = None) -> float:
    """`text` scored against `reference` by `metric` (0..1; cosine -1..1). A text or reference over
    MAX_TEXT_LENGTH characters is a GraderError, never cut short: the metrics are quadratic in their lengths."""
    for what, value in (("the input", text), ("the reference", reference)):
        if len(value) > MAX_TEXT_LENGTH:
            raise GraderError(
                f"{metric}: {what} is {len(value)} characters, over the {MAX_TEXT_LENGTH} this grader compares"
            )
    reason = unavailable(metric)
    if reason is not None:
        raise GraderError(reason)
    if metric == "cosine":
        if embedder is None:
            raise GraderError("cosine needs an embedding model, and none is configured here")
        return cosine(embedder, text, reference)
    return _METRICS[metric](text, reference)


def fuzzy_match(text: str, reference: str) -> float:
    from rapidfuzz import fuzz

    return float(fuzz.ratio(text, reference)) / 100


def bleu(text: str, reference: str) -> float:
    import sacrebleu

    tokenizer = "zh" if _HAN.search(text + reference) else "13a"
    return float(sacrebleu.sentence_bleu(text, [reference], tokenize=tokenizer).score) / 100


def gleu(text: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    hypothesis, wanted = bleu_tokens(text, reference)
    if not hypothesis or not wanted:
        return 0.0
    return float(sentence_gleu([wanted], hypothesis))


def meteor(text: str, reference: str, *, wordnet: Any = None) -> float:
    """nltk's METEOR; `wordnet`: the corpus reader (nltk's installed WordNet when None)."""
    from nltk.translate.meteor_score import meteor_score

    hypothesis, wanted = bleu_tokens(text, reference)
    if not hypothesis or not wanted:
        return 0.0
    if wordnet is None:
        from nltk.corpus import wordnet as installed

        wordnet = installed
    return float(meteor_score([wanted], hypothesis, wordnet=wordnet))


def rouge(n: str) -> Callable[[str, str], float]:
    def score(text: str, reference: str) -> float:
        kind = "rougeL" if n == "l" else f"rouge{n}"
        return float(_rouge_scorer(kind).score(reference, text)[kind].fmeasure)

    return score


def cosine(embedder: Embedder, text: str, reference: str) -> float:
    vectors = list(embedder([text, reference]))
    if len(vectors) != 2:  # noqa: PLR2004 (one vector per text)
        raise GraderError(f"the embedding model gave {len(vectors)} vectors for 2 texts")
    first, second = (list(map(float, v)) for v in vectors)
    if len(first) != len(second) or not first:
        raise GraderError("the embedding model gave vectors of different or no length")
    norms = math.sqrt(sum(x * x for x in first)) * math.sqrt(sum(y * y for y in second))
    if norms == 0:
        return 0.0
    return sum(x * y for x, y in zip(first, second, strict=True)) / norms


def bleu_tokens(text: str, reference: str) -> tuple[list[str], list[str]]:
    """Both texts in sacrebleu's tokens (`zh` when either holds Chinese characters, else `13a`)."""
    tokenize = _tokenizer("zh" if _HAN.search(text + reference) else "13a")
    return tokenize(text).split(), tokenize(reference).split()


@cache
def _tokenizer(name: str) -> Callable[[str], str]:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

    make: Callable[[], Callable[[str], str]] = TokenizerZh if name == "zh" else Tokenizer13a
    return make()


class _RougeTokens:
    def tokenize(self, text: str) -> list[str]:
        return rouge_tokens(text)


@cache
def _rouge_scorer(kind: str) -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer([kind], tokenizer=_RougeTokens())


@cache
def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _wordnet_installed() -> bool:
    """Whether nltk finds its WordNet corpus on this machine (nltk never downloads on its own)."""
    if not _importable("nltk"):
        return False
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        try:
            nltk.data.find("corpora/wordnet.zip")
        except LookupError:
            return False
    return True


_METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": rouge(n) for n in ("1", "2", "3", "4", "5", "l")},
}
