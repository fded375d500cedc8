"""An export is built once, whatever asks for it at the same time: two requests for one export (two users, or a
retry while the first still builds) share one build instead of deleting each other's half-written folder."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")

from ftcli.server import model_export  # noqa: E402
from ftcli.server.model_export import Exported, export_model  # noqa: E402
from ftcli.server.store import Store  # noqa: E402

pytestmark = [pytest.mark.local]
MODEL = "ft:ftcli/tiny:local::ftjob-1"


def test_two_requests_for_one_export_at_once_share_one_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "data")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    store.add_model(MODEL, base="ftcli/tiny", adapter=adapter, job_id="ftjob-1")
    monkeypatch.setattr(model_export, "resolve_base", lambda _name, _data_dir: tmp_path / "base")
    building, release = threading.Event(), threading.Event()
    builds: list[Path] = []

    def slow_build(out: Path, *_args: Any) -> str:
        builds.append(out)
        building.set()
        release.wait(timeout=30)  # a long conversion, still writing when the second request comes
        (out / "adapter_model.safetensors").write_bytes(b"weights")
        return ""

    monkeypatch.setattr(model_export, "_build", slow_build)
    results: list[Exported] = []
    errors: list[BaseException] = []

    def export() -> None:
        try:
            results.append(export_model(store, MODEL, "adapter"))
        except BaseException as exc:  # noqa: BLE001 (the test reports it)
            errors.append(exc)

    first = threading.Thread(target=export)
    first.start()
    assert building.wait(timeout=30)
    second = threading.Thread(target=export)
    second.start()
    second.join(timeout=0.5)  # it waits for the first build (without the lock it starts its own and removes ours)
    release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert not errors, errors
    assert len(builds) == 1
    (one, two) = results
    assert one.id == two.id and one.files == two.files
    assert (one.folder / "adapter_model.safetensors").read_bytes() == b"weights"
    assert sorted(path.name for path in one.folder.parent.iterdir() if path.name.endswith(".tmp")) == []
