"""ftcli's eval runs kept by `ftcli serve` for its web page (not part of OpenAI's API): `ftcli eval` posts its report
and its per-case rows; the page lists the runs and shows one. The report's fields the page reads are typed here, so
a malformed one is refused when it is posted instead of breaking the page later."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from ftcli.server.protocol.common import Request, Response


class GraderSummary(Request):
    model_config = ConfigDict(extra="allow")  # n, ci95, versus_first: kept as sent

    mean: float | None = Field(default=None, allow_inf_nan=False)


class ModelResult(Request):
    model_config = ConfigDict(extra="allow")  # asked: kept as sent

    model: str
    graders: dict[str, GraderSummary] = Field(default_factory=dict)


class EvalReport(Request):
    """`ftcli eval --json`'s document (its other fields are not kept)."""

    data: str = ""
    cases: int = Field(default=0, strict=True, ge=0)
    models: list[ModelResult] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list)


class CreateEval(Request):
    report: EvalReport
    cases: list[dict[str, Any]] = []  # one row per case and model (line, model, reference, answer, scores)


class EvalSummary(Response):
    id: str
    object: Literal["ftcli.eval"] = "ftcli.eval"
    created_at: int
    data: str
    cases: int
    models: list[dict[str, Any]]  # {"model", "graders": {name: {"mean", "ci95", …}}}
    failures: list[str]


class EvalObject(EvalSummary):
    rows: list[dict[str, Any]]


class DeletedEval(Response):
    id: str
    object: Literal["ftcli.eval"] = "ftcli.eval"
    deleted: bool = True
