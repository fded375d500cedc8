"""A client of `ftcli serve` on this machine waits for its answer however long the server works on it (issue 29.10:
the demo's first answer on a busy 2-core machine took over 60 s and the client gave up); connecting and sending keep
the usual timeout, and a remote backend keeps it for everything."""

from __future__ import annotations

import time

from ftcli.service.client import LOCAL_READ_TIMEOUT, make_client
from ftcli.service.settings import Settings
from tests.cli.loopback_server import empty_model_list, loopback_server


def _slow(path: str, authorization: str) -> tuple[int, object]:
    time.sleep(1.5)  # three times the client's timeout below: a server busy generating
    return empty_model_list(path, authorization)


def test_a_local_server_still_working_is_waited_for() -> None:
    with loopback_server(_slow) as server:
        client = make_client(Settings(kind="compatible", base_url=server.url), timeout=0.5, max_retries=0)
        with client:
            assert list(client.models.list()) == []  # answered after 1.5 s: not a timeout
            assert client.timeout.read == LOCAL_READ_TIMEOUT and client.timeout.connect == 0.5  # type: ignore[union-attr]


def test_remote_backends_keep_the_usual_timeout() -> None:
    remote = make_client(Settings(kind="compatible", base_url="https://llm.example/v1", api_key="k"), timeout=0.5)
    assert remote.timeout == 0.5
