"""Runs fine-tuning jobs one at a time (configurable), each in its own process, through OpenAI's statuses:
validating_files → queued → running → succeeded | failed | cancelled, and paused.

`validating_files` runs ftcli's own `check` and fails the job with the first diagnostics (with line numbers).
Cancel and pause stop the process; resume re-queues the job, which continues from its last checkpoint. A crashed
process fails its job with an event that says so; after a server restart, interrupted jobs resume.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from ftcli.server.protocol.jobs import FineTuningJob
from ftcli.server.store import Store, now

ACTIVE = ("validating_files", "queued", "running")


@dataclass(frozen=True, slots=True)
class Cluster:
    """Several machines training each job together (`ftcli serve --nodes M --rendezvous HOST:PORT`): torchrun's
    static rendezvous, this server's machine node 0; the others join a job with the command its event shows.

    The rendezvous store has no authentication: whoever reaches HOST:PORT can join the job (`serve` asks for
    --allow-unauthenticated-rendezvous). Node 0 runs torchrun through server/rendezvous.py, so the store listens on
    HOST's address only, not on every interface as torchrun's own does."""

    nodes: int
    host: str
    port: int

    def torchrun(self, node_rank: int, processes: int, *job: str) -> list[str]:
        """The command of node `node_rank` (node 0 is this machine's: it hosts the rendezvous store); `job`: the
        worker's arguments."""
        launcher = "ftcli.server.rendezvous" if node_rank == 0 else "torch.distributed.run"
        command = [sys.executable, "-m", launcher, "--nnodes", str(self.nodes)]
        command += ["--node_rank", str(node_rank), "--nproc_per_node", str(processes)]
        command += ["--master_addr", self.host, "--master_port", str(self.port)]
        return [*command, "-m", "ftcli.server.worker", *job]


class JobRunner:
    def __init__(
        self,
        store: Store,
        *,
        parallel: int = 1,
        processes: int | None = None,
        cluster: Cluster | None = None,
        poll: float = 0.5,
        judge_max_tokens: int | None = None,
    ) -> None:
        """`parallel`: jobs trained at once; `processes`: data-parallel training processes per job and machine
        (default: one per CUDA GPU; 1 on a CPU); `cluster`: the other machines a job also trains on;
        `judge_max_tokens`: the most tokens a model grader's judge may generate (`serve --max-tokens`, as a chat's)."""
        self.store = store
        self.judge_max_tokens = judge_max_tokens
        self.parallel = parallel
        self.processes_per_job = processes
        self.cluster = cluster
        self.poll = poll
        self.processes: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._context = multiprocessing.get_context("spawn")  # a clean interpreter: no server state, no threads

    def start(self) -> None:
        for job in self.store.jobs():
            if job["status"] == "running":
                message = "The server restarted during training; resuming from the last checkpoint"
                self.store.transition(job["id"], "queued", message, level="warn")
        self._thread = threading.Thread(target=self._loop, name="ftcli-job-runner", daemon=True)
        self._thread.start()

    def stop(self, grace: float = 1.0) -> None:
        """Stop the runner and its job processes, in `grace` seconds and one more at most: a job that was training
        stays `running` in the store and resumes from its last checkpoint at the next start, as after a crash."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=0.5)
        # A tick still running (a long file check) holds the lock: don't wait for it; it reaps nothing once stopped.
        locked = self._lock.acquire(timeout=0.5)
        try:
            processes = list(self.processes.items())
            for job_id, process in processes:
                job = self.store.job(job_id)
                if job is None or job["status"] in ACTIVE:
                    process.terminate()
            deadline = time.monotonic() + grace
            for _job_id, process in processes:  # a finished job's processes are only exiting: let them, briefly
                process.join(timeout=max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
            self.processes.clear()
        finally:
            if locked:
                self._lock.release()

    def kill_now(self) -> None:
        """Kill every job process at once, without waiting (the server's process is about to end: server/stopping.py);
        their jobs resume at the next start."""
        for process in list(self.processes.values()):
            with contextlib.suppress(Exception):
                process.kill()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.tick()
            except Exception:  # keep the runner alive; the failing job is marked by tick itself
                import logging

                logging.getLogger("ftcli.server").exception("job runner tick failed")

    def tick(self) -> None:
        with self._lock:
            if self._stop.is_set():  # stopping: a process ended by stop() is not a failure of its job
                return
            self._reap()
            for job in reversed(self.store.jobs()):  # oldest first
                if job["status"] == "validating_files":
                    self._validate(job)
            running = len(self.processes)
            for job in reversed(self.store.jobs()):
                if running >= self.parallel or self._stop.is_set():
                    break
                if job["status"] == "queued" and job["id"] not in self.processes:
                    self._launch(job["id"])
                    running += 1

    def _validate(self, job: dict[str, Any]) -> None:
        from ftcli.data.check.engine import CheckOptions, check_file
        from ftcli.data.local_training import untrainable_locally

        self.store.add_event(job["id"], f"Validating training file: {job['training_file']}")
        problems = []
        for key in ("training_file", "validation_file"):
            file_id = job.get(key)
            if not file_id:
                continue
            row = self.store.file(file_id)
            if row is None:
                problems.append(f"{key} {file_id} does not exist")
                continue
            kind = job["method"]["type"]
            method = kind if kind in ("dpo", "reinforcement") else "sft"
            # a reinforcement job's grader: every {{item.FIELD}} it reads must be in every record
            grader = job["method"].get(kind, {}).get("grader") if kind == "reinforcement" else None
            options = CheckOptions(model=None, method=method, workers=1, profile="local-training", grader=grader)
            found = check_file(self.store.blob_path(row["sha256"]), options=options).first_errors()
            # then what this backend can't train as it is (images, reasoning its base's template has no place for)
            base = (job.get("parent") or {}).get("base") or job["model"]  # a continued job's model is an ft: name
            problems += found or untrainable_locally(self.store.blob_path(row["sha256"]), base)
        if problems:
            message = f"The training file has errors: {'; '.join(problems)}"
            self.store.fail_job(job["id"], "invalid_training_file", message, param="training_file")
            return
        self.store.transition(job["id"], "queued", "Files validated, moving job to queued state")

    def _launch(self, job_id: str) -> None:
        from ftcli.server.worker import run_job

        count = self.processes_per_job or _gpu_count()
        data_dir = str(self.store.data_dir)
        judge = [str(self.judge_max_tokens)] if self.judge_max_tokens else []
        job = (data_dir, job_id, *judge)  # run_job's arguments
        if self.cluster is not None:
            cluster = self.cluster
            command = cluster.torchrun(0, count, *job)
            self.processes[job_id] = _DataParallel.launch(data_dir, job_id, command)
            join = shlex.join(cluster.torchrun(1, count, *job))
            self.store.add_event(
                job_id,
                f"Waiting for {cluster.nodes - 1} more node(s) to join. On each, with {data_dir} shared at the same "
                f"path, run: {join}" + (" (node K: --node_rank K)" if cluster.nodes > 2 else ""),
            )
            return
        if count > 1:
            standalone = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(count)]
            command = [*standalone, "-m", "ftcli.server.worker", *job]
            self.processes[job_id] = _DataParallel.launch(data_dir, job_id, command)
            return
        process = self._context.Process(
            target=run_job, args=job, kwargs={"own_process": True}, daemon=True, name=f"ftcli-train-{job_id}"
        )
        process.start()
        self.processes[job_id] = process

    def _reap(self) -> None:
        for job_id, process in list(self.processes.items()):
            if process.is_alive():
                continue
            process.join()
            del self.processes[job_id]
            job = self.store.job(job_id)
            if job and job["status"] in ACTIVE:
                message = f"The training process stopped unexpectedly (exit code {process.exitcode})"
                self.store.fail_job(job_id, "server_error", message)

    def stop_job(self, job_id: str, status: Literal["cancelled", "paused"]) -> FineTuningJob:
        """Cancel (status "cancelled") or pause (status "paused") a job: its process, if any, is stopped."""
        with self._lock:
            process = self.processes.pop(job_id, None)
            if process is not None:
                process.terminate()
                process.join(timeout=10)
            finished: dict[str, Any] = {"finished_at": now()} if status == "cancelled" else {}
            return self.store.transition(job_id, status, f"Fine-tuning job {status}", estimated_finish=None, **finished)

    def resume_job(self, job_id: str) -> FineTuningJob:
        with self._lock:
            return self.store.transition(job_id, "queued", "Fine-tuning job resumed")


def _gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 1
    return max(1, torch.cuda.device_count())


class _DataParallel:
    """One job trained by several processes (torchrun + Accelerate: NCCL on GPUs, gloo on CPUs), with the face of a
    multiprocessing.Process for the runner."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def launch(cls, data_dir: str, job_id: str, command: list[str]) -> _DataParallel:
        # torchrun starts the ranks on this machine (with --standalone, on a free rendezvous port); Accelerate in each
        # rank reads its environment and picks NCCL on GPUs or gloo on CPUs.
        os.makedirs(os.path.join(data_dir, "runs"), exist_ok=True)
        log = open(os.path.join(data_dir, "runs", f"{job_id}.launch.log"), "ab")  # noqa: SIM115 (the child keeps it)
        env = {**os.environ, "FTCLI_SERVER_PID": str(os.getpid())}
        with log:
            process = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
        return cls(process)

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        if self.is_alive():
            os.killpg(self.process.pid, signal.SIGTERM)  # the launcher and every rank

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def join(self, timeout: float | None = None) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    @property
    def exitcode(self) -> int | None:
        return self.process.returncode
