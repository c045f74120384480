"""The stall clock of a consume loop: is the work in hand making progress?

The loop starts the clock when it takes work in hand (a batch, or database work that failed),
notes the latest failure the work met (``trouble``), and stops the clock when the work is
committed. The metrics server's thread reads it: the work counts as stalled from its start once
it met a failure, or once it has been in hand ``stall_seconds`` without one; ``/healthz`` answers
503 past ``stall_seconds``. A stop that leaves the work undone says what was left and for how
long it waited (:meth:`WorkClock.abandon`).
"""

from __future__ import annotations

import time


class Abandoned(RuntimeError):
    """The loop was stopped while work it could not commit was in hand (it is read again)."""


class WorkClock:
    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self.since: float | None = None
        self.what = ""
        self.left = ""  # what a stop leaves undone, for the one line that says so
        self.trouble: str | None = None  # the latest failure the work in hand met

    def begin(self, what: str, left: str = "") -> bool:
        """Start the clock for ``what`` unless work is in hand already; True if started.
        ``left``: what a stop leaves undone then."""
        if self.since is not None:
            return False
        self.what, self.trouble = what, None
        self.left = left or f"{what} is not done; it is done again on the next start"
        self.since = time.monotonic()
        return True

    def end(self) -> None:
        self.since, self.trouble, self.what, self.left = None, None, "", ""

    def stalled_seconds(self) -> float:
        """Seconds the work in hand has waited without progress: from its start once it met a
        failure, or once it has been in hand ``stall_seconds``; else 0. Safe from another
        thread."""
        since = self.since
        if since is None:
            return 0.0
        elapsed = max(0.0, time.monotonic() - since)
        if self.trouble is not None or elapsed >= self.stall_seconds:
            return elapsed
        return 0.0

    def reason(self) -> str:
        """What the work in hand waits for (the latest failure), or that it just takes long."""
        trouble, what = self.trouble, self.what
        if trouble is not None:
            return trouble
        return f"{what or 'the work in hand'} not committed yet (no error reported)"

    def abandon(self, cause: str, reason: str) -> Abandoned:
        """The exception that stops the loop (``cause``: "on SIGTERM", …) with the work in
        hand uncommitted."""
        since = self.since
        waited = f" for {time.monotonic() - since:.0f} s" if since is not None else ""
        left = self.left or ("the work in hand is not committed; it is read again on the next "
                             "start")
        return Abandoned(f"stopped {cause} while {reason}{waited}: {left}")
