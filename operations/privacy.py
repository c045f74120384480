"""The privacy purge service (`nyc311 run privacy-purge`): erase the contacts that are due.

One run (:func:`purge_once`) destroys the keys of every contact past its retention
(:func:`storage.vault.purge` has the rule), with a progress bar, counts it in the service's
metrics and prints what it erased and what is held; :func:`run_purge` repeats it every
``interval`` seconds until stopped, a failed run (the database away) logged and tried again.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

from tqdm import tqdm

from nyc311.metrics import Metrics
from nyc311.settings import Settings
from storage.db import connection
from storage.vault import purge

log = logging.getLogger(__name__)


def purge_once(settings: Settings, metrics: Metrics, echo: Callable[[str], None], *,
               progress: bool) -> None:
    with connection(settings) as conn, \
            tqdm(desc="requests erased", unit="req", disable=not progress,
                 file=sys.stderr) as bar:
        conn.autocommit = True

        def step(done: int, total: int) -> None:
            bar.total = total
            bar.update(done)

        report = purge(conn, settings, progress=step)
    metrics.contacts_purged(report.requests, report.held, report.oldest_days)
    echo(f"privacy-purge: {report.render()}")


def run_purge(settings: Settings, metrics: Metrics, echo: Callable[[str], None], *,
              progress: bool, interval: float, stop: threading.Event) -> None:
    """:func:`purge_once` every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            purge_once(settings, metrics, echo, progress=progress)
        except Exception:  # the database may be away: say so, and try again next time
            log.exception("privacy-purge: this run failed; trying again in %.0f s", interval)
        stop.wait(interval)
