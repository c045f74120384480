"""One way for every long-running command to be asked to stop: SIGTERM or SIGINT (Ctrl-C).

:class:`StopFlag` is a :class:`threading.Event` that the signals set, with the one log line that
says which signal came and what happens now, and callbacks for the commands that must act at once
(the consume loop leaves its poll, the worker supervisor passes the signal on, the rebuild stops
waiting). Handlers are installed for the duration of a ``with`` block and the previous ones put
back after it, so a command run inside a test leaves the process's handlers as they were.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """Set by SIGTERM/SIGINT while installed (``with flag: ...``), or by :meth:`set`.

    ``doing`` completes the log line, "signal SIGTERM: <doing>"; ``level`` is its level.
    """

    def __init__(self, doing: str = "stopping", *, level: int = logging.INFO,
                 logger: logging.Logger | None = None,
                 signals: tuple[signal.Signals, ...] = SIGNALS) -> None:
        self.doing = doing
        self.signals = signals
        self.level = level
        self.log = logger or log
        self.event = threading.Event()
        self.signal_name: str | None = None  # the signal that set it, if one did
        self._callbacks: list[Callable[[], None]] = []
        self._previous: dict[int, Any] = {}

    def on_stop(self, callback: Callable[[], None]) -> StopFlag:
        """Call ``callback`` (from the signal handler: keep it short) when the flag is set."""
        self._callbacks.append(callback)
        return self

    def set(self) -> None:
        self.event.set()
        for callback in self._callbacks:
            callback()

    def is_set(self) -> bool:
        return self.event.is_set()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self.log.log(self.level, "signal %s: %s", self.signal_name, self.doing)
        self.set()

    def install(self) -> StopFlag:
        """Handle SIGTERM and SIGINT (or the ``signals`` given) from now on (in the main thread
        only)."""
        for signum in self.signals:
            self._previous.setdefault(signum, signal.signal(signum, self._handle))
        return self

    def restore(self) -> None:
        """Put back the handlers that :meth:`install` replaced."""
        while self._previous:
            signum, handler = self._previous.popitem()
            signal.signal(signum, handler)

    def __enter__(self) -> StopFlag:
        return self.install()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()
