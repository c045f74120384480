"""The aggregator service (`nyc311 run aggregator`): publish a month to the site, on schedule.

:func:`publisher` publishes one month the way `nyc311 publish` does (claim the target, aggregate
into the projection's publication schema, write the site) and counts it in the service's
metrics; :func:`run_aggregator` publishes the preceding month once, or runs
:func:`reports.schedule.run_scheduler` until stopped, starting after the newest month already
published.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, time

from nyc311.metrics import PUBLISH_FAILED, PUBLISHED_NEW, PUBLISHED_UNCHANGED, Metrics
from nyc311.settings import Settings
from reports.output import claim_site, write_site
from reports.publish import publish_month, published_months
from reports.schedule import preceding_month, run_scheduler
from storage.db import connection

log = logging.getLogger(__name__)


def publisher(settings: Settings, target: str, metrics: Metrics) -> Callable[[str], None]:
    """``publish(month)``: the month's tables and site to ``target``, counted in ``metrics``."""

    def publish(month: str) -> None:
        try:
            with connection(settings) as conn:
                conn.autocommit = True
                claim_site(settings, conn, target)
                pub, new = publish_month(conn, month, schema=settings.published_schema)
                summary = write_site(settings, conn, target)
        except Exception:
            metrics.publication(PUBLISH_FAILED)
            raise
        metrics.publication(PUBLISHED_NEW if new else PUBLISHED_UNCHANGED)
        log.info("published %s revision %d (%s); %s", month, pub.revision,
                 "new" if new else "unchanged", summary, extra={"month": month})

    return publish


def run_aggregator(settings: Settings, target: str, at: time, metrics: Metrics, *,
                   once: bool, stop: threading.Event | None = None) -> None:
    """With ``once``, publish the preceding month now (raising what fails); else publish each
    month on its 1st at ``at``, New York time, until ``stop`` is set."""
    publish = publisher(settings, target, metrics)
    if once:
        publish(preceding_month(datetime.now(UTC)))
        return
    with connection(settings) as conn:
        done = published_months(conn, schema=settings.published_schema)
    run_scheduler(publish, at, stop=stop or threading.Event(),
                  last_published=done[0] if done else None)
