"""One training job in its own process: a crash here can't take the server down. Reports through the store."""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.server import hardware
from ftcli.server.bases import fine_tuned_name, resolve_base
from ftcli.server.protocol.jobs import FineTuningJob
from ftcli.server.reporting import StepMetrics
from ftcli.server.store import Store, now

if TYPE_CHECKING:
    from ftcli.server.grpo import Grading
    from ftcli.server.protocol.hyperparameters import TrainingHyperparameters
    from ftcli.server.training import Hyperparameters, TrainingResult


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


class JobReporter:
    """Training's reports written to its job in the store (server/reporting.py's TrainingReporter): each step a
    metrics event and the estimated finish, each epoch's checkpoint, warnings and notes as events."""

    def __init__(self, store: Store, job: FineTuningJob) -> None:
        self.store, self.job = store, job
        self.started = time.monotonic()
        self.first_step: int | None = None  # the step this run started at (after a resume, not 1)

    def step(self, metrics: StepMetrics) -> None:
        data: dict[str, Any] = {"step": metrics.step, "train_loss": round(metrics.train_loss, 6)}
        if metrics.train_mean_token_accuracy is not None:
            data["train_mean_token_accuracy"] = round(metrics.train_mean_token_accuracy, 6)
        data["total_steps"] = metrics.total_steps
        if metrics.valid_loss is not None:
            data["valid_loss"] = round(metrics.valid_loss, 6)
        data.update(_reward_metrics(metrics))
        message = f"Step {metrics.step}/{metrics.total_steps}: training loss={metrics.train_loss:.4f}"
        if metrics.train_rewards is not None:
            message += f", mean reward={metrics.train_rewards.mean:.4f}"
        if metrics.valid_rewards is not None:
            message += f", validation mean reward={metrics.valid_rewards.mean:.4f}"
        self.store.add_event(self.job.id, message, type_="metrics", data=data)
        if self.first_step is None:
            self.first_step = metrics.step
        done = metrics.step - self.first_step + 1
        remaining = (time.monotonic() - self.started) / done * max(0, metrics.total_steps - metrics.step)
        self.store.update_job(self.job.id, estimated_finish=now() + int(remaining))

    def epoch_end(self, metrics: StepMetrics) -> None:
        if metrics.valid_loss is not None:  # the epoch's last step again, now with its validation loss
            self.step(metrics)

    def checkpoint_saved(self, epoch: int, path: Path, metrics: StepMetrics) -> None:
        from ftcli.server.training import KEEP_CHECKPOINTS

        kept = {
            "step": metrics.step,
            "train_loss": metrics.train_loss,
            "train_mean_token_accuracy": metrics.train_mean_token_accuracy,
            "valid_loss": metrics.valid_loss,
            "epoch": epoch,
            **_reward_metrics(metrics),
        }
        name = f"{_model_name(self.job)}:ckpt-step-{metrics.step}"
        self.store.add_checkpoint(
            self.job.id, step=metrics.step, metrics=kept, model=name, path=path, keep=KEEP_CHECKPOINTS
        )
        self.store.add_event(self.job.id, f"Checkpoint created at step {metrics.step}")

    def warning(self, message: str) -> None:
        self.store.add_event(self.job.id, message, level="warn")

    def info(self, message: str) -> None:
        self.store.add_event(self.job.id, message)

    def error(self, message: str) -> None:
        self.store.add_event(self.job.id, message, level="error")

    def should_stop(self) -> bool:
        return False  # cancel and pause end the process (server/runner.py)


def _reward_metrics(metrics: StepMetrics) -> dict[str, float]:
    """A reinforcement step's rewards as its event and checkpoint carry them (nothing for other methods)."""
    found: dict[str, float] = {}
    for prefix, rewards in (("train", metrics.train_rewards), ("valid", metrics.valid_rewards)):
        if rewards is not None:
            found[f"{prefix}_reward_mean"] = round(rewards.mean, 6)
            found[f"{prefix}_reward_std"] = round(rewards.std, 6)
    return found


def run_job(data_dir: str, job_id: str, judge_max_tokens: str | None = None, *, own_process: bool = False) -> None:
    """A job's life in its process: running (or resuming from its last checkpoint), trained, then succeeded with
    its model, or failed in words the user can act on. `judge_max_tokens`: the server's ceiling on a model grader's
    answer (`serve --max-tokens`; text, as a command line passes it). `own_process`: the process exists for this job
    alone (the server's spawned worker, a torchrun rank), so it may leave out what the job won't use."""
    from ftcli.server.protocol.hyperparameters import InvalidHyperparameter, ReinforcementHyperparameters, parse
    from ftcli.server.training import train_lora

    exit_with_parent()
    main = int(os.environ.get("RANK", "0")) == 0  # under data parallelism, rank 0 alone reports to the store
    store = Store(Path(data_dir), clean=False)
    job = FineTuningJob.model_validate(store.job(job_id))
    kind = job.method["type"]
    try:
        requested = parse(kind, job.method.get(kind, {}).get("hyperparameters") or {})
    except InvalidHyperparameter as exc:  # a job stored before its hyperparameters were checked on creation
        if main:
            store.fail_job(job_id, "invalid_hyperparameters", exc.message, param="hyperparameters")
        raise SystemExit(1) from None
    output = Path(data_dir) / "runs" / job_id
    last = next(iter(store.checkpoints(job_id)), None)
    resume = Path(last["path"]) if last and Path(last["path"]).exists() else None
    start_epoch = last["metrics"].get("epoch", 0) if resume and last else 0
    # a continued job: the adapter it trains further (a resumed one trains its own checkpoint further; DPO still
    # needs the parent as its reference)
    parent = _parent_adapter(store, job, main=main) if resume is None or kind == "dpo" else None
    if main:
        store.transition(
            job_id, "running", "Fine-tuning job started" if not resume else f"Resuming from epoch {start_epoch}"
        )
    base_path = resolve_base(job.base, Path(data_dir))
    # A reinforcement job keeps it: its model graders may run on another base, saved quantized
    if own_process and not isinstance(requested, ReinforcementHyperparameters):
        hardware.leave_out_quantization(requested.quantization, base_path)
    examples = read_examples(store, job.training_file)
    validation = read_examples(store, job.validation_file) if job.validation_file else None
    try:
        if isinstance(requested, ReinforcementHyperparameters):
            from ftcli.server.grpo import train_grpo

            hyper, result = train_grpo(
                base_path,
                job.base,
                examples,
                grading=_grading(store, job, int(judge_max_tokens) if judge_max_tokens else None),
                output=output,
                seed=job.seed,
                requested=requested,
                validation=validation,
                reporter=JobReporter(store, job),
                start_epoch=int(start_epoch),
                resume_adapter=resume or parent,
            )
        else:
            hyper, result = train_lora(
                base_path,
                job.base,
                examples,
                output=output,
                seed=job.seed,
                requested=requested,
                validation=validation,
                reporter=JobReporter(store, job),
                start_epoch=int(start_epoch),
                resume_adapter=resume or parent,
                reference_adapter=parent,  # DPO on a fine-tuned model: that model is the reference
            )
    except Exception as exc:  # the job fails with words the user can act on; the server and the next job go on
        traceback.print_exc()  # for the server's log
        if main:
            code, message, param = _failure(exc, requested)
            store.fail_job(job_id, code, message, param=param)
        raise SystemExit(1) from exc
    if main:
        _succeed(store, job, hyper, result, output / "adapter")


def _parent_adapter(store: Store, job: FineTuningJob, *, main: bool) -> Path | None:
    """The adapter a continued job (`model` a fine-tuned model or checkpoint of this server) trains further; None for
    a job of a base. Deleted since the job was created: the job fails, saying so, rather than start afresh."""
    from ftcli.server.lineage import parent_adapter

    if job.parent is None:
        return None
    adapter = parent_adapter(store, job.parent)
    if adapter is None:
        if main:
            store.fail_job(
                job.id,
                "model_not_available",
                f"{job.parent.model} was deleted (or its checkpoint is no longer kept) before this job started, so "
                "there is nothing to continue",
                param="model",
            )
        raise SystemExit(1)
    return adapter


def _succeed(store: Store, job: FineTuningJob, hyper: Hyperparameters, result: TrainingResult, adapter: Path) -> None:
    """The trained job's model listed, its step metrics saved as its result file, and every setting reported as it
    trained with it (its model, the machine)."""
    from ftcli.server.protocol.hyperparameters import JOB_LEVEL

    if result.stopped_early is not None:
        epoch, loss = result.stopped_early
        store.add_event(
            job.id,
            f"Stopped after epoch {epoch} of {hyper.n_epochs}: mean training loss {loss:.4f} reached stop_at_loss",
        )
    model_id = _model_name(job)
    store.add_model(model_id, base=job.base, adapter=adapter, job_id=job.id)
    results_id = _save_results(store, job.id)
    trained = hyper.trained_with().given()
    kind = job.method["type"]
    store.add_event(job.id, f"New fine-tuned model created: {model_id}")
    store.transition(
        job.id,
        "succeeded",
        "The job has successfully completed",
        fine_tuned_model=model_id,
        finished_at=now(),
        trained_tokens=result.trained_tokens,
        result_files=[results_id],
        hyperparameters={key: trained[key] for key in JOB_LEVEL},
        method={"type": kind, kind: {**job.method.get(kind, {}), "hyperparameters": trained}},  # a grader kept
        estimated_finish=None,
    )


def _grading(store: Store, job: FineTuningJob, judge_max_tokens: int | None) -> Grading:
    """A reinforcement job's grader (checked when the job was created), with this server's models as its judges and
    python graders sandboxed (data/graders/python_sandbox.py)."""
    from ftcli.data.graders.python_sandbox import run_python_grader
    from ftcli.data.graders.spec import parse_grader
    from ftcli.server.grpo import Grading
    from ftcli.server.judge import LocalJudge

    grader = parse_grader(job.method["reinforcement"]["grader"], where="method.reinforcement.grader")
    return Grading(grader, judge=LocalJudge(store, max_tokens=judge_max_tokens), python=run_python_grader)


def _model_name(job: FineTuningJob) -> str:
    return fine_tuned_name(job.base, job.user_provided_suffix, job.id)  # a continued job's too: ft:BASE:…


def _failure(exc: BaseException, requested: TrainingHyperparameters) -> tuple[str, str, str | None]:
    """(code, message, param) of a job that failed: out of GPU memory and a setting the machine can't honour are
    told plainly, with what to change; anything else names the error (its traceback goes to the server's log)."""
    if isinstance(exc, hardware.UnsupportedSetting):
        return "invalid_hyperparameters", str(exc), "hyperparameters"
    if hardware.is_out_of_memory(exc):
        message = hardware.out_of_memory(
            batch_size=requested.batch_size,
            seq_length=requested.max_seq_length,
            quantized=requested.quantization == "4bit",
            checkpointing=requested.gradient_checkpointing is True,
        )
        return "out_of_memory", message, "hyperparameters"
    return "server_error", f"training failed: {type(exc).__name__}: {exc}"[:1000], None


def _save_results(store: Store, job_id: str) -> str:
    """OpenAI's step metrics CSV, from every metrics event of the job (a resumed job's earlier runs included)."""
    import io

    steps = [e["data"] for e in reversed(store.events(job_id)) if e["type"] == "metrics"]
    rows = list({row["step"]: row for row in steps}.values())  # a validation event repeats its step: merged

    if any("train_reward_mean" in row for row in rows):  # a reinforcement job: its rewards, not token accuracies
        columns = ["train_loss", "train_reward_mean", "train_reward_std", "valid_reward_mean", "valid_reward_std"]
        lines = [",".join(["step", *columns])]
        lines += [",".join(str(value) for value in [r["step"], *(r.get(c, "") for c in columns)]) for r in rows]
    else:
        lines = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
        lines += [
            f"{r['step']},{r['train_loss']},{r['train_mean_token_accuracy']},{r.get('valid_loss', '')}," for r in rows
        ]
    csv = io.BytesIO(("\n".join(lines) + "\n").encode())
    row = store.add_file(csv, limit=1 << 30, filename=f"step_metrics_{job_id}.csv", purpose="fine-tune-results")
    return str(row["id"])


if __name__ == "__main__":  # one rank of a data-parallel job, started by torchrun (see runner.py)
    import sys

    run_job(*sys.argv[1:4], own_process=True)
