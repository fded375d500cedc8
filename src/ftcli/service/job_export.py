"""`ftcli export`: fine-tuning jobs brought out of a backend before it goes away (a job's data; a model's files from
`ftcli serve` are service/model_export.py's): the job object, all events, checkpoints, the training and validation
files, the decoded result CSVs, and `manifest.json` tying them together with sizes and sha256. Nothing is deleted
remotely.

Layout: `OUT/manifest.json` and, per job, `OUT/<job-id>/` with `job.json`, `events.jsonl` (oldest first),
`checkpoints.json`, `files/<file-id>-<name>`, `results/<file-id>.csv` and, with `--weights` where the backend gives
them out (Together), `weights/<archive>` unpacked into `weights/<adapter|merged>/`. Every file is written atomically and
recorded in the manifest as soon as it is complete, so an interrupted export resumes: files already there are
verified against their recorded sha256 and only missing or damaged ones are fetched again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcli.data.convert.writer import write_bytes_atomic
from ftcli.data.digests import file_sha256
from ftcli.data.hyperparameters import all_openai_keys
from ftcli.service.errors import BackendError, UsageError
from ftcli.service.results import decode_result_file
from ftcli.service.weights_archive import WeightsLimits, unpack_weights

if TYPE_CHECKING:
    from ftcli.service.backends.base import Backend, WeightsFormat
    from ftcli.service.files import ProgressCallback

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ExportStep:
    """One artifact: fetched now, or already there and verified (`verified`)."""

    job_id: str
    path: str  # relative to the export folder
    bytes: int
    verified: bool


@dataclass(frozen=True, slots=True)
class ExportSummary:
    folder: Path
    jobs: int
    fetched: int
    verified: int


class Manifest:
    """`manifest.json`: per job, every artifact with its size, sha256 and where it came from."""

    def __init__(self, folder: Path, backend: dict[str, str | None]) -> None:
        self.folder = folder
        self.path = folder / MANIFEST
        data: dict[str, Any] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except ValueError:
                data = {}  # damaged: every artifact is verified from scratch against the backend
        self.data: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "backend": backend,
            "exported_at": data.get("exported_at"),
            "jobs": data.get("jobs", {}),
        }

    def entry(self, job_id: str, relative: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.data["jobs"].get(job_id, {}).get("artifacts", {}).get(relative)
        return found

    def record(self, job_id: str, relative: str, size: int, sha256: str, source: str) -> None:
        job = self.data["jobs"].setdefault(job_id, {"artifacts": {}})
        job["artifacts"][relative] = {"bytes": size, "sha256": sha256, "source": source}
        self.save()

    def describe_job(self, job_id: str, **facts: Any) -> None:
        self.data["jobs"].setdefault(job_id, {"artifacts": {}}).update(facts)
        self.save()

    def save(self) -> None:
        self.data["exported_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        write_bytes_atomic(self.path, (json.dumps(self.data, indent=2, ensure_ascii=False) + "\n").encode())


def export_jobs(
    backend: Backend,
    folder: Path,
    *,
    described: dict[str, str | None],
    job_ids: list[str] | None = None,
    weights: WeightsFormat | None = None,
    on_bytes: ProgressCallback | None = None,
    limits: WeightsLimits | None = None,
) -> Iterator[ExportStep]:
    """Export every job (or the named ones), yielding each artifact as it is fetched or verified; with `weights`,
    each finished job's model too, where the backend gives it out (Together), within `limits`."""
    if weights is not None:
        backend.check_weights(weights)  # before anything is fetched
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(folder, described)
    for job in backend.iter_jobs(job_ids):
        yield from _export_job(backend, manifest, job)
        if weights is not None and job.status == "succeeded":
            job_id = _safe_id("job", job.id)
            yield _fetch_weights(backend, manifest, job_id, weights, on_bytes, limits or WeightsLimits())


def summarise(folder: Path, steps: list[ExportStep]) -> ExportSummary:
    return ExportSummary(
        folder,
        len({s.job_id for s in steps}),
        sum(not s.verified for s in steps),
        sum(s.verified for s in steps),
    )


def _export_job(backend: Backend, manifest: Manifest, job: Any) -> Iterator[ExportStep]:
    job_id = _safe_id("job", job.id)
    base = f"{job_id}/"
    manifest.describe_job(
        job_id,
        status=job.status,
        model=job.model,
        fine_tuned_model=job.fine_tuned_model,
        method=(job.method.type if job.method else "supervised"),
    )
    # The job itself and its events and checkpoints change while it runs: always written fresh.
    yield _put(manifest, job_id, base + "job.json", _json(job.model_dump(mode="json")), f"job {job_id}")
    events = backend.all_events(job_id)
    lines = "".join(json.dumps(e.model_dump(mode="json"), ensure_ascii=False) + "\n" for e in events)
    yield _put(manifest, job_id, base + "events.jsonl", lines.encode(), f"events of {job_id}")
    checkpoints = [c.model_dump(mode="json") for c in backend.list_checkpoints(job_id, limit=100)]
    yield _put(manifest, job_id, base + "checkpoints.json", _json(checkpoints), f"checkpoints of {job_id}")
    for key in ("training_file", "validation_file"):
        file_id = getattr(job, key, None)
        if file_id:
            yield _fetch_file(backend, manifest, job_id, _safe_id("file", file_id), role=key)
    for file_id in [_safe_id("file", value) for value in job.result_files or []]:
        relative = f"{base}results/{file_id}.csv"
        kept = _verified(manifest, job_id, relative)
        if kept is not None:
            yield kept
            continue
        text = decode_result_file(backend.file_content(file_id))
        yield _put(manifest, job_id, relative, text.encode(), f"file {file_id} (result, decoded)")


def _fetch_file(backend: Backend, manifest: Manifest, job_id: str, file_id: str, *, role: str) -> ExportStep:
    """A job's data file, named after its id and original name; fetched once, verified on later runs."""
    recorded = [
        (relative, entry)
        for relative, entry in manifest.data["jobs"].get(job_id, {}).get("artifacts", {}).items()
        if entry.get("source") == f"file {file_id} ({role})"
    ]
    for relative, _entry in recorded:
        kept = _verified(manifest, job_id, relative)
        if kept is not None:
            return kept
    name = Path(backend.file_name(file_id) or "data.jsonl").name or "data.jsonl"
    relative = f"{job_id}/files/{file_id}-{name}"
    return _put(manifest, job_id, relative, backend.file_content(file_id), f"file {file_id} ({role})")


def _fetch_weights(
    backend: Backend,
    manifest: Manifest,
    job_id: str,
    fmt: WeightsFormat,
    on_bytes: ProgressCallback | None,
    limits: WeightsLimits,
) -> ExportStep:
    """A finished job's model (`weights/<name>`), streamed to a `.part` file that a later run continues, checked
    by sha256 once whole, and unpacked beside it (`weights/<fmt>/`) for `ftcli serve --model-dir`. An archive the
    unpacking refuses (service/weights_archive) is deleted too: nothing of it stays."""
    source = f"weights ({fmt})"
    for relative, entry in manifest.data["jobs"].get(job_id, {}).get("artifacts", {}).items():
        if entry.get("source") == source and (kept := _verified(manifest, job_id, relative)) is not None:
            return kept
    weights = _inside(manifest, f"{job_id}/weights")
    weights.mkdir(parents=True, exist_ok=True)
    partial = weights / f"{fmt}.part"
    fetched = backend.download_weights(job_id, fmt, partial, on_progress=on_bytes, max_bytes=limits.max_bytes)
    name = _safe_id("file", fetched)
    relative = f"{job_id}/weights/{name}"
    archive = _inside(manifest, relative)
    partial.replace(archive)
    size, sha256 = archive.stat().st_size, file_sha256(archive)
    try:
        folder = unpack_weights(archive, weights / fmt, limits)
    except BackendError:
        archive.unlink(missing_ok=True)
        raise
    manifest.record(job_id, relative, size, sha256, source)
    if folder is not None:
        manifest.describe_job(job_id, weights={fmt: {"archive": relative, "folder": f"{job_id}/weights/{fmt}"}})
    return ExportStep(job_id, relative, size, verified=False)


# Ids come from the backend and become folder and file names: only plain names, never a path ("../x", "/etc").
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,255}")


def _safe_id(kind: str, value: str) -> str:
    if not SAFE_ID.fullmatch(value) or ".." in value:
        raise BackendError(f"the backend returned a {kind} id that can't be a file name: {value!r}; nothing written")
    return value


def _inside(manifest: Manifest, relative: str) -> Path:
    """The export's path for `relative`, which must stay inside the export folder whatever the backend said."""
    folder = manifest.folder.resolve()
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder) or path == folder:
        raise BackendError(f"refusing to write {relative!r}: it would land outside {manifest.folder}")
    return path


def _verified(manifest: Manifest, job_id: str, relative: str) -> ExportStep | None:
    entry = manifest.entry(job_id, relative)
    path = _inside(manifest, relative)
    if entry is None or not path.is_file() or path.stat().st_size != entry["bytes"]:
        return None
    if file_sha256(path) != entry["sha256"]:
        return None  # damaged: fetched again
    return ExportStep(job_id, relative, entry["bytes"], verified=True)


def _put(manifest: Manifest, job_id: str, relative: str, data: bytes, source: str) -> ExportStep:
    write_bytes_atomic(_inside(manifest, relative), data)
    manifest.record(job_id, relative, len(data), hashlib.sha256(data).hexdigest(), source)
    return ExportStep(job_id, relative, len(data), verified=False)


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


# -- reading an export back ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportedJob:
    folder: Path
    job: dict[str, Any]
    training_file: Path
    validation_file: Path | None

    @property
    def method(self) -> str:
        kind = (self.job.get("method") or {}).get("type") or "supervised"
        return kind if kind in ("dpo", "reinforcement") else "sft"

    @property
    def grader(self) -> dict[str, Any] | None:
        """A reinforcement job's grader, as the backend reports it (re-run with the job's data)."""
        method = self.job.get("method") or {}
        grader = (method.get("reinforcement") or {}).get("grader") if method.get("type") == "reinforcement" else None
        return grader if isinstance(grader, dict) else None

    def hyperparameters(self) -> dict[str, Any]:
        """The exported job's hyperparameters, as numbers where the backend resolved them ("auto" dropped)."""
        method = self.job.get("method") or {}
        kind = method.get("type") or "supervised"
        found = dict(((method.get(kind) or {}).get("hyperparameters")) or self.job.get("hyperparameters") or {})
        return {k: v for k, v in found.items() if v not in (None, "auto")}

    def carried_parameters(self, backend_kind: str) -> dict[str, Any]:
        """The hyperparameters mapped for the target backend (`Settings.kind`)."""
        return _carried(self.hyperparameters(), backend_kind)

    def link(self) -> dict[str, Any]:
        """What a new run manifest records of the job it re-trains."""
        manifest = self.folder.parent / MANIFEST
        backend = json.loads(manifest.read_text(encoding="utf-8")).get("backend") if manifest.exists() else None
        return {
            "job_id": self.job.get("id"),
            "model": self.job.get("model"),
            "fine_tuned_model": self.job.get("fine_tuned_model"),
            "backend": backend,
            "export": str(self.folder.resolve()),
            "training_file": str(self.training_file),
            "hyperparameters": self.hyperparameters(),
        }


# What each kind of backend accepts: OpenAI and Azure take OpenAI's hyperparameters within its bounds; Together the
# settings its create request has a field for (together_wire's mapping); other OpenAI-compatible servers (ftcli's
# own included) also take the rest (e.g. lora_rank, an RFT job's samples_per_prompt).
OPENAI_HYPERPARAMETERS = all_openai_keys()  # n_epochs, batch_size, learning_rate_multiplier, beta, eval_interval, …
OPENAI_MAX_EPOCHS = 50


def _carried(hyperparameters: dict[str, Any], backend_kind: str) -> dict[str, Any]:
    carried = dict(hyperparameters)
    if backend_kind in ("openai", "azure"):
        carried = {k: v for k, v in carried.items() if k in OPENAI_HYPERPARAMETERS}
    elif backend_kind == "together":
        from ftcli.service.backends.together_wire import takes

        carried = {k: v for k, v in carried.items() if k in OPENAI_HYPERPARAMETERS or takes(k)}
    if isinstance(carried.get("n_epochs"), int):
        carried["n_epochs"] = min(carried["n_epochs"], OPENAI_MAX_EPOCHS)
    return carried


def load_export(path: Path, *, verify: Callable[[Path], str] = file_sha256) -> ExportedJob:
    """An exported job folder (`OUT/<job-id>`), its data files checked against the manifest."""
    folder = path if (path / "job.json").exists() else None
    if folder is None:
        raise UsageError(f"{path} is not an exported job", hint="point at OUT/<job-id> of `ftcli export --out OUT`")
    job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    manifest_path = folder.parent / MANIFEST
    artifacts: dict[str, Any] = {}
    if manifest_path.exists():
        jobs = json.loads(manifest_path.read_text(encoding="utf-8"))["jobs"]
        artifacts = jobs.get(job["id"], {}).get("artifacts", {})
    found: dict[str, Path] = {}
    for relative, entry in artifacts.items():
        for role in ("training_file", "validation_file"):
            if entry.get("source", "").endswith(f"({role})"):
                file = folder.parent / relative
                if not file.is_file() or verify(file) != entry["sha256"]:
                    raise UsageError(f"{file} is missing or damaged", hint="run `ftcli export` again to repair it")
                found[role] = file
    if "training_file" not in found:
        raise UsageError(f"{folder}: the export holds no training file", hint="run `ftcli export` again")
    return ExportedJob(folder, job, found["training_file"], found.get("validation_file"))
