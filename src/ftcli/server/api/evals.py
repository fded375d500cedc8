"""ftcli's own endpoints for eval runs (outside OpenAI's /v1): `ftcli eval` posts its report here when it talks to
`ftcli serve`, and the web page lists the runs, opens one and deletes one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from ftcli.server.api.bodies import documented_body, read_request
from ftcli.server.api.errors import ApiError, not_found
from ftcli.server.evals import delete_eval, list_evals, load_eval, save_eval
from ftcli.server.protocol.common import Page
from ftcli.server.protocol.evals import CreateEval, DeletedEval, EvalObject, EvalSummary

router = APIRouter(prefix="/ftcli/evals")


@router.post("", openapi_extra=documented_body(CreateEval))
async def create_eval(request: Request) -> EvalSummary:
    body = await read_request(request, CreateEval)
    record = save_eval(request.app.state.store.data_dir, body.report, body.cases)
    return EvalSummary.model_validate({k: v for k, v in record.items() if k != "rows"})


@router.get("")
def evals(request: Request) -> Page[EvalSummary]:
    """The runs, newest first; a file that no longer fits (damaged on disk) is left out, never a failed page."""
    found = [summary for r in list_evals(request.app.state.store.data_dir) if (summary := _fitting(r)) is not None]
    return Page[EvalSummary](data=found)


def _fitting(record: dict[str, Any]) -> EvalSummary | None:
    try:
        return EvalSummary.model_validate(record)
    except ValidationError:
        return None


@router.get("/{eval_id}")
def one_eval(request: Request, eval_id: str) -> EvalObject:
    record = load_eval(request.app.state.store.data_dir, eval_id)
    if record is None:
        raise not_found("eval", eval_id)
    try:
        return EvalObject.model_validate(record)
    except ValidationError:
        raise ApiError(
            500,
            f"the eval run {eval_id} is damaged on disk: DELETE /ftcli/evals/{eval_id} removes it",
            kind="server_error",
            code="eval_damaged",
        ) from None


@router.delete("/{eval_id}")
def remove_eval(request: Request, eval_id: str) -> DeletedEval:
    if not delete_eval(request.app.state.store.data_dir, eval_id):
        raise not_found("eval", eval_id)
    return DeletedEval(id=eval_id)
