"""ftcli's eval runs kept by `ftcli serve` for its web page (not part of OpenAI's API): `ftcli eval` posts its report
and its per-case rows; the page lists the runs and shows one."""

from __future__ import annotations

from typing import Any, Literal

from ftcli.server.protocol.common import Request, Response


class CreateEval(Request):
    report: dict[str, Any]  # `ftcli eval --json`'s document
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
