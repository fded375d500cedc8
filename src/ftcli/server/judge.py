"""The judges of model graders (score_model, label_model) on `ftcli serve`: a chat completion by a model this server
serves (a base, a fine-tuned model, an adapter folder of `serve --model-dir`), generated in the process that asks,
as the chat endpoint would answer it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.data.graders.spec import Grader, LabelModelGrader, MultiGrader, ScoreModelGrader
from ftcli.server.bases import UnknownBase, require_base, resolve_base, served_adapter

if TYPE_CHECKING:
    from ftcli.data.graders.engine import JudgeReply
    from ftcli.server.inference import ModelCache
    from ftcli.server.store import Store

JUDGE_MAX_TOKENS = 256  # a judge's answer when its grader's sampling_params set no max_completions_tokens


def model_paths(store: Store, model: str) -> tuple[Path, Path | None]:
    """(base folder, adapter folder or None) of a model this server serves; UnknownBase otherwise."""
    row = store.model(model)
    if row is not None:
        return resolve_base(row["base"], store.data_dir), Path(row["adapter"])
    adapter = served_adapter(model)  # an adapter folder of `serve --model-dir`, on its base
    if adapter is not None:
        return resolve_base(adapter[0], store.data_dir), adapter[1]
    return resolve_base(model, store.data_dir), None


def judge_models(grader: Grader, where: str) -> list[tuple[str, str]]:
    """(the JSON path of its `model`, the model) of every model grader in `grader`, a multi grader's included."""
    if isinstance(grader, ScoreModelGrader | LabelModelGrader):
        return [(f"{where}.model", grader.model)]
    if isinstance(grader, MultiGrader):
        return [found for name, sub in grader.graders.items() for found in judge_models(sub, f"{where}.graders.{name}")]
    return []


def unreachable_judge(store: Store, grader: Grader, where: str) -> tuple[str, str] | None:
    """(path, message) of the first judge model this server doesn't serve, without building or loading anything
    (job creation asks); None when every judge is served."""
    for path, model in judge_models(grader, where):
        if store.model(model) is not None:
            continue
        try:
            if served_adapter(model) is None:
                require_base(model)
        except UnknownBase as exc:
            return path, f"{path}: the judge model {model!r} is not served by this server: {exc}"
    return None


class LocalJudge:
    """engine.Judge: the model's answer to the grader's rendered messages, with the grader's sampling_params
    (greedy where they set no temperature). One model in memory at a time (server/inference.py's cache)."""

    def __init__(self, store: Store, *, max_tokens: int | None = None) -> None:
        from ftcli.server.api.chat import ChatLimits
        from ftcli.server.inference import ModelCache

        self.store = store
        # the ceiling on a grader's max_completions_tokens: a chat request's (`serve --max-tokens`)
        self.max_tokens = max_tokens or ChatLimits().max_tokens
        self.models: ModelCache = ModelCache()

    def __call__(self, model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> JudgeReply:
        from ftcli.data.graders.engine import JudgeReply
        from ftcli.data.graders.spec import GraderError
        from ftcli.server.inference import Sampling, count_text_tokens, count_tokens, generate_stream

        try:
            base, adapter = model_paths(self.store, model)
        except UnknownBase as exc:
            raise GraderError(f"the judge model {model!r} is not served by this server: {exc}") from None
        loaded = self.models.get(base, adapter)
        # engine.Judge passes chat completions' name (max_completion_tokens); the grader's is max_completions_tokens
        most = sampling.get("max_completion_tokens") or sampling.get("max_completions_tokens")
        settings = Sampling(
            max_tokens=min(int(most or JUDGE_MAX_TOKENS), self.max_tokens),
            temperature=float(sampling.get("temperature") or 0.0),
            top_p=float(sampling["top_p"]) if sampling.get("top_p") is not None else 1.0,
            seed=sampling.get("seed"),
        )
        text = "".join(generate_stream(loaded, messages, settings))
        return JudgeReply(text, count_tokens(loaded, messages), count_text_tokens(loaded, text))
