"""Fixtures of the local backend's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ftcli/tiny's folder, built once per session (random weights, offline tokenizer)."""
    from ftcli.data.local_bases import TINY_NAME
    from ftcli.server.bases import resolve_base

    return resolve_base(TINY_NAME, tmp_path_factory.mktemp("data"))
