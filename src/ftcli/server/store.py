"""The local backend's state: SQLite (WAL) for files, uploads, jobs, events, checkpoints and models; file bytes
stored content-addressed under the data directory, written atomically (temp file + rename), so a crash never
leaves a partial file that looks complete.

Append-only migrations: each entry runs once, in order, recorded in `PRAGMA user_version`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ftcli.data.digests import Digests
from ftcli.server.file_lock import exclusive
from ftcli.server.protocol.jobs import FineTuningJob, JobStatus

MIGRATIONS = [
    """
    CREATE TABLE files (id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, filename TEXT NOT NULL,
                        purpose TEXT NOT NULL, created_at INTEGER NOT NULL, status TEXT NOT NULL);
    CREATE TABLE uploads (id TEXT PRIMARY KEY, filename TEXT NOT NULL, purpose TEXT NOT NULL, bytes INTEGER NOT NULL,
                          mime_type TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
                          status TEXT NOT NULL, file_id TEXT);
    CREATE TABLE upload_parts (id TEXT PRIMARY KEY, upload_id TEXT NOT NULL, sha256 TEXT NOT NULL,
                               bytes INTEGER NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE jobs (id TEXT PRIMARY KEY, body TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL,
                         created_at INTEGER NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL, type TEXT NOT NULL,
                         data TEXT);
    CREATE INDEX events_job ON events (job_id, seq);
    CREATE TABLE checkpoints (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, created_at INTEGER NOT NULL,
                              step_number INTEGER NOT NULL, metrics TEXT NOT NULL, model TEXT NOT NULL,
                              path TEXT NOT NULL);
    CREATE TABLE models (id TEXT PRIMARY KEY, created INTEGER NOT NULL, base TEXT NOT NULL, adapter TEXT,
                         job_id TEXT);
    """,
]


class ChecksumMismatch(ValueError):
    pass


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


MAX_IDLE_CONNECTIONS = 4


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


class Store:
    def __init__(self, data_dir: Path, *, clean: bool = True) -> None:
        """`clean`: the server's own store removes what a crash left; a job's worker (which runs beside a live
        server's uploads) passes False."""
        self.data_dir = data_dir
        self.blobs = data_dir / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        if clean:  # the server's own store: its data is the user's alone, whatever the folder's mode was before
            data_dir.chmod(0o700)
        # Bytes of uploads cut off by a crash (kill -9 included): never visible as files, removed at start.
        for leftover in self.blobs.glob(".incoming.*") if clean else ():
            leftover.unlink(missing_ok=True)
        self.path = data_dir / "ftcli.sqlite3"
        self._idle: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                db.executescript(script)
                db.execute(f"PRAGMA user_version = {number}")
        if clean:
            self._clean_uploads()
            for database in (self.path, *self.path.parent.glob(self.path.name + "-*")):  # the WAL and its index
                database.chmod(0o600)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection from a small pool: borrowed for one statement or transaction, then returned, so a burst of
        requests on many threads leaves at most MAX_IDLE_CONNECTIONS open (not one per thread ever seen)."""
        with self._pool_lock:
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 30000")
        try:
            yield db
        finally:
            with self._pool_lock:
                if len(self._idle) < MAX_IDLE_CONNECTIONS:
                    self._idle.append(db)
                    db = None
            if db is not None:
                db.close()

    def _clean_uploads(self) -> None:
        """Parts of uploads that can no longer complete (completed, cancelled, expired) and the bytes of parts
        cut off by a crash. Earlier versions kept parts among the blobs: those not also a file go too."""
        self._execute("UPDATE uploads SET status = 'expired' WHERE status = 'pending' AND expires_at < ?", (now(),))
        pending = {row["id"] for row in self._all("SELECT id FROM uploads WHERE status = 'pending'")}
        for folder in (self.data_dir / "uploads").glob("upload-*"):
            if folder.name not in pending:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                for leftover in folder.glob(".incoming.*"):
                    leftover.unlink(missing_ok=True)
        legacy = self._all(
            "SELECT DISTINCT sha256 FROM upload_parts WHERE sha256 != '' AND sha256 NOT IN (SELECT sha256 FROM files)"
        )
        for row in legacy:
            self.blob_path(row["sha256"]).unlink(missing_ok=True)
        self._execute("UPDATE upload_parts SET sha256 = '' WHERE sha256 != ''")

    # -- blobs --------------------------------------------------------------------------------------------

    def add_file(
        self, stream: Readable, *, limit: int, filename: str, purpose: str, md5: str | None = None
    ) -> sqlite3.Row:
        """Copy a stream into the content-addressed store and add its file row; refuses past `limit` bytes, and
        (ChecksumMismatch) when `md5` is given and the bytes' md5 differs (hashed beside the sha256)."""
        with Digests(md5=md5 is not None) as digests:
            temp, size = self._copy_in(stream, self.blobs, limit, digests)
            sha, md5_hex = digests.hexdigests()
        try:
            if md5 is not None and md5_hex != md5:
                raise ChecksumMismatch("md5 does not match the uploaded bytes")
            file_id = new_id("file")
            # The rename and the row together, so that a delete of the last file with these bytes can't remove
            # them between the two (see delete_file).
            with self._blobs_locked():
                os.replace(temp, self.blob_path(sha))
                self._execute(
                    "INSERT INTO files (id, sha256, bytes, filename, purpose, created_at, status) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (file_id, sha, size, filename, purpose, now(), "processed"),
                )
        finally:
            temp.unlink(missing_ok=True)
        row = self.file(file_id)
        assert row is not None
        return row

    def file(self, file_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM files WHERE id = ?", (file_id,))

    def files(self, *, ascending: bool = False) -> list[sqlite3.Row]:
        direction = "ASC" if ascending else "DESC"
        return self._all(f"SELECT * FROM files ORDER BY created_at {direction}, rowid {direction}")

    def delete_file(self, file_id: str) -> bool:
        """Remove a file's row, and its bytes when no other file holds the same bytes; False if there was none."""
        with self._blobs_locked():
            row = self.file(file_id)
            if row is None:
                return False
            self._execute("DELETE FROM files WHERE id = ?", (file_id,))
            if self._one("SELECT 1 FROM files WHERE sha256 = ? LIMIT 1", (row["sha256"],)) is None:
                self.blob_path(row["sha256"]).unlink(missing_ok=True)
        return True

    @contextmanager
    def _blobs_locked(self) -> Iterator[None]:
        """One writer of blob rows at a time, across the server's threads and the jobs' worker processes."""
        with exclusive(self.data_dir / "blobs.lock"):
            yield

    # -- models -------------------------------------------------------------------------------------------

    def add_model(self, model_id: str, *, base: str, adapter: Path, job_id: str) -> None:
        self._execute(
            "INSERT OR REPLACE INTO models (id, created, base, adapter, job_id) VALUES (?,?,?,?,?)",
            (model_id, now(), base, str(adapter), job_id),
        )

    def model(self, model_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM models WHERE id = ?", (model_id,))

    def models(self) -> list[sqlite3.Row]:
        return self._all("SELECT * FROM models ORDER BY created")

    def delete_model(self, model_id: str) -> Path | None:
        """Remove a fine-tuned model's row and its adapter's files (kept only while another row names them);
        returns the adapter folder it named, or None if there was no such model."""
        row = self.model(model_id)
        if row is None:
            return None
        self._execute("DELETE FROM models WHERE id = ?", (model_id,))
        adapter = Path(row["adapter"])
        shared = self._one("SELECT 1 FROM models WHERE adapter = ? LIMIT 1", (row["adapter"],)) is not None
        runs = (self.data_dir / "runs").resolve()
        if not shared and adapter.resolve().is_relative_to(runs):  # only ever what a job of this server wrote
            shutil.rmtree(adapter, ignore_errors=True)
        return adapter

    def put_part(self, upload_id: str, part_id: str, stream: Readable, *, limit: int) -> int:
        """One part of an Upload, kept apart from the files (removed when the upload completes or is cancelled,
        so a multipart upload doesn't hold its bytes twice); returns its size."""
        folder = self._parts_folder(upload_id)
        folder.mkdir(parents=True, exist_ok=True)
        temp, size = self._copy_in(stream, folder, limit, None)
        os.replace(temp, folder / part_id)
        return size

    def part_path(self, upload_id: str, part_id: str) -> Path:
        if not part_id.startswith("part-") or not part_id[5:].isalnum():
            raise ValueError("not a part id")
        return self._parts_folder(upload_id) / part_id

    def drop_parts(self, upload_id: str) -> None:
        shutil.rmtree(self._parts_folder(upload_id), ignore_errors=True)

    def _parts_folder(self, upload_id: str) -> Path:
        if not upload_id.startswith("upload-") or not upload_id[7:].isalnum():
            raise ValueError("not an upload id")  # ids come from new_id, never from users' paths
        return self.data_dir / "uploads" / upload_id

    def _copy_in(self, stream: Readable, folder: Path, limit: int, digests: Digests | None) -> tuple[Path, int]:
        """Stream into a durable temp file in `folder` (renamed by the caller); refuses past `limit` bytes."""
        size = 0
        handle, temp = tempfile.mkstemp(dir=folder, prefix=".incoming.")
        try:
            with os.fdopen(handle, "wb") as sink:
                while block := stream.read(1 << 20):
                    size += len(block)
                    if size > limit:
                        raise ValueError(f"file is larger than the {limit:,}-byte limit")
                    if digests is not None:
                        digests.update(block)
                    sink.write(block)
                sink.flush()
                os.fsync(sink.fileno())
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return Path(temp), size

    def blob_path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a content hash")  # names never come from users: no way out of the data dir
        return self.blobs / sha256

    # -- uploads ------------------------------------------------------------------------------------------

    def add_upload(self, *, filename: str, purpose: str, size: int, mime_type: str, lifetime: int) -> sqlite3.Row:
        upload_id = new_id("upload")
        self._execute(
            "INSERT INTO uploads (id, filename, purpose, bytes, mime_type, created_at, expires_at, status) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (upload_id, filename, purpose, size, mime_type, now(), now() + lifetime, "pending"),
        )
        row = self.upload(upload_id)
        assert row is not None
        return row

    def upload(self, upload_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM uploads WHERE id = ?", (upload_id,))

    def set_upload_status(self, upload_id: str, status: str, *, file_id: str | None = None) -> sqlite3.Row:
        self._execute("UPDATE uploads SET status = ?, file_id = ? WHERE id = ?", (status, file_id, upload_id))
        row = self.upload(upload_id)
        assert row is not None
        return row

    def add_part_row(self, upload_id: str, part_id: str, size: int) -> None:
        self._execute(  # sha256 stays empty: parts are kept by upload and part id, not by content
            "INSERT INTO upload_parts (id, upload_id, sha256, bytes, created_at) VALUES (?,?,?,?,?)",
            (part_id, upload_id, "", size, now()),
        )

    def part(self, upload_id: str, part_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM upload_parts WHERE id = ? AND upload_id = ?", (part_id, upload_id))

    def parts_bytes(self, upload_id: str) -> int:
        row = self._one("SELECT COALESCE(SUM(bytes), 0) AS n FROM upload_parts WHERE upload_id = ?", (upload_id,))
        return int(row["n"]) if row else 0

    # -- checkpoints --------------------------------------------------------------------------------------

    def add_checkpoint(
        self, job_id: str, *, step: int, metrics: dict[str, Any], model: str, path: Path, keep: int
    ) -> None:
        """A job's checkpoint; only its `keep` latest stay listed."""
        self._execute(
            "INSERT INTO checkpoints (id, job_id, created_at, step_number, metrics, model, path) "
            "VALUES (?,?,?,?,?,?,?)",
            (new_id("ftckpt"), job_id, now(), step, json.dumps(metrics), model, str(path)),
        )
        self._execute(
            "DELETE FROM checkpoints WHERE job_id = ? AND id NOT IN (SELECT id FROM checkpoints WHERE "
            "job_id = ? ORDER BY step_number DESC LIMIT ?)",
            (job_id, job_id, keep),
        )

    def checkpoint_named(self, model: str) -> dict[str, Any] | None:
        """The checkpoint listed under this model name (`…:ckpt-step-N`), `metrics` decoded; None if none is."""
        row = self._one("SELECT * FROM checkpoints WHERE model = ?", (model,))
        return {**dict(row), "metrics": json.loads(row["metrics"])} if row else None

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """Newest first; `metrics` decoded."""
        rows = self._all("SELECT * FROM checkpoints WHERE job_id = ? ORDER BY step_number DESC", (job_id,))
        return [{**dict(row), "metrics": json.loads(row["metrics"])} for row in rows]

    # -- rows ---------------------------------------------------------------------------------------------

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self.connect() as db:
            db.execute(sql, tuple(params))

    def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        with self.connect() as db:
            row: sqlite3.Row | None = db.execute(sql, tuple(params)).fetchone()
        return row

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self.connect() as db:
            return list(db.execute(sql, tuple(params)).fetchall())

    # -- jobs ---------------------------------------------------------------------------------------------

    def save_job(self, job: dict[str, Any]) -> None:
        self._execute(
            "INSERT INTO jobs (id, body, status, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET body = excluded.body, status = excluded.status",
            (job["id"], json.dumps(job), job["status"], job["created_at"]),
        )

    def job(self, job_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT body FROM jobs WHERE id = ?", (job_id,))
        return dict(json.loads(row["body"])) if row else None

    def update_job(self, job_id: str, **changes: Any) -> dict[str, Any]:
        """Fields of a job that keep its status (its estimated finish); a change of status is a `transition`."""
        return self._change_job(job_id, changes, None)

    def transition(
        self, job_id: str, status: JobStatus, event: str, *, level: str = "info", **changes: Any
    ) -> FineTuningJob:
        """A job's new status (with `changes`) and the event that tells it, written together: a reader never sees
        the one without the other."""
        job = self._change_job(job_id, {**changes, "status": status}, (event, level))
        return FineTuningJob.model_validate(job)

    def fail_job(self, job_id: str, code: str, message: str, *, param: str | None = None) -> FineTuningJob:
        """The one way a job fails: `failed`, finished now, no estimated finish, OpenAI's error (`param`: the
        request field to change, if any) and an error event with the same words."""
        error = {"code": code, "message": message, "param": param}
        return self.transition(
            job_id, "failed", message, level="error", finished_at=now(), estimated_finish=None, error=error
        )

    def _change_job(self, job_id: str, changes: dict[str, Any], event: tuple[str, str] | None) -> dict[str, Any]:
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT body FROM jobs WHERE id = ?", (job_id,)).fetchone()
                job: dict[str, Any] = json.loads(row["body"])
                job.update(changes)
                db.execute(
                    "UPDATE jobs SET body = ?, status = ? WHERE id = ?", (json.dumps(job), job["status"], job_id)
                )
                if event is not None:
                    self._insert_event(db, job_id, event[0], level=event[1], type_="message", data=None)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return job

    def jobs(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self._all("SELECT body FROM jobs ORDER BY created_at DESC, rowid DESC")]

    def add_event(
        self,
        job_id: str,
        message: str,
        *,
        level: str = "info",
        type_: str = "message",
        data: dict[str, Any] | None = None,
    ) -> None:
        with self.connect() as db:
            self._insert_event(db, job_id, message, level=level, type_=type_, data=data)

    @staticmethod
    def _insert_event(
        db: sqlite3.Connection, job_id: str, message: str, *, level: str, type_: str, data: dict[str, Any] | None
    ) -> None:
        db.execute(
            "INSERT INTO events (id, job_id, created_at, level, message, type, data) VALUES (?,?,?,?,?,?,?)",
            (new_id("ftevent"), job_id, now(), level, message, type_, json.dumps(data) if data else None),
        )

    def events(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM events WHERE job_id = ? ORDER BY seq DESC", (job_id,))
        return [
            {
                "id": r["id"],
                "created_at": r["created_at"],
                "level": r["level"],
                "message": r["message"],
                "type": r["type"],
                "data": json.loads(r["data"]) if r["data"] else {},
            }
            for r in rows
        ]
