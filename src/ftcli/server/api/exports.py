"""ftcli's own endpoints (outside OpenAI's /v1) for models that leave ftcli: build an export of a fine-tuned model,
then fetch its files one by one (`ftcli models export`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ftcli.server.api.bodies import documented_body, read_request
from ftcli.server.api.errors import ApiError, not_found
from ftcli.server.gguf_export import GgufFailed, GgufRefused, GgufUnavailable
from ftcli.server.model_export import GGUF_FORMATS, UnknownModel, export_file, export_model
from ftcli.server.protocol.exports import CreateExport, ExportBase, ExportedFile, ExportObject
from ftcli.server.store import Store

router = APIRouter(prefix="/ftcli/exports")


@router.post("", openapi_extra=documented_body(CreateExport))
async def create_export(request: Request) -> ExportObject:
    body = await read_request(request, CreateExport)
    store: Store = request.app.state.store
    if body.quant is not None and body.format not in GGUF_FORMATS:
        raise ApiError(400, f"quant is for the GGUF formats, not {body.format}", param="quant", code="invalid_quant")
    try:
        # loading the base, merging, converting: blocking work, in a worker thread
        exported = await run_in_threadpool(export_model, store, body.model, body.format, body.quant)
    except UnknownModel:
        raise not_found("model", body.model) from None
    except GgufUnavailable as exc:
        raise ApiError(400, str(exc), param="format", code="gguf_unavailable") from None
    except GgufRefused as exc:
        raise ApiError(400, str(exc), param="model", code="gguf_unsupported") from None
    except GgufFailed as exc:
        raise ApiError(500, f"the export failed: {exc}", kind="server_error", code="export_failed") from None
    except (OSError, ValueError) as exc:
        raise ApiError(500, f"the export failed: {exc}", kind="server_error", code="export_failed") from None
    files = [ExportedFile.model_validate(f) for f in exported.files]
    base = ExportBase.model_validate(exported.base) if exported.base else None
    return ExportObject(
        id=exported.id, model=body.model, format=body.format, quant=exported.quant, files=files, base=base
    )


@router.get("/{export_id}/{name}")
def export_content(request: Request, export_id: str, name: str) -> FileResponse:
    path = export_file(request.app.state.store, export_id, name)
    if path is None:
        raise not_found("export file", f"{export_id}/{name}")
    return FileResponse(path, media_type="application/octet-stream")
