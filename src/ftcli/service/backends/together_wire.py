"""Together's wire format as pure functions on plain dicts (field names from its spec, ../shared/together-spec): its
job statuses as OpenAI's, ftcli's job request as Together's create and price-estimate bodies, a request checked
against a model's limits, and Together's answers as the `openai` SDK's types (jobs, events, checkpoints, files).
No I/O: the backend (together.py) sends and receives, this maps; as ftcli's own server splits `api/` from
`protocol/`."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.service.backends.base import PriceEstimate
from ftcli.service.errors import UsageError

if TYPE_CHECKING:
    from openai.types import FileObject
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    from ftcli.data.training_content import TrainingContent
    from ftcli.service.jobs import JobRequest
    from ftcli.service.models import ModelView

# Together's job statuses → OpenAI's; the original is kept in the job's `backend_status`.
STATUSES = {
    "pending": "queued",
    "queued": "queued",
    "running": "running",
    "compressing": "running",  # training is done; the weights are being packed
    "uploading": "running",
    "cancel_requested": "running",  # not over until Together says cancelled
    "cancelled": "cancelled",
    "error": "failed",
    "completed": "succeeded",
}
DEFAULT_LEARNING_RATE = 1e-5  # Together's default for `learning_rate`: OpenAI's multiplier scales it
# ftcli's names for a backend's own settings (`train -H key=value`) → Together's fields
RENAMED = {"lora_rank": "lora_r", "seed": "random_seed"}
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_trainable_modules")
SFT_FIELDS = ("train_on_inputs",)
DPO_FIELDS = ("rpo_alpha", "dpo_normalize_logratios_by_length", "dpo_reference_free", "simpo_gamma")
# Top-level fields of Together's create request that `-H` may set (its spec; credentials such as wandb_api_key and
# hf_api_token are left out on purpose: ftcli never sends a secret given on a command line).
TOP_LEVEL = (
    "packing", "max_seq_length", "n_checkpoints", "n_evals", "learning_rate", "lr_scheduler", "warmup_ratio",
    "max_grad_norm", "weight_decay", "from_checkpoint", "from_hf_model", "hf_model_revision", "wandb_project_name",
    "wandb_name", "training_type", "multimodal_params",
)  # fmt: skip
# The fields of a create request that Together's price estimate takes
ESTIMATE_FIELDS = (
    "training_file", "validation_file", "model", "n_epochs", "n_evals", "training_method", "training_type",
    "from_checkpoint",
)  # fmt: skip


def made_since(raw: dict[str, Any], body: dict[str, Any], since: float) -> bool:
    """Whether a listed job is one that create `body` may have made: the same model, training file and suffix,
    created at `since` (seconds) or later."""
    same = all(raw.get(key) == body.get(key) for key in ("model", "training_file", "suffix"))
    return same and _epoch(raw.get("created_at")) >= since


def estimate_body(body: dict[str, Any]) -> dict[str, Any]:
    """A create body as the price estimate's (`POST /fine-tunes/estimate-price`) request."""
    return {key: value for key, value in body.items() if key in ESTIMATE_FIELDS}


def price_estimate(answer: Any) -> PriceEstimate | None:
    """The price estimate's answer as ftcli's quote; None when it gave no price."""
    if not isinstance(answer, dict) or answer.get("estimated_total_price") is None:
        return None
    tokens = answer.get("estimated_train_token_count")
    return PriceEstimate(
        total_usd=float(answer["estimated_total_price"]),
        trained_tokens=int(tokens) if isinstance(tokens, int | float) else None,
        allowed=answer.get("allowed_to_proceed") is not False,
        details=answer,
    )


def takes(setting: str) -> bool:
    """Whether Together's create request has a field for this `-H` setting (ftcli's name)."""
    name = RENAMED.get(setting, setting)
    return name in (*LORA_FIELDS, *SFT_FIELDS, *DPO_FIELDS, *TOP_LEVEL)


def create_body(request: JobRequest) -> dict[str, Any]:
    """ftcli's job request as Together's `POST /fine-tunes` body (field names from its spec)."""
    request.validate()
    if request.method == "reinforcement":  # before anything is uploaded: Together trains sft and dpo only
        raise UsageError(
            "Together has no reinforcement fine-tuning (RFT): it trains sft and dpo",
            hint="train it on ftcli's local backend: `ftcli serve`, then `ftcli train --backend local …`",
        )
    extra = {RENAMED.get(key, key): value for key, value in request.extra_hyperparameters.items()}
    if request.method == "dpo":
        method: dict[str, Any] = {"method": "dpo", "dpo_beta": request.beta if request.beta is not None else 0.1}
        method.update({key: extra.pop(key) for key in DPO_FIELDS if key in extra})
    else:
        method = {"method": "sft", "train_on_inputs": extra.pop("train_on_inputs", "auto")}
    lora = {key: extra.pop(key) for key in LORA_FIELDS if key in extra}
    train_vision = extra.pop("train_vision", None)
    if train_vision is not None:  # `-H train_vision=true`: Together's vision option, in its multimodal_params
        if not isinstance(train_vision, bool):
            raise UsageError("train_vision must be true or false", hint="-H train_vision=true")
        given = extra.get("multimodal_params")
        extra["multimodal_params"] = {**(given if isinstance(given, dict) else {}), "train_vision": train_vision}
    training_type = extra.pop("training_type", None)
    if isinstance(training_type, str):  # `-H training_type=full` or `lora`
        if training_type.lower() not in ("full", "lora"):
            raise UsageError("training_type must be full or lora", hint="-H training_type=full")
        training_type = {"type": "Full"} if training_type.lower() == "full" else None
    if training_type is None:
        training_type = {"type": "Lora", "lora_r": lora.get("lora_r", 16), "lora_alpha": lora.get("lora_alpha", 32)}
        training_type.update({k: v for k, v in lora.items() if k not in ("lora_r", "lora_alpha")})
    elif lora:
        raise UsageError("LoRA settings apply to LoRA training", hint="drop training_type=full or the lora_* values")
    unknown = sorted(set(extra) - set(TOP_LEVEL) - {"random_seed"})
    if unknown:
        raise UsageError(
            f"Together has no setting {', '.join(unknown)}",
            hint="settings it takes: "
            + ", ".join(sorted({*TOP_LEVEL, *RENAMED, *LORA_FIELDS, *SFT_FIELDS, *DPO_FIELDS, "train_vision"})),
        )
    body: dict[str, Any] = {
        "model": request.model,
        "training_file": request.training_file,
        "training_method": method,
        "training_type": training_type,
        **extra,
    }
    optional = {
        "validation_file": request.validation_file,
        "n_epochs": request.n_epochs,
        "batch_size": request.batch_size,
        "suffix": request.suffix,
        "random_seed": request.seed,
        "from_checkpoint": request.from_checkpoint,  # a job's model or checkpoint trained further
    }
    if request.from_checkpoint is not None and "from_checkpoint" in body:
        raise UsageError("-H from_checkpoint=... duplicates an option", hint="use --from-checkpoint")
    body.update({key: value for key, value in optional.items() if value is not None})
    if request.learning_rate_multiplier is not None and "learning_rate" not in body:
        body["learning_rate"] = DEFAULT_LEARNING_RATE * request.learning_rate_multiplier
    if request.validation_file and "n_evals" not in body:
        body["n_evals"] = 1  # Together evaluates only when asked; OpenAI reports a validation loss by default
    return body


def content_settings(
    model: str, content: TrainingContent, limits: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """What Together needs to train `content` on `model` as written, from the model's limits
    (`/fine-tunes/models/limits`: `supports_vision`, `supports_reasoning`), as `-H` settings: images train with its
    vision option (`multimodal_params.train_vision`, unless `extra` sets it). Where Together would not train the data
    as written, a UsageError saying why. Reasoning needs no mapping: Together's files take `reasoning_content` as
    it is (https://docs.together.ai/docs/fine-tuning/reasoning)."""
    settings: dict[str, Any] = {}
    if content.images.examples:
        if limits.get("supports_vision") is not True:
            raise UsageError(
                f"{content.images} hold images, and Together does not train {model} on images (its limits don't "
                "list vision): it would learn from the text alone",
                hint="train one of Together's vision models (`ftcli models --trainable`, e.g. "
                "Qwen/Qwen3-VL-8B-Instruct), or leave the images out",
            )
        if "train_vision" not in extra and "multimodal_params" not in extra:
            settings["train_vision"] = True
    if content.reasoning.examples:
        if limits.get("supports_reasoning") is not True:
            raise UsageError(
                f"{content.reasoning} carry reasoning, and Together does not train {model} on reasoning (its limits "
                "don't list it): the traces would not be trained",
                hint="train one of Together's reasoning models (Qwen/Qwen3-*, openai/gpt-oss-*, zai-org/GLM-*), or "
                "leave the reasoning out",
            )
        if content.earlier_reasoning.examples:
            raise UsageError(
                f"{content.earlier_reasoning} carry reasoning on an answer before the conversation's last, and "
                "Together trains a reasoning conversation's last answer only: that reasoning would not be trained",
                hint="split the conversation so each example ends with the answer whose reasoning it trains, or "
                "leave that reasoning out",
            )
    return settings


def limit_problems(body: dict[str, Any], limits: dict[str, Any]) -> list[str]:
    """What in a create request breaks the model's limits (`/fine-tunes/models/limits`), each naming its setting."""
    problems = []
    lora = body.get("training_type", {}).get("type") == "Lora"
    kind = _mapping(limits.get("lora_training" if lora else "full_training"))
    dpo = body.get("training_method", {}).get("method") == "dpo"
    checks: list[tuple[str, Any, Any, Any]] = [
        ("n_epochs", body.get("n_epochs"), 1, limits.get("max_num_epochs")),
        ("n_evals", body.get("n_evals"), 0, limits.get("max_num_evals")),
        ("batch_size", body.get("batch_size"), kind.get("min_batch_size"),
         kind.get("max_batch_size_dpo" if dpo else "max_batch_size")),
        ("lora_rank", body.get("training_type", {}).get("lora_r") if lora else None, 1, kind.get("max_rank")),
        ("learning_rate", body.get("learning_rate"), limits.get("min_learning_rate"), limits.get("max_learning_rate")),
    ]  # fmt: skip
    for name, value, low, high in checks:
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        numbers = [b for b in (low, high) if isinstance(b, int | float)]
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            continue  # limits that contradict themselves say nothing
        if isinstance(low, int | float) and value < low:
            problems.append(f"{name} {value:g} is below its minimum {low:g}")
        if isinstance(high, int | float) and value > high:
            problems.append(f"{name} {value:g} is above its maximum {high:g}")
    return problems


# -- Together's objects as the openai SDK's -------------------------------------------------------------------


def job_object(raw: dict[str, Any]) -> FineTuningJob:
    from openai.types.fine_tuning import FineTuningJob

    status = str(raw.get("status") or "pending")
    mapped = STATUSES.get(status, "running")
    method = _mapping(raw.get("training_method"))
    dpo = method.get("method") == "dpo"
    progress = _mapping(raw.get("progress"))
    remaining = progress.get("seconds_remaining") if progress.get("estimate_available") else None
    hyper = {"n_epochs": raw.get("n_epochs") or "auto", "batch_size": raw.get("batch_size") or "auto"}
    if raw.get("learning_rate") is not None:
        hyper["learning_rate_multiplier"] = float(raw["learning_rate"]) / DEFAULT_LEARNING_RATE
    failure = _failure(raw) if mapped == "failed" else None
    updated = _epoch(raw.get("updated_at"))
    continued: dict[str, Any] = {"parent": _parent(raw)} if raw.get("from_checkpoint") else {}
    return FineTuningJob.model_construct(
        id=str(raw["id"]),
        object="fine_tuning.job",
        created_at=_epoch(raw.get("created_at")),
        error=failure,
        fine_tuned_model=raw.get("model_output_name") if mapped == "succeeded" else None,
        finished_at=updated if mapped in ("succeeded", "failed", "cancelled") and updated else None,
        hyperparameters=hyper,
        model=str(raw.get("model") or ""),
        organization_id=str(raw.get("user_id") or raw.get("owner_address") or "together"),
        result_files=[],
        seed=int(raw.get("random_seed") or 0),
        status=mapped,
        trained_tokens=raw.get("token_count"),
        training_file=str(raw.get("training_file") or ""),
        validation_file=raw.get("validation_file"),
        estimated_finish=int(time.time() + remaining) if isinstance(remaining, int | float) else None,
        method={"type": "dpo" if dpo else "supervised"},
        metadata=None,
        user_provided_suffix=raw.get("suffix"),
        backend_status=status,
        **continued,
    )


def _parent(raw: dict[str, Any]) -> dict[str, Any]:
    """What a job continues (its `from_checkpoint`: `JOB_ID`, `OUTPUT_MODEL_NAME`, either with `:STEP`), in the
    shape of ftcli serve's `parent`."""
    checkpoint = str(raw["from_checkpoint"])
    named, _, step = checkpoint.rpartition(":")
    named = named if named and step.isdigit() else checkpoint
    job = named if named.startswith("ft-") else None
    return {"job_id": job, "model": None if job else named, "checkpoint": checkpoint, "base": raw.get("model")}


def _failure(raw: dict[str, Any]) -> dict[str, Any]:
    events = [e for e in raw.get("events") or [] if isinstance(e, dict)]
    errors = [e for e in events if e.get("type") == "job_error" or e.get("level") == "error"]
    message = str(errors[-1].get("message")) if errors else "the job failed on Together (no error event was given)"
    return {"code": "together_error", "message": message, "param": None}


def event_object(raw: dict[str, Any], index: int) -> FineTuningJobEvent:
    from openai.types.fine_tuning import FineTuningJobEvent

    level = {"warning": "warn", "legacy_iwarning": "warn", "error": "error", "legacy_ierror": "error"}
    created = _epoch(raw.get("created_at"))
    return FineTuningJobEvent.model_construct(
        id=str(raw.get("hash") or f"event-{created}-{index}"),
        object="fine_tuning.job.event",
        created_at=created,
        level=level.get(str(raw.get("level")), "info"),
        message=str(raw.get("message") or raw.get("type") or ""),
        type="message",
        data={"together_type": raw.get("type"), "step": raw.get("step")},
    )


def metric_events(metrics: list[dict[str, Any]]) -> list[FineTuningJobEvent]:
    """Together's metrics snapshots (`train/loss`, `train/global_step`, …) as OpenAI's `metrics` events."""
    from openai.types.fine_tuning import FineTuningJobEvent

    events = []
    for index, snapshot in enumerate(metrics):
        step = snapshot.get("train/global_step", index + 1)
        data: dict[str, Any] = {"step": int(step)}
        if snapshot.get("train/loss") is not None:
            data["train_loss"] = float(snapshot["train/loss"])
        if snapshot.get("eval/loss") is not None:
            data["valid_loss"] = float(snapshot["eval/loss"])
        events.append(
            FineTuningJobEvent.model_construct(
                id=f"metrics-{int(step)}",
                object="fine_tuning.job.event",
                created_at=0,
                level="info",
                message=f"Step {int(step)}",
                type="metrics",
                data=data,
            )
        )
    return events


def checkpoint_object(raw: dict[str, Any], job_id: str) -> FineTuningJobCheckpoint:
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    step = int(raw.get("step") or 0)
    return FineTuningJobCheckpoint.model_construct(
        id=f"{job_id}:{step}",
        object="fine_tuning.job.checkpoint",
        created_at=_epoch(raw.get("created_at")),
        fine_tuned_model_checkpoint=str(raw.get("path") or f"{job_id}:{step}"),
        fine_tuning_job_id=job_id,
        metrics={},
        step_number=step,
        checkpoint_type=raw.get("checkpoint_type"),
    )


def model_views(answer: Any, made_from: dict[str, str], *, fine_tuned_only: bool = False) -> list[ModelView]:
    """`GET /models` (a bare list, or one in `data`) as ftcli's model views; `made_from`: the base of each model
    the account's jobs made (those are the fine-tuned ones)."""
    from ftcli.service.models import ModelView, shutdown_of

    listed = answer if isinstance(answer, list) else _mapping(answer).get("data") or []
    views = []
    for raw in listed:
        if not isinstance(raw, dict) or not raw.get("id"):
            continue
        model_id = str(raw["id"])
        fine_tuned = model_id in made_from
        if fine_tuned_only and not fine_tuned:
            continue
        date, source = shutdown_of(model_id)
        created = raw.get("created")
        views.append(
            ModelView(
                model_id,
                str(raw["organization"]) if raw.get("organization") else None,
                int(created) if isinstance(created, int | float) else None,
                made_from.get(model_id, model_id),
                fine_tuned,
                date,
                source,
            )
        )
    return views


def file_object(raw: dict[str, Any]) -> FileObject:
    from openai.types import FileObject

    return FileObject.model_construct(
        id=str(raw["id"]),
        object="file",
        bytes=int(raw.get("bytes") or 0),
        created_at=int(raw.get("created_at") or 0),
        filename=str(raw.get("filename") or ""),
        purpose=str(raw.get("purpose") or "fine-tune"),
        status="processed" if raw.get("Processed") else "uploaded",
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _epoch(value: Any) -> int:
    """Together writes times as ISO 8601 strings (or, for files, seconds)."""
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value:
        try:
            return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return 0
    return 0


def download_name(response: Any, job_id: str, fmt: str) -> str:
    """The file name Together gives (Content-Disposition), reduced to a plain name; else one of ours."""
    disposition = response.headers.get("content-disposition", "")
    found = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition)
    name = Path(found[1]).name if found else ""
    if not name or name.startswith(".") or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}", name):
        name = f"{job_id}-{fmt}.tar.zst"
    return name


def together_id(job_id: str) -> str:
    if not job_id or not job_id.strip() or "/" in job_id:
        raise UsageError(f"not a Together job id: {job_id!r}")
    return job_id
