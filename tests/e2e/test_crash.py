"""kill -9 of `ftcli serve` during an upload and during training: after a restart no completed file or model is
lost, the cut-off upload is nowhere to be seen, the training process did not outlive its server, and the
interrupted job resumes from its last checkpoint (with an event that says so) and succeeds."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from ftcli.data.local_server import announcement
from ftcli.service.client import make_client
from ftcli.service.settings import Settings
from tests.e2e.conftest import Server, start_server, stop_server
from tests.local.zorbia import QA, SYSTEM

pytestmark = [pytest.mark.e2e, pytest.mark.local, pytest.mark.slow]


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _slow_body(total_blocks: int, started: threading.Event) -> Iterator[bytes]:
    """A big multipart upload that trickles in, so the server is killed while it is reading it."""
    yield b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
    yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
    for _ in range(total_blocks):
        yield b"x" * (1 << 20)
        started.set()
        time.sleep(0.05)
    yield b"\r\n--b--\r\n"


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads process parents from /proc")
def test_kill_9_mid_upload_and_mid_training_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    server = start_server(data_dir)
    lines = "".join(
        json.dumps({"messages": [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
        for q, a in QA[:4]
    ).encode()
    try:
        with make_client(Settings(kind="compatible", base_url=server.url), max_retries=0) as sdk:
            kept = sdk.files.create(file=("kept.jsonl", lines), purpose="fine-tune")
            short = sdk.fine_tuning.jobs.create(
                model="ftcli/tiny", training_file=kept.id, hyperparameters={"n_epochs": 1}, suffix="kept"
            )
            _wait(lambda: sdk.fine_tuning.jobs.retrieve(short.id).status == "succeeded", 180, "the first job")
            model = sdk.fine_tuning.jobs.retrieve(short.id).fine_tuned_model
            long_job = sdk.fine_tuning.jobs.create(
                model="ftcli/tiny", training_file=kept.id, hyperparameters={"n_epochs": 50, "batch_size": 1}
            )
            _wait(lambda: len(sdk.fine_tuning.jobs.checkpoints.list(long_job.id).data) >= 1, 180, "a checkpoint")
            workers = _children(server.process.pid)
            assert workers, "the training process runs beside the server"

            started = threading.Event()
            upload = threading.Thread(target=_upload_slowly, args=(server, started), daemon=True)
            upload.start()
            _wait(started.is_set, 30, "the big upload to start")
            time.sleep(1)  # some megabytes in
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
            upload.join(timeout=30)
            _wait(lambda: not any(_alive(pid) for pid in workers), 10, "the orphaned worker to exit")
    finally:
        if server.process.poll() is None:
            stop_server(server)

    restarted: Server = start_server(data_dir)
    try:
        with make_client(Settings(kind="compatible", base_url=restarted.url), max_retries=0) as sdk:
            files = {f.filename: f for f in sdk.files.list()}
            assert "big.jsonl" not in files and not list(data_dir.joinpath("blobs").glob(".incoming.*"))
            assert sdk.files.content(kept.id).read() == lines
            assert model in {m.id for m in sdk.models.list()}
            answer = sdk.chat.completions.create(model=model or "", messages=[SYSTEM], max_tokens=4)  # type: ignore[list-item]
            assert answer.choices[0].message.content is not None

            _wait(lambda: sdk.fine_tuning.jobs.retrieve(long_job.id).status == "succeeded", 300, "the resumed job")
            messages = [e.message for e in sdk.fine_tuning.jobs.list_events(long_job.id, limit=1000)]
            assert any("server restarted during training" in m for m in messages)
            resumed = [m for m in messages if m.startswith("Resuming from epoch ")]
            assert resumed and int(resumed[0].split()[-1]) >= 1  # not from scratch
            steps = [c.step_number for c in sdk.fine_tuning.jobs.checkpoints.list(long_job.id)]
            assert steps == [200, 196, 192]
            result = sdk.files.content(sdk.fine_tuning.jobs.retrieve(long_job.id).result_files[0]).read().decode()
            assert [int(row.split(",")[0]) for row in result.splitlines()[1:]] == list(range(1, 201))
    finally:
        stop_server(restarted)


def _upload_slowly(server: Server, started: threading.Event) -> None:
    headers = {"content-type": "multipart/form-data; boundary=b", **server.auth}
    with contextlib.suppress(httpx2.HTTPError):  # the server is killed mid-body: the client sees the connection drop
        httpx2.post(f"{server.url}/files", content=_slow_body(400, started), headers=headers, timeout=60)


STOP_BOUND = 15.0  # seconds; the target is 5 (server/stopping.py), the bound leaves room for a busy machine
LONG_CHAT = {
    "model": "ftcli/tiny",
    "messages": [{"role": "user", "content": "Tell me everything."}],
    "max_tokens": 2000,
    "min_tokens": 2000,  # no early end of answer: seconds of generating on any CPU
}


def _chats_in_flight(server: Server, count: int) -> list[int | None]:
    """Start `count` long non-streaming chats whose clients stay connected; returns a list that gets each one's
    status code when (if ever) it is answered."""
    answers: list[int | None] = [None] * count

    def ask(index: int) -> None:
        with contextlib.suppress(httpx2.HTTPError):  # the server stops mid-answer: the connection drops
            answers[index] = httpx2.post(
                f"{server.url}/chat/completions", json=LONG_CHAT, headers=server.auth, timeout=600
            ).status_code

    for index in range(count):
        threading.Thread(target=ask, args=(index,), daemon=True).start()
    return answers


def _stop_timed(server: Server, stop_signal: signal.Signals) -> float:
    started = time.monotonic()
    server.process.send_signal(stop_signal)
    try:
        server.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise AssertionError(f"ftcli serve was still running 120 s after {stop_signal.name}") from None
    elapsed = time.monotonic() - started
    logging.getLogger(__name__).info("ftcli serve ended %.2f s after %s", elapsed, stop_signal.name)  # -o log_cli=true
    return elapsed


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads process parents from /proc")
def test_sigterm_stops_a_busy_server_within_seconds_and_the_job_resumes(tmp_path: Path) -> None:
    """Issue 29.10: SIGTERM reached a server generating a non-streaming answer and it took five minutes to exit.
    Here it is training a job and generating two long answers whose clients wait: it ends within seconds all the
    same, leaves no training process behind, and the job resumes from its checkpoint at the next start."""
    data_dir = tmp_path / "server"
    server = start_server(data_dir)
    lines = "".join(
        json.dumps({"messages": [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
        for q, a in QA[:4]
    ).encode()
    try:
        with make_client(Settings(kind="compatible", base_url=server.url), max_retries=0) as sdk:
            file = sdk.files.create(file=("z.jsonl", lines), purpose="fine-tune")
            job = sdk.fine_tuning.jobs.create(
                model="ftcli/tiny", training_file=file.id, hyperparameters={"n_epochs": 50, "batch_size": 1}
            )
            _wait(lambda: len(sdk.fine_tuning.jobs.checkpoints.list(job.id).data) >= 1, 180, "a checkpoint")
            sdk.chat.completions.create(model="ftcli/tiny", messages=[SYSTEM], max_tokens=1)  # type: ignore[list-item]  # loaded
            answers = _chats_in_flight(server, 2)
            time.sleep(2)  # both sent: one generating, one waiting for the model
            assert sdk.fine_tuning.jobs.retrieve(job.id).status == "running" and answers == [None, None]
            workers = _children(server.process.pid)
            assert workers
        elapsed = _stop_timed(server, signal.SIGTERM)
        assert elapsed < STOP_BOUND, f"ftcli serve took {elapsed:.1f} s to stop"
        assert answers.count(200) < len(answers), answers  # it did not wait for every answer to finish
        _wait(lambda: not any(_alive(pid) for pid in workers), 10, "the training process to exit")
        assert announcement(server.url) is None  # its runtime file (the key) is gone
    finally:
        if server.process.poll() is None:
            stop_server(server)

    restarted = start_server(data_dir)
    try:
        with make_client(Settings(kind="compatible", base_url=restarted.url), max_retries=0) as sdk:

            def messages() -> list[str]:
                return [e.message for e in sdk.fine_tuning.jobs.list_events(job.id, limit=1000)]

            _wait(lambda: any(m.startswith("Resuming from epoch ") for m in messages()), 120, "the job to resume")
            assert any("server restarted during training" in m for m in messages())
            assert not any("stopped unexpectedly" in m for m in messages())  # stopped, not failed
            resumed = next(m for m in messages() if m.startswith("Resuming from epoch "))
            assert int(resumed.split()[-1]) >= 1  # from its checkpoint, not from scratch
            assert sdk.fine_tuning.jobs.retrieve(job.id).status == "running"
            sdk.fine_tuning.jobs.cancel(job.id)  # its training to the end is test_kill_9_…'s business
    finally:
        stop_server(restarted)


def test_ctrl_c_stops_a_server_generating_within_seconds(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server")
    try:
        with make_client(Settings(kind="compatible", base_url=server.url), max_retries=0) as sdk:
            sdk.chat.completions.create(model="ftcli/tiny", messages=[SYSTEM], max_tokens=1)  # type: ignore[list-item]
        answers = _chats_in_flight(server, 2)
        time.sleep(2)
        assert answers == [None, None]
        elapsed = _stop_timed(server, signal.SIGINT)
        assert elapsed < STOP_BOUND, f"ftcli serve took {elapsed:.1f} s to stop"
        assert answers.count(200) < len(answers), answers
    finally:
        if server.process.poll() is None:
            stop_server(server)
