"""Files and Uploads: bytes go to the content-addressed store; rows to SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile

from ftcli.server.api import paging
from ftcli.server.api.bodies import documented_body, read_request
from ftcli.server.api.errors import ApiError, not_found
from ftcli.server.limits import MULTIPART_OVERHEAD, declared_length, limited_receive
from ftcli.server.protocol.common import CursorPage
from ftcli.server.protocol.files import (
    CompleteUpload,
    CreateUpload,
    DeletedFile,
    FileObject,
    Purpose,
    UploadObject,
    UploadPart,
)
from ftcli.server.store import ChecksumMismatch, Store, new_id, now

# A job in these states still reads its files: they can't be deleted under it.
ACTIVE_OR_PAUSED = ("validating_files", "queued", "running", "paused")

router = APIRouter()
PURPOSES = set(get_args(Purpose))


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _files_of(job: dict[str, Any]) -> tuple[str | None, ...]:
    return job.get("training_file"), job.get("validation_file")


def safe_name(name: str | None) -> str:
    """A display name only (bytes live under their hash), still kept plain: no directories, no NULs."""
    cleaned = (name or "").replace("\x00", "").replace("\\", "/").split("/")[-1].strip()
    return cleaned if cleaned not in ("", ".", "..") else "upload.jsonl"


@router.post("/files")
def create_file(request: Request, file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]) -> FileObject:
    if purpose not in PURPOSES:
        raise ApiError(400, f"Invalid purpose {purpose!r}", param="purpose")
    store = _store(request)
    try:
        row = store.add_file(
            file.file, limit=request.app.state.max_upload_bytes, filename=safe_name(file.filename), purpose=purpose
        )
    except ValueError as exc:
        raise ApiError(413, str(exc), param="file") from None
    return FileObject.from_row(row)


# OpenAI's bounds for this list (its spec: 1 to 10,000, by default 10,000); a cursor is one of this server's ids
FILES_LIMIT = 10_000
FILE_ID = r"^file-[0-9a-f]{24}$"


@router.get("/files")
def list_files(
    request: Request,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=FILES_LIMIT)] = FILES_LIMIT,
    order: Literal["asc", "desc"] = "desc",
    after: Annotated[str | None, Query(pattern=FILE_ID)] = None,
) -> CursorPage[FileObject]:
    rows = _store(request).files(ascending=order == "asc")
    files = [FileObject.from_row(r) for r in rows if purpose is None or r["purpose"] == purpose]
    files = paging.after(files, after, lambda f: f.id)
    page = files[:limit]
    first, last = (page[0].id, page[-1].id) if page else ("", "")
    return CursorPage(data=page, first_id=first, last_id=last, has_more=len(files) > len(page))


@router.get("/files/{file_id}")
def retrieve_file(request: Request, file_id: str) -> FileObject:
    row = _store(request).file(file_id)
    if row is None:
        raise not_found("file", file_id)
    return FileObject.from_row(row)


@router.delete("/files/{file_id}")
def delete_file(request: Request, file_id: str) -> DeletedFile:
    store = _store(request)
    users = [j["id"] for j in store.jobs() if j["status"] in ACTIVE_OR_PAUSED and file_id in _files_of(j)]
    if users:
        raise ApiError(
            409, f"file {file_id} is in use by fine-tuning job {users[0]}: cancel the job first", param="file_id"
        )
    if not store.delete_file(file_id):  # its bytes go too, unless another file holds the same bytes
        raise not_found("file", file_id)
    return DeletedFile(id=file_id)


@router.get("/files/{file_id}/content")
def file_content(request: Request, file_id: str) -> FileResponse:
    store = _store(request)
    row = store.file(file_id)
    if row is None:
        raise not_found("file", file_id)
    return FileResponse(store.blob_path(row["sha256"]), media_type="application/octet-stream")  # streamed


@router.post("/uploads", openapi_extra=documented_body(CreateUpload))
async def create_upload(request: Request) -> UploadObject:
    body = await read_request(request, CreateUpload)
    if body.bytes > request.app.state.max_upload_bytes:
        raise ApiError(413, "upload is larger than the server's limit", param="bytes")
    row = _store(request).add_upload(
        filename=safe_name(body.filename),
        purpose=body.purpose,
        size=body.bytes,
        mime_type=body.mime_type,
        lifetime=3600,  # as on OpenAI: an hour to add parts and complete
    )
    return UploadObject.from_row(row)


def _pending(store: Store, upload_id: str) -> Any:
    row = store.upload(upload_id)
    if row is None:
        raise not_found("upload", upload_id)
    if row["status"] == "pending" and row["expires_at"] < now():
        store.set_upload_status(upload_id, "expired")
        store.drop_parts(upload_id)
        raise ApiError(400, f"Upload {upload_id} is expired", param="upload_id")
    if row["status"] != "pending":
        raise ApiError(400, f"Upload {upload_id} is {row['status']}", param="upload_id")
    return row


# The form OpenAI's parts route takes (`data`: the part's bytes), declared by hand: the route parses it itself.
PART_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {"data": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post("/uploads/{upload_id}/parts", openapi_extra=PART_FORM)
async def add_part(request: Request, upload_id: str) -> UploadPart:
    store = _store(request)
    room, limit, declared = await run_in_threadpool(_room, store, upload_id, request.app.state.max_upload_bytes)

    def too_large() -> ApiError:
        message = (
            f"the part is larger than the server's {limit:,}-byte limit"
            if limit < room
            else f"the parts go past the {declared:,} bytes upload {upload_id} declared"
        )
        return ApiError(413, message, param="data", code="request_too_large")

    # The form is read only as far as the part's room and the form's own boundaries: a larger part is refused
    # before its bytes are spooled anywhere, not after (the app-wide limit is --max-upload, far more).
    readable = min(room, limit) + MULTIPART_OVERHEAD
    length = declared_length(request.scope)
    if length is not None and length > readable:
        raise too_large()
    limited = Request(request.scope, limited_receive(request.receive, readable, too_large))
    async with limited.form(max_files=1, max_fields=8) as form:
        data = form.get("data")
        if not isinstance(data, StarletteUploadFile):
            raise ApiError(400, "data: the part's bytes, sent as a file field", param="data")
        part_id = new_id("part")
        try:
            size = await run_in_threadpool(store.put_part, upload_id, part_id, data.file, limit=min(room, limit))
        except ValueError:
            raise too_large() from None
    await run_in_threadpool(store.add_part_row, upload_id, part_id, size)
    return UploadPart(id=part_id, created_at=now(), upload_id=upload_id)


def _room(store: Store, upload_id: str, max_upload: int) -> tuple[int, int, int]:
    """(bytes the next part may hold, the server's limit, the bytes the upload declared). A part is never larger
    than the whole upload, and all parts together hold at most twice what it declared: room to send each part once
    more when a response was lost, none to fill the disk through a 1-byte upload."""
    upload = _pending(store, upload_id)
    declared = int(upload["bytes"])
    return max(0, min(declared, 2 * declared - store.parts_bytes(upload_id))), int(max_upload), declared


@router.post("/uploads/{upload_id}/complete", openapi_extra=documented_body(CompleteUpload))
async def complete_upload(request: Request, upload_id: str) -> UploadObject:
    body = await read_request(request, CompleteUpload)
    return await run_in_threadpool(_complete, _store(request), upload_id, body, request.app.state.max_upload_bytes)


def _complete(store: Store, upload_id: str, body: CompleteUpload, limit: int) -> UploadObject:
    """Joins the parts into the file: blocking work (hashing, disk), run in a worker thread."""
    row = _pending(store, upload_id)
    parts = []
    for part_id in body.part_ids:
        part = store.part(upload_id, part_id)
        if part is None:
            raise ApiError(400, f"Unknown part {part_id}", param="part_ids")
        if not store.part_path(upload_id, part_id).is_file():  # e.g. a part an older ftcli kept elsewhere
            raise ApiError(400, f"The bytes of part {part_id} are gone; start a new upload", param="part_ids")
        parts.append(part)
    total = sum(p["bytes"] for p in parts)
    if total != row["bytes"]:
        raise ApiError(400, f"The parts hold {total} bytes; the upload declared {row['bytes']}", param="part_ids")
    joined = _Concatenation([store.part_path(upload_id, p["id"]) for p in parts])
    try:  # streamed: parts are never in memory; sha256 and md5 are hashed side by side
        added = store.add_file(
            joined,
            limit=limit,
            filename=row["filename"],
            purpose=row["purpose"],
            md5=body.md5 or None,
        )
    except ChecksumMismatch as exc:
        raise ApiError(400, str(exc), param="md5") from None
    file = FileObject.from_row(added)
    completed = store.set_upload_status(upload_id, "completed", file_id=file.id)
    store.drop_parts(upload_id)  # the bytes now live once, as the file
    return UploadObject.from_row(completed, file=file)


@router.post("/uploads/{upload_id}/cancel")
def cancel_upload(request: Request, upload_id: str) -> UploadObject:
    store = _store(request)
    _pending(store, upload_id)
    cancelled = store.set_upload_status(upload_id, "cancelled")
    store.drop_parts(upload_id)
    return UploadObject.from_row(cancelled)


class _Concatenation:
    """The parts' bytes, in order, as one readable stream (fed to the store block by block)."""

    def __init__(self, paths: list[Path]) -> None:
        self._blocks = self._read(paths)

    @staticmethod
    def _read(paths: list[Path]) -> Iterator[bytes]:
        for path in paths:
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    yield block

    def read(self, _size: int = -1) -> bytes:
        return next(self._blocks, b"")
