"""OpenAI's `after` cursor over a list the store already ordered: one rule for every list route."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def after(items: Sequence[T], cursor: str | None, id_of: Callable[[T], str]) -> list[T]:
    """The items that come after the one whose id is `cursor`: all of them without a cursor, none when no item has
    that id (a deleted or foreign id ends the paging rather than start it over)."""
    if not cursor:
        return list(items)
    ids = [id_of(item) for item in items]
    return list(items[ids.index(cursor) + 1 :]) if cursor in ids else []
