"""Eval runs posted by `ftcli eval` to this server, one JSON file each under the data dir (`evals/<id>.json`, written
atomically), listed newest first for the web page. Ids are made here and checked before any path is built."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

from ftcli.data.atomic import write_atomic
from ftcli.server.protocol.evals import EvalReport

KEEP = 200  # runs listed (older files stay on disk)
EVAL_ID = re.compile(r"eval-[0-9a-f]{16}")


def save_eval(data_dir: Path, report: EvalReport, rows: list[dict[str, Any]]) -> dict[str, Any]:
    folder = data_dir / "evals"
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "id": f"eval-{secrets.token_hex(8)}",
        "created_at": int(time.time()),
        **report.model_dump(mode="json"),
        "rows": rows,
    }
    write_atomic(folder / f"{record['id']}.json", json.dumps(record, ensure_ascii=False).encode())
    return record


def list_evals(data_dir: Path) -> list[dict[str, Any]]:
    folder = data_dir / "evals"
    found = []
    for path in sorted(folder.glob("eval-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:KEEP]:
        record = _read(path)
        if record is not None:
            found.append({key: value for key, value in record.items() if key != "rows"})
    return found


def load_eval(data_dir: Path, eval_id: str) -> dict[str, Any] | None:
    if not EVAL_ID.fullmatch(eval_id):
        return None
    return _read(data_dir / "evals" / f"{eval_id}.json")


def delete_eval(data_dir: Path, eval_id: str) -> bool:
    """Removes a run's file; False when no run has this id."""
    if not EVAL_ID.fullmatch(eval_id):
        return False
    try:
        (data_dir / "evals" / f"{eval_id}.json").unlink()
    except FileNotFoundError:
        return False
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
