"""service/errors.translated: the one place an `openai` SDK error becomes ftcli's (issue 24, point 5)."""

from __future__ import annotations

import httpx2
import openai
import pytest

from ftcli.service.errors import BackendError, NotFound, UsageError, translated


def test_an_sdk_error_leaves_as_ftclis_without_the_sdks_traceback() -> None:
    request = httpx2.Request("GET", "https://api.example.test/v1/files/file-1")
    response = httpx2.Response(404, request=request, json={"error": {"message": "No such file: file-1"}})
    with pytest.raises(NotFound, match=r"not found \(404\): No such file: file-1") as caught, translated():
        raise openai.NotFoundError("404", response=response, body={"error": {"message": "No such file: file-1"}})
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(BackendError, match="cannot reach the backend"), translated():
        raise openai.APIConnectionError(request=request)


def test_anything_else_passes_unchanged() -> None:
    refusal = UsageError("bad option")
    with pytest.raises(UsageError) as caught, translated():
        raise refusal
    assert caught.value is refusal
    with pytest.raises(KeyError), translated():
        raise KeyError("x")
