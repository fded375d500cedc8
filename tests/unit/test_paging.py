"""OpenAI's `after` cursor, the one rule every list route of `ftcli serve` pages by (server/api/paging.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the local backend needs the `local` extra (scripts/test installs it)")

from ftcli.server.api.paging import after  # noqa: E402

ITEMS = [{"id": f"x-{n}"} for n in range(5)]


def _ids(items: list[dict[str, str]]) -> list[str]:
    return [item["id"] for item in items]


@pytest.mark.parametrize("cursor", [None, ""])
def test_without_a_cursor_every_item_in_order(cursor: str | None) -> None:
    assert _ids(after(ITEMS, cursor, lambda i: i["id"])) == _ids(ITEMS)


def test_the_items_after_the_cursor_and_none_after_the_last() -> None:
    assert _ids(after(ITEMS, "x-1", lambda i: i["id"])) == ["x-2", "x-3", "x-4"]
    assert after(ITEMS, "x-4", lambda i: i["id"]) == []


def test_an_unknown_cursor_ends_the_paging_rather_than_start_over() -> None:
    assert after(ITEMS, "x-deleted", lambda i: i["id"]) == []
