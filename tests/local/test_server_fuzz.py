"""Schemathesis fuzzes `ftcli serve` against its own OpenAPI document (issue 29): valid and invalid requests to every
route, in-process (ASGI): the edge values of every field (its coverage phase), the documented examples and bounded
random ones, with a fixed seed. Whatever it sends, the answer is never a 5xx, and every refusal comes in OpenAI's
error envelope (so the SDK raises the right class with the server's message).

Nothing long runs: the job runner is not started (no lifespan), so no job trains, and no model the fuzzer can name
exists, so a chat is refused before anything loads (its answer limit is small in case one ever did)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")
schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (the dev extra)")

from ftcli.server.api.chat import ChatLimits  # noqa: E402
from ftcli.server.app import create_app  # noqa: E402

pytestmark = [pytest.mark.local, pytest.mark.slow]
LOCAL = "http://127.0.0.1:8765"  # a Host the server's guard accepts
EXAMPLES = 25  # random examples per route and mode, on top of the edge values

# Built when the module is collected (Schemathesis makes one test per route from it): its own data folder, removed
# at exit.
_data = Path(tempfile.mkdtemp(prefix="ftcli-fuzz-"))
atexit.register(shutil.rmtree, _data, ignore_errors=True)
_app = create_app(_data / "data", chat_limits=ChatLimits(max_tokens=4, max_prompt_tokens=64))
schema = schemathesis.openapi.from_asgi("/openapi.json", _app, headers={"host": "127.0.0.1:8765"})
schema.config.seed = 29
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    deterministic=True,  # the same examples on every run
    database="none",
)


def _in_the_envelope(response: Any) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str)


@schema.parametrize()
def test_no_request_gets_a_server_error(case: Any) -> None:
    response = case.call(base_url=LOCAL)
    seen = f"{case.method} {case.formatted_path} {case.query or ''} {str(case.body)[:300]} -> {response.status_code}"
    assert response.status_code < 500, f"{seen}: {response.text[:300]}"
    if response.status_code >= 400:
        assert _in_the_envelope(response), f"{seen}: {response.text[:300]}"


def test_the_document_describes_the_bodies_routes_read() -> None:
    operations = {op.label: op for op in (result.ok() for result in schema.get_all_operations())}
    assert len(operations) >= 20, sorted(operations)
    for route in (
        "POST /v1/chat/completions",
        "POST /ftcli/evals",
        "POST /v1/uploads",
        "POST /v1/uploads/{upload_id}/parts",
    ):
        assert operations[route].body, route  # what these routes read is fuzzed too
