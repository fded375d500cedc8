"""Files and Uploads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ftcli.server.protocol.common import Request, Response

Purpose = Literal["fine-tune", "fine-tune-results", "batch", "assistants", "user_data", "evals", "vision"]


class FileObject(Response):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str


class DeletedFile(Response):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class UploadObject(Response):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: str
    file: FileObject | None = None


class UploadPart(Response):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str


class CreateUpload(Request):
    bytes: int = Field(ge=0, strict=True)
    filename: str
    mime_type: str
    purpose: Purpose


class CompleteUpload(Request):
    part_ids: list[str] = Field(default_factory=list)
    md5: str | None = None
