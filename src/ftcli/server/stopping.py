"""`ftcli serve` ends within seconds of SIGTERM or Ctrl-C, whatever it is doing.

uvicorn's graceful shutdown waits for the requests in flight, and a chat answer generating in a worker thread can't
be cancelled from the event loop: the thread (not a daemon) runs to its last token and the interpreter waits for it,
minutes on a slow machine. So a stop signal arms a deadline: if the process is still there when it passes, the job
processes are killed, the runtime files removed, and the process exits at once. Nothing is lost: a running job stays
`running` in the store, and the next start resumes it from its last checkpoint, as after a crash.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable

GRACE_SECONDS = 2  # what uvicorn gives the requests in flight before it cancels them
DEADLINE_SECONDS = 4.0  # from the signal to the end of the process, at the latest


class ExitDeadline:
    """Armed by the first stop signal; calls `before_exit` (quick, best-effort cleanup) and ends the process
    `seconds` later unless it ended by itself first."""

    def __init__(self, before_exit: Callable[[], None], seconds: float = DEADLINE_SECONDS) -> None:
        self.before_exit, self.seconds = before_exit, seconds
        self._armed = threading.Event()

    def arm(self, signum: int) -> None:
        if self._armed.is_set():
            return
        self._armed.set()
        # a daemon thread: it never keeps the process alive itself, and it still runs while the interpreter waits
        # for the worker threads at exit
        threading.Thread(target=self._expire, args=(signum,), name="ftcli-exit-deadline", daemon=True).start()

    def _expire(self, signum: int) -> None:
        threading.Event().wait(self.seconds)
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"ftcli serve: still busy {self.seconds:.0f} s after the stop signal: ending now "
                "(a running job resumes at the next start)\n"
            )
            sys.stderr.flush()
        with contextlib.suppress(Exception):
            self.before_exit()
        os._exit(128 + signum)  # the shell's code for "ended by this signal"
