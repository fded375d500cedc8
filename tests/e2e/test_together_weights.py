"""`export --weights` from Together (issue 15), end to end against an in-memory Together (httpx2.MockTransport): the
download is cut halfway, the next export continues it with a Range request, the archive is checked by sha256 and
unpacked, and `ftcli serve --model-dir` serves the adapter inside, which answers a chat request. The adapter is a
real PEFT adapter of `ftcli/tiny`, made here and packed as Together packs models (a .tar.zst of the folder)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx2
import pytest
from typer.testing import CliRunner

from ftcli.cli.app import app
from ftcli.service.backends.together import TogetherBackend
from ftcli.service.client import make_client
from ftcli.service.errors import BackendError
from ftcli.service.job_export import export_jobs
from ftcli.service.settings import Settings
from tests.e2e.conftest import start_server, stop_server
from tests.local.zorbia import chat_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]
JOB = {"id": "ft-legal", "status": "completed", "model": "ftcli/tiny", "model_output_name": "acme/tiny-legal",
       "training_file": "file-1", "created_at": "2026-12-01T10:00:00Z"}  # fmt: skip


def packed_adapter(tmp_path: Path) -> bytes:
    """A LoRA adapter of ftcli/tiny as `legal-adapter/…` in a zstd-compressed tar, as Together sends models."""
    import zstandard
    from peft import LoraConfig, get_peft_model

    from ftcli.server.bases import resolve_base
    from ftcli.server.training import load_base

    model, _ = load_base(resolve_base("ftcli/tiny", tmp_path / "data"))
    adapter = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    folder = tmp_path / "made" / "legal-adapter"
    adapter.save_pretrained(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "ftcli/tiny"}))
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        archive.add(folder, arcname="legal-adapter")
    return zstandard.ZstdCompressor().compress(tar.getvalue())


class CutStream(httpx2.SyncByteStream):
    """The first `keep` bytes of `data`, then a dropped connection."""

    def __init__(self, data: bytes, keep: int) -> None:
        self.data, self.keep = data, keep

    def __iter__(self) -> Any:
        yield self.data[: self.keep]
        raise httpx2.ReadError("connection reset by peer")


def test_a_cut_weights_download_resumes_and_the_adapter_is_served(tmp_path: Path) -> None:
    archive = packed_adapter(tmp_path)
    ranges: list[str | None] = []

    def together(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.removeprefix("/v1")
        if path == "/finetune/download":
            assert request.url.params["ft_id"] == "ft-legal" and request.url.params["checkpoint"] == "adapter"
            ranges.append(request.headers.get("range"))
            named = {"content-disposition": 'attachment; filename="tiny-legal-adapter.tar.zst"'}
            if len(ranges) == 1:  # the first try: cut halfway
                return httpx2.Response(200, headers=named, stream=CutStream(archive, len(archive) // 2))
            start = int(request.headers["range"].removeprefix("bytes=").removesuffix("-"))
            return httpx2.Response(206, headers=named, content=archive[start:])
        answers: dict[str, Any] = {
            "/fine-tunes": {"data": [JOB]},
            "/fine-tunes/ft-legal": JOB,
            "/fine-tunes/ft-legal/events": {"data": []},
            "/fine-tunes/ft-legal/metrics": {"metrics": []},
            "/fine-tunes/ft-legal/checkpoints": {"data": []},
            "/files/file-1": {
                "id": "file-1",
                "object": "file",
                "created_at": 0,
                "filename": "legal.jsonl",
                "bytes": 10,
                "purpose": "fine-tune",
                "FileType": "jsonl",
                "Processed": True,
            },  # fmt: skip
        }
        if path == "/files/file-1/content":
            return httpx2.Response(200, content=chat_jsonl().encode())
        return httpx2.Response(200, json=answers[path]) if path in answers else httpx2.Response(404, json={})

    http = httpx2.Client(transport=httpx2.MockTransport(together))
    settings = Settings(kind="together", base_url="https://api.together.test/v1", api_key="tgp_v1_weightsTestKey")
    backend = TogetherBackend(make_client(settings, max_retries=0, http_client=http))
    out = tmp_path / "export"

    def export() -> list[Any]:
        return list(export_jobs(backend, out, described=settings.describe(), weights="adapter"))

    with pytest.raises(BackendError, match="cut after"):
        export()
    steps = export()
    assert ranges == [None, f"bytes={len(archive) // 2}-"]  # the second try asked only for the rest
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["jobs"]["ft-legal"]["artifacts"]["ft-legal/weights/tiny-legal-adapter.tar.zst"]
    assert entry["sha256"] == hashlib.sha256(archive).hexdigest() and entry["bytes"] == len(archive)
    assert any(step.path.endswith(".tar.zst") and not step.verified for step in steps)
    adapter = out / manifest["jobs"]["ft-legal"]["weights"]["adapter"]["folder"]
    assert (adapter / "adapter_config.json").is_file() and not (out / "ft-legal" / "weights" / "adapter.part").exists()
    assert any(step.path.endswith(".tar.zst") and step.verified for step in export())  # a third run: verified

    server = start_server(tmp_path / "serve", args=("--model-dir", str(adapter)))
    try:
        with make_client(Settings(kind="compatible", base_url=server.url)) as sdk:
            answer = sdk.chat.completions.create(
                model="adapter", messages=[{"role": "user", "content": "What is the capital of Zorbia?"}], max_tokens=8
            )
        assert answer.choices[0].message.content is not None and answer.model == "adapter"
        # ... and the Together job's export re-trains here: its data and hyperparameters, linked to it
        env = {"FTCLI_CONFIG_DIR": str(tmp_path / "config"), "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
        args = ["--base-url", server.url, "--json", "train", "--from-export", str(out / "ft-legal")]
        result = CliRunner().invoke(app, [*args, "--model", "ftcli/tiny", "--yes"], env=env)
        assert result.exit_code == 0, result.output
        job = json.loads(result.stdout)
        assert job["metadata"]["ftcli_retrain_of"] == "ft-legal" and job["model"] == "ftcli/tiny"
    finally:
        stop_server(server)
