"""server/file_lock.py: the lock file that the store's blob writers and the base builders share (issue 24, point 5)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ftcli.server.file_lock import exclusive


def test_one_holder_at_a_time_and_the_next_goes_in_when_it_leaves(tmp_path: Path) -> None:
    lock = tmp_path / "blobs.lock"
    lock.write_text("kept")
    order: list[str] = []
    held, leave = threading.Event(), threading.Event()

    def first() -> None:
        with exclusive(lock):
            order.append("first in")
            held.set()
            leave.wait(30)
            order.append("first out")

    def second() -> None:
        held.wait(30)
        with exclusive(lock):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert held.wait(30)
    time.sleep(0.3)  # time for the second to get in, were the lock not held
    assert order == ["first in"]
    leave.set()
    for thread in threads:
        thread.join(30)
    assert order == ["first in", "first out", "second in"]
    assert lock.read_text() == "kept"  # a lock file is never truncated
