"""ftcli's export of a fine-tuned model (not part of OpenAI's API)."""

from __future__ import annotations

from typing import Literal

from ftcli.server.protocol.common import ModelId, Request, Response

ExportFormat = Literal["adapter", "merged", "gguf", "gguf-lora"]
GgufQuant = Literal["f16", "q8_0", "q4_k_m"]


class CreateExport(Request):
    model: ModelId
    format: ExportFormat = "adapter"
    quant: GgufQuant | None = None  # the GGUF formats' quantization (f16 when unset); refused for the others


class ExportedFile(Response):
    name: str
    bytes: int
    sha256: str


class ExportBase(Response):
    name: str  # as the job named it (a Hugging Face id, ftcli/tiny, a folder)
    folder: str  # where the server loads it from, on the server's machine


class ExportObject(Response):
    id: str
    object: Literal["ftcli.model.export"] = "ftcli.model.export"
    model: str
    format: ExportFormat
    quant: GgufQuant | None = None
    files: list[ExportedFile]
    base: ExportBase | None = None
