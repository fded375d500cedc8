"""ftcli's own endpoints for eval runs (outside OpenAI's /v1): `ftcli eval` posts its report here when it talks to
`ftcli serve`, and the web page lists the runs and opens one."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ftcli.server.api.bodies import read_request
from ftcli.server.api.errors import not_found
from ftcli.server.evals import list_evals, load_eval, save_eval
from ftcli.server.protocol.common import Page
from ftcli.server.protocol.evals import CreateEval, EvalObject, EvalSummary

router = APIRouter(prefix="/ftcli/evals")


@router.post("")
async def create_eval(request: Request) -> EvalSummary:
    body = await read_request(request, CreateEval)
    record = save_eval(request.app.state.store.data_dir, body.report, body.cases)
    return EvalSummary.model_validate({k: v for k, v in record.items() if k != "rows"})


@router.get("")
def evals(request: Request) -> Page[EvalSummary]:
    found = [EvalSummary.model_validate(r) for r in list_evals(request.app.state.store.data_dir)]
    return Page[EvalSummary](data=found)


@router.get("/{eval_id}")
def one_eval(request: Request, eval_id: str) -> EvalObject:
    record = load_eval(request.app.state.store.data_dir, eval_id)
    if record is None:
        raise not_found("eval", eval_id)
    return EvalObject.model_validate(record)
