"""A job's result files (the per-step metrics CSV) and its loss curve.

OpenAI serves result files base64-encoded; other backends serve the CSV itself. Both are handled.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ftcli.service.errors import translated

if TYPE_CHECKING:
    from openai import OpenAI


@dataclass(frozen=True, slots=True)
class LossPoint:
    step: int
    train_loss: float | None
    valid_loss: float | None
    train_reward_mean: float | None = None  # a reinforcement job's mean reward of the step's answers


def decode_result_file(content: bytes) -> str:
    """The CSV text of a result file, whether it came base64-encoded or plain."""
    stripped = content.strip()
    if stripped and b"," not in stripped[:200]:
        try:
            decoded = base64.b64decode(stripped, validate=True)
            return decoded.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            pass
    return content.decode("utf-8", errors="replace")


def download_results(client: OpenAI, job: Any) -> list[tuple[str, str]]:
    """(file id, CSV text) for each of the job's result files."""
    found = []
    for file_id in job.result_files or []:
        with translated():
            content = client.files.content(file_id).read()
        found.append((file_id, decode_result_file(content)))
    return found


def loss_from_csv(text: str) -> list[LossPoint]:
    points = []
    for row in csv.DictReader(io.StringIO(text)):
        step = _number(row.get("step"))
        if step is None:
            continue
        losses = _number(row.get("train_loss")), _number(row.get("valid_loss"))
        points.append(LossPoint(int(step), *losses, _number(row.get("train_reward_mean"))))
    return points


def loss_from_events(events: list[Any]) -> list[LossPoint]:
    points = []
    for event in events:
        data = event.data if isinstance(getattr(event, "data", None), dict) else None
        if event.type == "metrics" and data and "step" in data:
            losses = _number(data.get("train_loss")), _number(data.get("valid_loss"))
            points.append(LossPoint(int(data["step"]), *losses, _number(data.get("train_reward_mean"))))
    return sorted(points, key=lambda p: p.step)


def _number(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None
