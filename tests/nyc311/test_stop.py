"""StopFlag: a signal sets it and runs its callbacks while installed; the previous handlers
come back after it."""

from __future__ import annotations

import os
import signal

from nyc311.stop import StopFlag


def test_a_signal_sets_the_flag_runs_callbacks_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    called = []
    with StopFlag("stopping").on_stop(lambda: called.append(True)) as flag:
        assert signal.getsignal(signal.SIGTERM) is not before
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.is_set() and flag.signal_name == "SIGTERM" and called == [True]
    assert signal.getsignal(signal.SIGTERM) is before


def test_only_the_signals_given_are_handled():
    before = signal.getsignal(signal.SIGINT)
    with StopFlag(signals=(signal.SIGTERM,)):
        assert signal.getsignal(signal.SIGINT) is before
