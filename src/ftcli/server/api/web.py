"""The playground page at `/` (one self-contained HTML file: no asset from the internet) and ftcli's own endpoint
the page's Files view uses: a file's `check` report (`/ftcli/files/{id}/check`, outside OpenAI's /v1 paths)."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from ftcli.server.api.errors import not_found
from ftcli.server.store import Store

router = APIRouter()
PAGE_PATH = "/"


@cache
def _page() -> str:
    return (resources.files("ftcli.server") / "web" / "index.html").read_text(encoding="utf-8")


@cache
def _policy() -> str:
    """The page may run only its own inline script and style (by hash), talk only to this server, and be framed by
    nobody: an injected script or a clickjacking frame gets nothing."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", _page(), flags=re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)

    return (
        f"default-src 'self'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"
    )


@router.get(PAGE_PATH, response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": _policy(),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(_page(), headers=headers)


@router.get("/ftcli/files/{file_id}/check")
async def file_check(request: Request, file_id: str) -> dict[str, Any]:
    store: Store = request.app.state.store
    row = store.file(file_id)
    if row is None:
        raise not_found("file", file_id)
    return await run_in_threadpool(_report, store, row["sha256"])


@lru_cache(maxsize=128)  # by content hash (a file's bytes never change), bounded so memory stays flat
def _report(store: Store, sha256: str) -> dict[str, Any]:
    from ftcli.data.check.engine import CheckOptions, check_file

    return check_file(store.blob_path(sha256), options=CheckOptions(model=None, workers=1)).to_dict()
