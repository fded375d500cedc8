"""One training job in its own process: a crash here can't take the server down. Reports through the store."""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.server.bases import fine_tuned_name, resolve_base
from ftcli.server.store import Store, now

if TYPE_CHECKING:
    from ftcli.server.protocol.hyperparameters import TrainingHyperparameters


def read_examples(store: Store, file_id: str) -> list[dict[str, Any]]:
    row = store.file(file_id)
    if row is None:
        raise FileNotFoundError(file_id)
    text = store.blob_path(row["sha256"]).read_text(encoding="utf-8-sig")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def exit_with_parent(poll: float = 0.5) -> None:
    """A worker must not outlive its server (kill -9 included): the restarted server resumes the job from its last
    checkpoint, and two processes must never train one job. Under torchrun the server is a grandparent,
    named in FTCLI_SERVER_PID."""
    parent = os.getppid()
    server = int(os.environ.get("FTCLI_SERVER_PID", "0"))

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def watch() -> None:
        while os.getppid() == parent and (not server or alive(server)):
            time.sleep(poll)
        os._exit(1)

    threading.Thread(target=watch, name="ftcli-parent-watch", daemon=True).start()


def run_job(data_dir: str, job_id: str) -> None:
    from ftcli.server.protocol.hyperparameters import JOB_LEVEL, InvalidHyperparameter, parse
    from ftcli.server.training import KEEP_CHECKPOINTS, StepMetrics, train_lora

    exit_with_parent()
    main = int(os.environ.get("RANK", "0")) == 0  # under data parallelism, rank 0 alone reports to the store
    store = Store(Path(data_dir), clean=False)
    job = store.job(job_id)
    assert job is not None
    kind = job["method"]["type"]
    try:
        requested = parse(kind, job["method"].get(kind, {}).get("hyperparameters") or {})
    except InvalidHyperparameter as exc:  # a job stored before its hyperparameters were checked on creation
        if main:
            _fail(store, job_id, "invalid_hyperparameters", exc.message)
        raise SystemExit(1) from None
    output = Path(data_dir) / "runs" / job_id
    last = next(iter(store.checkpoints(job_id)), None)
    resume = Path(last["path"]) if last and Path(last["path"]).exists() else None
    start_epoch = last["metrics"].get("epoch", 0) if resume and last else 0
    if main:
        store.update_job(job_id, status="running")
        store.add_event(job_id, "Fine-tuning job started" if not resume else f"Resuming from epoch {start_epoch}")
    base_path = resolve_base(job["model"], Path(data_dir))
    examples = read_examples(store, job["training_file"])
    validation = read_examples(store, job["validation_file"]) if job.get("validation_file") else None
    started = time.monotonic()
    first_step: list[int] = []  # the step this run started at (after a resume, not 1)

    def on_step(m: StepMetrics) -> None:
        data = {
            "step": m.step,
            "train_loss": round(m.train_loss, 6),
            "train_mean_token_accuracy": round(m.train_mean_token_accuracy, 6),
            "total_steps": m.total_steps,
        }
        if m.valid_loss is not None:
            data["valid_loss"] = round(m.valid_loss, 6)
        store.add_event(
            job_id, f"Step {m.step}/{m.total_steps}: training loss={m.train_loss:.4f}", type_="metrics", data=data
        )
        first_step[:] = first_step or [m.step]
        done = m.step - first_step[0] + 1
        remaining = (time.monotonic() - started) / done * max(0, m.total_steps - m.step)
        store.update_job(job_id, estimated_finish=now() + int(remaining))

    def on_checkpoint(epoch: int, path: Path, m: StepMetrics) -> None:
        metrics = {
            "step": m.step,
            "train_loss": m.train_loss,
            "train_mean_token_accuracy": m.train_mean_token_accuracy,
            "valid_loss": m.valid_loss,
            "epoch": epoch,
        }
        name = fine_tuned_name(job["model"], job.get("user_provided_suffix"), job_id) + f":ckpt-step-{m.step}"
        store.add_checkpoint(job_id, step=m.step, metrics=metrics, model=name, path=path, keep=KEEP_CHECKPOINTS)
        store.add_event(job_id, f"Checkpoint created at step {m.step}")

    try:
        hyper, result = train_lora(
            base_path,
            job["model"],
            examples,
            output=output,
            seed=int(job.get("seed") or 0),
            requested=requested,
            validation=validation,
            on_step=on_step,
            on_checkpoint=on_checkpoint,
            start_epoch=int(start_epoch),
            resume_adapter=resume,
            on_warning=lambda message: store.add_event(job_id, message, level="warn"),
            on_info=lambda message: store.add_event(job_id, message),
        )
    except Exception as exc:  # the job fails with words the user can act on; the server and the next job go on
        traceback.print_exc()  # for the server's log
        if main:
            _fail(store, job_id, *_failure(exc, requested))
        raise SystemExit(1) from exc
    if not main:
        return
    if result.stopped_early is not None:
        epoch, loss = result.stopped_early
        store.add_event(
            job_id,
            f"Stopped after epoch {epoch} of {hyper.n_epochs}: mean training loss {loss:.4f} reached stop_at_loss",
        )
    model_id = fine_tuned_name(job["model"], job.get("user_provided_suffix"), job_id)
    store.add_model(model_id, base=job["model"], adapter=output / "adapter", job_id=job_id)
    results_id = _save_results(store, job_id)
    trained = hyper.trained_with().given()  # every setting as the job trained with it (its model, the machine)
    store.add_event(job_id, f"New fine-tuned model created: {model_id}")
    store.update_job(
        job_id,
        status="succeeded",
        fine_tuned_model=model_id,
        finished_at=now(),
        trained_tokens=result.trained_tokens,
        result_files=[results_id],
        hyperparameters={key: trained[key] for key in JOB_LEVEL},
        method={"type": kind, kind: {"hyperparameters": trained}},
        estimated_finish=None,
    )
    store.add_event(job_id, "The job has successfully completed")


def _failure(exc: BaseException, requested: TrainingHyperparameters) -> tuple[str, str]:
    """(code, message) of a job that failed: out of GPU memory and a setting the machine can't honour are told
    plainly, with what to change; anything else names the error (its traceback goes to the server's log)."""
    from ftcli.server import hardware

    if isinstance(exc, hardware.UnsupportedSetting):
        return "invalid_hyperparameters", str(exc)
    if hardware.is_out_of_memory(exc):
        message = hardware.out_of_memory(
            batch_size=requested.batch_size,
            seq_length=requested.max_seq_length,
            quantized=requested.quantization == "4bit",
            checkpointing=requested.gradient_checkpointing is True,
        )
        return "out_of_memory", message
    return "server_error", f"training failed: {type(exc).__name__}: {exc}"[:1000]


def _fail(store: Store, job_id: str, code: str, message: str) -> None:
    store.update_job(
        job_id,
        status="failed",
        finished_at=now(),
        estimated_finish=None,
        error={"code": code, "message": message, "param": "hyperparameters" if code != "server_error" else None},
    )
    store.add_event(job_id, message, level="error")


def _save_results(store: Store, job_id: str) -> str:
    """OpenAI's step metrics CSV, from every metrics event of the job (a resumed job's earlier runs included)."""
    import io

    steps = [e["data"] for e in reversed(store.events(job_id)) if e["type"] == "metrics"]
    rows = list({row["step"]: row for row in steps}.values())  # a validation event repeats its step: merged

    lines = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
    lines += [
        f"{r['step']},{r['train_loss']},{r['train_mean_token_accuracy']},{r.get('valid_loss', '')}," for r in rows
    ]
    csv = io.BytesIO(("\n".join(lines) + "\n").encode())
    row = store.add_file(csv, limit=1 << 30, filename=f"step_metrics_{job_id}.csv", purpose="fine-tune-results")
    return str(row["id"])


if __name__ == "__main__":  # one rank of a data-parallel job, started by torchrun (see runner.py)
    import sys

    run_job(sys.argv[1], sys.argv[2])
