"""The local server's access rules: bearer keys, loopback-only without a key, upload limits, and names that can't
reach outside the data directory."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ftcli.cli.app import app as cli_app  # noqa: E402
from ftcli.server.app import create_app  # noqa: E402
from ftcli.server.guard import FailedKeys  # noqa: E402
from ftcli.server.store import Store  # noqa: E402

pytestmark = [pytest.mark.local]
LIMIT = 1000
LOCAL = "http://127.0.0.1:8765"  # the Host a client of `ftcli serve` sends (the test client's default is refused)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(data_dir, max_upload_bytes=LIMIT), base_url=LOCAL) as test_client:
        yield test_client


def _sql(data_dir: Path, statement: str, params: tuple[object, ...]) -> None:
    """State no request can make (time passing, what an older ftcli left), written straight into the database."""
    with sqlite3.connect(data_dir / "ftcli.sqlite3") as db:
        db.execute(statement, params)


def _upload(client: TestClient, name: str, data: bytes) -> object:
    return client.post("/v1/files", files={"file": (name, data)}, data={"purpose": "fine-tune"})


def test_wrong_or_missing_keys_get_401_in_openais_envelope(data_dir: Path) -> None:
    with TestClient(create_app(data_dir, api_key="right-key"), base_url=LOCAL) as client:
        for headers in ({}, {"authorization": "Bearer wrong-key"}, {"authorization": "right-key"}):
            response = client.get("/v1/files", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
            assert "right-key" not in response.text
        assert client.get("/v1/files", headers={"authorization": "Bearer right-key"}).status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_serve_refuses_other_addresses_without_a_key(host: str, tmp_path: Path) -> None:
    env = {"FTCLI_SERVER_API_KEY": "", "FTCLI_CONFIG_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli_app, ["serve", "--host", host, "--data-dir", str(tmp_path / "d")], env=env)
    assert result.exit_code == 2 and f"refusing to listen on {host} without an API key" in result.output
    assert "Traceback" not in result.output


def test_uploads_past_the_limit_are_refused_and_leave_nothing(client: TestClient, data_dir: Path) -> None:
    too_big = _upload(client, "big.jsonl", b"x" * (LIMIT + 1))
    assert too_big.status_code == 413 and "limit" in too_big.json()["error"]["message"]  # type: ignore[attr-defined]
    assert client.get("/v1/files").json()["data"] == []
    assert [p.name for p in (data_dir / "blobs").iterdir()] == []
    body = {"bytes": LIMIT + 1, "filename": "a.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"}
    assert client.post("/v1/uploads", json=body).status_code == 413
    for bad in (-1, "12", True):
        assert client.post("/v1/uploads", json={**body, "bytes": bad}).status_code == 400


@pytest.mark.parametrize(
    ("given", "stored"),
    [("../../etc/passwd", "passwd"), ("/abs/evil.jsonl", "evil.jsonl"), ("a\x00b.jsonl", "ab.jsonl"),
     ("..\\..\\win.jsonl", "win.jsonl"), ("..", "upload.jsonl")],
)  # fmt: skip
def test_file_names_cant_escape_the_data_dir(client: TestClient, data_dir: Path, given: str, stored: str) -> None:
    before = {p for p in data_dir.parent.rglob("*")}
    response = _upload(client, given, b'{"messages": []}\n')
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    name = response.json()["filename"]  # type: ignore[attr-defined]
    assert "/" not in name and "\\" not in name and "\x00" not in name and name not in (".", "..")  # (multipart
    # clients percent-encode some characters of a name)
    created = {p for p in data_dir.parent.rglob("*")} - before
    assert created and all(data_dir in p.parents for p in created)
    upload = client.post(
        "/v1/uploads", json={"bytes": 3, "filename": given, "mime_type": "text/jsonl", "purpose": "fine-tune"}
    )
    assert upload.json()["filename"] == stored


def test_blob_names_are_content_hashes_only(data_dir: Path) -> None:
    store = Store(data_dir)
    for name in ("../ftcli.sqlite3", "/etc/passwd", "a" * 63 + "/", "A" * 64):
        with pytest.raises(ValueError, match="not a content hash"):
            store.blob_path(name)


def _start_upload(client: TestClient, size: int) -> str:
    body = {"bytes": size, "filename": "p.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"}
    upload_id: str = client.post("/v1/uploads", json=body).json()["id"]
    return upload_id


def _send_parts(client: TestClient, upload_id: str, parts: list[bytes]) -> list[str]:
    return [client.post(f"/v1/uploads/{upload_id}/parts", files={"data": ("part", p)}).json()["id"] for p in parts]


def test_upload_parts_are_joined_streaming_with_md5_checked(client: TestClient, data_dir: Path) -> None:
    parts = [b"a" * 300, b"b" * 300, b"c" * 7]
    data = b"".join(parts)
    upload_id = _start_upload(client, len(data))
    ids = _send_parts(client, upload_id, parts)
    wrong = client.post(f"/v1/uploads/{upload_id}/complete", json={"part_ids": ids, "md5": "0" * 32})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "md5"
    short = client.post(f"/v1/uploads/{upload_id}/complete", json={"part_ids": ids[:2]})
    assert short.status_code == 400 and "607" in short.json()["error"]["message"]
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    done = client.post(f"/v1/uploads/{upload_id}/complete", json={"part_ids": ids, "md5": md5}).json()
    assert done["status"] == "completed" and done["file"]["bytes"] == len(data)
    assert client.get(f"/v1/files/{done['file']['id']}/content").content == data
    again = client.post(f"/v1/uploads/{upload_id}/complete", json={"part_ids": ids})
    assert again.status_code == 400 and "completed" in again.json()["error"]["message"]
    # the bytes are stored once, as the file: the parts are gone
    assert not (data_dir / "uploads" / upload_id).exists()
    assert [p.stat().st_size for p in (data_dir / "blobs").iterdir()] == [len(data)]


def test_cancelled_and_expired_uploads_leave_no_bytes(client: TestClient, data_dir: Path) -> None:
    cancelled = _start_upload(client, 20)
    _send_parts(client, cancelled, [b"x" * 10])
    assert (data_dir / "uploads" / cancelled).is_dir()
    assert client.post(f"/v1/uploads/{cancelled}/cancel").json()["status"] == "cancelled"
    assert not (data_dir / "uploads" / cancelled).exists()

    expired = _start_upload(client, 20)
    _send_parts(client, expired, [b"y" * 10])
    _sql(data_dir, "UPDATE uploads SET expires_at = 0 WHERE id = ?", (expired,))  # an hour passes
    late = client.post(f"/v1/uploads/{expired}/parts", files={"data": ("part", b"z" * 10)})
    assert late.status_code == 400 and "expired" in late.json()["error"]["message"]
    assert not (data_dir / "uploads" / expired).exists()
    assert list((data_dir / "blobs").iterdir()) == []


def test_a_restarted_server_removes_parts_no_upload_can_use(data_dir: Path) -> None:
    with TestClient(create_app(data_dir, max_upload_bytes=LIMIT), base_url=LOCAL) as client:
        open_upload, stale = _start_upload(client, 20), _start_upload(client, 20)
        first = _send_parts(client, open_upload, [b"o" * 10])
        _send_parts(client, stale, [b"s" * 10])
        store: Store = client.app.state.store  # type: ignore[attr-defined]
        _sql(data_dir, "UPDATE uploads SET expires_at = 0 WHERE id = ?", (stale,))
        # as an earlier ftcli left them: a finished upload's part kept among the blobs
        legacy_sha = hashlib.sha256(b"legacy part").hexdigest()
        store.blob_path(legacy_sha).write_bytes(b"legacy part")
        _sql(
            data_dir,
            "INSERT INTO upload_parts (id, upload_id, sha256, bytes, created_at) VALUES (?, ?, ?, 11, 0)",
            ("part-old", "upload-old", legacy_sha),
        )
    Store(data_dir)  # what `ftcli serve` does at start
    assert sorted(p.name for p in (data_dir / "uploads").iterdir()) == [open_upload]
    assert not store.blob_path(legacy_sha).exists()
    with TestClient(create_app(data_dir, max_upload_bytes=LIMIT), base_url=LOCAL) as client:
        late = client.post(f"/v1/uploads/{stale}/parts", files={"data": ("part", b"s" * 10)})
        assert late.status_code == 400 and "expired" in late.json()["error"]["message"]
        second = _send_parts(client, open_upload, [b"p" * 10])  # the open upload goes on where it was
        done = client.post(f"/v1/uploads/{open_upload}/complete", json={"part_ids": first + second}).json()
        assert client.get(f"/v1/files/{done['file']['id']}/content").content == b"o" * 10 + b"p" * 10


def test_server_lora_defaults_fill_what_a_job_leaves_unset(data_dir: Path) -> None:
    client = TestClient(
        create_app(data_dir, lora_defaults={"lora_rank": 4, "lora_dropout": 0.1}), base_url=LOCAL
    )  # no runner
    file_id = _upload(client, "z.jsonl", b'{"messages": []}\n').json()["id"]  # type: ignore[attr-defined]
    body = {"model": "ftcli/tiny", "training_file": file_id, "hyperparameters": {"n_epochs": 1}}
    plain = client.post("/v1/fine_tuning/jobs", json=body).json()
    assert plain["method"]["supervised"]["hyperparameters"] == {"n_epochs": 1, "lora_rank": 4, "lora_dropout": 0.1}
    own = client.post(
        "/v1/fine_tuning/jobs",
        json={
            "model": "ftcli/tiny",
            "training_file": file_id,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"lora_rank": 16}}},
        },
    ).json()
    assert own["hyperparameters"] == {"lora_rank": 16, "lora_dropout": 0.1}


def test_an_uploads_parts_cant_hold_more_than_it_declared(data_dir: Path) -> None:
    # Attack: a 1-byte upload took three 5 MB parts (limits raised here so only the declared size can stop them)
    with TestClient(create_app(data_dir, max_upload_bytes=64 * 1024 * 1024), base_url=LOCAL) as client:
        _parts_past_the_declared_size_are_refused(client, data_dir)


def _parts_past_the_declared_size_are_refused(client: TestClient, data_dir: Path) -> None:
    tiny = _start_upload(client, 1)
    refused = client.post(f"/v1/uploads/{tiny}/parts", files={"data": ("p", b"x" * (5 * 1024 * 1024))})
    assert refused.status_code == 413 and "1 bytes" in refused.json()["error"]["message"]
    assert not list((data_dir / "uploads").rglob("part-*")) and not list((data_dir / "uploads").rglob(".incoming*"))
    # A part may be sent again when its response was lost (twice the declared size in all), not more
    upload_id = _start_upload(client, 600)
    assert len(_send_parts(client, upload_id, [b"a" * 600, b"a" * 600])) == 2
    third = client.post(f"/v1/uploads/{upload_id}/parts", files={"data": ("p", b"a")})
    assert third.status_code == 413


def test_the_data_dir_and_the_database_are_the_users_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    Store(data_dir).files()
    for path in [data_dir, *data_dir.glob("ftcli.sqlite3*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # as an older ftcli or a umask of 022 left them
    with TestClient(create_app(data_dir), base_url=LOCAL) as client:
        assert client.get("/v1/files").status_code == 200
        assert data_dir.stat().st_mode & 0o777 == 0o700
        databases = list(data_dir.glob("ftcli.sqlite3*"))
        assert databases and all(p.stat().st_mode & 0o777 == 0o600 for p in databases), databases


def test_a_chat_may_not_name_a_folder_outside_the_model_roots_and_a_broken_model_is_an_envelope(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    (root / "broken").mkdir(parents=True)
    (root / "broken" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    monkeypatch.setenv("FTCLI_MODEL_ROOTS", str(root))
    with TestClient(create_app(data_dir), base_url=LOCAL, raise_server_exceptions=False) as client:

        def ask(model: str) -> dict[str, str]:
            response = client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user"}]})
            assert response.headers["content-type"] == "application/json"
            error: dict[str, str] = response.json()["error"]
            return {"status": str(response.status_code), **error}

        for outside in (str(tmp_path), "/etc", f"{root}/../"):
            refused = ask(outside)
            assert refused["status"] == "404" and "outside this server's model roots" in refused["message"]
        broken = ask(str(root / "broken"))
        assert broken["status"] == "500" and broken["code"] == "model_load_failed"
        assert "could not be loaded" in broken["message"]


# --- a server other machines can reach (`serve --host 0.0.0.0`): long keys, a cleartext warning, slowed guesses ---

NETWORK_KEY = "k" * 32


@pytest.fixture
def serve_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """`ftcli serve ARGS` in this process up to the point it would start listening: uvicorn's run is replaced by
    one that records the sockets it was given (and closes them). Returns the CliRunner result; `.sockets` and
    `.app_options` (what create_app was given) say what would have been served."""
    import uvicorn

    import ftcli.server.app as server_app

    for name in ("FTCLI_MODEL_ROOTS", "FTCLI_MODEL_DIRS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # serve sets them for its process: restored after
    served: dict[str, Any] = {}

    def run(_server: Any, sockets: list[socket.socket] | None = None) -> None:
        served["sockets"] = [s.getsockname() for s in sockets or []]
        for sock in sockets or []:
            sock.close()

    real_create_app = server_app.create_app

    def create_app(*args: Any, **options: Any) -> Any:
        served["app_options"] = options
        return real_create_app(*args, **options)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(server_app, "create_app", create_app)

    def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
        environment = {"FTCLI_SERVER_API_KEY": "", "FTCLI_CONFIG_DIR": str(tmp_path), **(env or {})}
        served.clear()
        result = CliRunner().invoke(cli_app, [*args, "--data-dir", str(tmp_path / "d")], env=environment)
        result.served = dict(served)  # type: ignore[attr-defined]
        return result

    return invoke


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_serve_on_the_network_refuses_short_keys(host: str, serve_cli: Callable[..., Any]) -> None:
    result = serve_cli("serve", "--host", host, env={"FTCLI_SERVER_API_KEY": "k" * 31})
    assert result.exit_code == 2, result.output
    assert f"refusing to listen on {host} with a key of 31 characters" in result.stderr
    assert "32 characters or more" in result.stderr and "Traceback" not in result.output
    assert not result.served  # refused before anything was bound


def test_serve_on_the_network_warns_that_http_is_cleartext(serve_cli: Callable[..., Any]) -> None:
    result = serve_cli("serve", "--host", "0.0.0.0", "--port", str(_free_port()), "--api-key", NETWORK_KEY)
    assert result.exit_code == 0, result.output
    assert "plain HTTP" in result.stderr and "unencrypted" in result.stderr
    local = serve_cli("serve", "--port", str(_free_port()))
    assert local.exit_code == 0, local.output
    assert "plain HTTP" not in local.stderr  # loopback: nothing crosses a network


def test_repeated_wrong_keys_from_one_address_are_slowed_down(data_dir: Path) -> None:
    clock = _Clock()
    keys = FailedKeys(free=5, clock=clock)
    app = create_app(data_dir, api_key=NETWORK_KEY, host="0.0.0.0", failed_keys=keys)
    with TestClient(app, base_url="http://10.0.0.2:8765", client=("10.0.0.9", 50000)) as client:
        wrong, right = {"authorization": "Bearer guess"}, {"authorization": f"Bearer {NETWORK_KEY}"}
        assert [client.get("/v1/files", headers=wrong).status_code for _ in range(6)] == [401] * 6
        slowed = client.get("/v1/files", headers=right)  # even the right key waits: a guesser learns nothing
        assert slowed.status_code == 429 and slowed.headers["retry-after"] == "1"
        assert slowed.json()["error"]["code"] == "rate_limit_exceeded" and NETWORK_KEY not in slowed.text
        clock.now += 1
        assert client.get("/v1/files", headers=wrong).status_code == 401
        assert client.get("/v1/files", headers=right).headers["retry-after"] == "2"  # twice as long
        clock.now += 2
        assert client.get("/v1/files", headers=right).status_code == 200
        assert client.get("/v1/files", headers=wrong).status_code == 401  # counted afresh after a right key
    with TestClient(app, base_url="http://10.0.0.2:8765", client=("10.0.0.7", 50000)) as other:
        assert other.get("/v1/files", headers=right).status_code == 200  # another address is not slowed down


def test_local_clients_of_a_network_server_cant_lock_each_other_out(data_dir: Path) -> None:
    """The review's case: on `--host 0.0.0.0`, six wrong keys from 127.0.0.1 (any local user) made the owner's right
    key wait too. Loopback clients are not counted; a remote address still is."""
    app = create_app(data_dir, api_key=NETWORK_KEY, host="0.0.0.0", failed_keys=FailedKeys(free=5, clock=_Clock()))
    wrong, right = {"authorization": "Bearer guess"}, {"authorization": f"Bearer {NETWORK_KEY}"}
    for local in ("127.0.0.1", "::1"):
        with TestClient(app, base_url="http://127.0.0.1:8765", client=(local, 50000)) as client:
            assert {client.get("/v1/files", headers=wrong).status_code for _ in range(8)} == {401}
            assert client.get("/v1/files", headers=right).status_code == 200


def test_network_servers_slow_down_guesses_by_default_and_loopback_ones_dont(data_dir: Path) -> None:
    for host, slowed in (("0.0.0.0", True), ("127.0.0.1", False)):
        app = create_app(data_dir, api_key=NETWORK_KEY, host=host)
        with TestClient(app, base_url="http://127.0.0.1:8765") as client:
            codes = {client.get("/v1/files", headers={"authorization": "Bearer guess"}).status_code for _ in range(8)}
        assert (429 in codes) is slowed, (host, codes)  # on loopback every local user is 127.0.0.1: no lock-outs


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- a port already taken (issue 29.12) ---


def test_serve_on_a_busy_port_says_which_port_and_what_to_do(serve_cli: Callable[..., Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve_cli("serve", "--port", str(port))
        assert result.exit_code == 2 and f"port {port} on 127.0.0.1 is already in use" in result.stderr
        assert "--port" in result.stderr and "stop the server that listens there" in result.stderr
        assert "Errno" not in result.output and "Traceback" not in result.output
        as_json = serve_cli("--json", "serve", "--port", str(port))
        assert as_json.exit_code == 2 and as_json.stdout == ""
        error = json.loads(as_json.stderr)["error"]
        assert f"port {port} on 127.0.0.1 is already in use" in error["message"] and "--port" in error["hint"]
    free = serve_cli("serve", "--port", str(port))  # once it is free again
    assert free.exit_code == 0 and free.served["sockets"] == [("127.0.0.1", port)]


# --- several machines: the rendezvous has no authentication (issue 29.6) ---


def test_several_nodes_need_the_explicit_opt_in(serve_cli: Callable[..., Any]) -> None:
    rendezvous = f"127.0.0.1:{_free_port()}"
    result = serve_cli("serve", "--port", str(_free_port()), "--nodes", "2", "--rendezvous", rendezvous)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "refusing --nodes 2: the rendezvous of a job trained on several machines has no authentication" in (
        result.stderr
    )
    assert f"whoever reaches {rendezvous} can join the job" in result.stderr
    assert "--allow-unauthenticated-rendezvous" in result.stderr and "private network" in result.stderr
    assert not result.served


def test_with_the_opt_in_node_0_binds_the_named_address_and_warns(serve_cli: Callable[..., Any]) -> None:
    from ftcli.server.runner import Cluster

    port = _free_port()
    args = ("--nodes", "2", "--rendezvous", f"127.0.0.1:{port}", "--allow-unauthenticated-rendezvous")
    result = serve_cli("serve", "--port", str(_free_port()), *args)
    assert result.exit_code == 0, result.output
    assert "warning: the rendezvous of a job trained on several machines has no authentication" in result.stderr
    cluster = result.served["app_options"]["cluster"]
    assert cluster == Cluster(nodes=2, host="127.0.0.1", port=port)
    node_0 = cluster.torchrun(0, 1, "/data", "ftjob-1")
    assert node_0[1:3] == ["-m", "ftcli.server.rendezvous"]  # torchrun, with the store bound to the address
    assert node_0[node_0.index("--master_addr") + 1] == "127.0.0.1"
    assert node_0[node_0.index("--master_port") + 1] == str(port)
    node_1 = cluster.torchrun(1, 1, "/data", "ftjob-1")
    assert node_1[1:3] == ["-m", "torch.distributed.run"]  # the others only connect to it
    help_text = CliRunner().invoke(cli_app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--allow-unauthenticated-rendezvous" in help_text and "no authentication" in " ".join(help_text.split())


def test_a_rendezvous_address_this_machine_cant_listen_on_is_refused_at_start(serve_cli: Callable[..., Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        rendezvous = f"127.0.0.1:{taken.getsockname()[1]}"
        args = ("--nodes", "2", "--rendezvous", rendezvous, "--allow-unauthenticated-rendezvous")
        result = serve_cli("serve", "--port", str(_free_port()), *args)
    assert result.exit_code == 2 and f"--rendezvous {rendezvous}: can't listen there" in result.stderr
