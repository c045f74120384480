"""(e) end-to-end latency: RequestCreated at a steady rate to a live projector subprocess.

Each record's ``occurred_at`` is its send time; a separate connection polls PostgreSQL for when
it became visible (:class:`Visibility`), and PostgreSQL's own ``projected_at − created_at`` is
read beside it. The latency records get request ids of their own (:data:`LATENCY_ID_PREFIX`), so
they can be told from the simulated ones already in the database.
"""

from __future__ import annotations

import math
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from benchmarks.catchup import Spawn
from benchmarks.dataset import period_bounds
from nyc311.kafka import EventProducer
from nyc311.settings import Settings
from producers.simulate import simulate_month
from storage.db import connect

#: The latency projector's NYC311_BATCH_TIMEOUT: a live service waits little to fill a batch.
LATENCY_BATCH_TIMEOUT = 0.05
#: Visibility is polled this often; the figure is at most this much late.
POLL_INTERVAL_S = 0.02
#: The latency records get request ids ``8`` + 10 digits; simulated ids start with ``9``.
LATENCY_ID_PREFIX = "8"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency(settings: Settings, rate: float, seconds: float, months: list[str], seed: int,
            spawn: Spawn) -> dict[str, Any]:
    """Produce RequestCreated at a steady ``rate`` with occurred_at = send time, to a live
    projector subprocess; per record: when it became visible in PostgreSQL (polled), and
    ``projected_at − created_at`` as PostgreSQL recorded it (its transaction's start).

    The records are copies of requests simulated for the month after ``months``.
    """
    count = max(1, round(rate * seconds))
    after = period_bounds(months)[1]
    templates = [record for name, record in
                 simulate_month(f"{after:%Y-%m}", min(count, 5_000), seed + 1)
                 if name == "request_created"]
    with tempfile.TemporaryFile("w+") as output:
        proc = spawn(settings, batch_timeout=LATENCY_BATCH_TIMEOUT, output=output)
        try:
            result = measure_latency(settings, templates, count, rate)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if result.get("error"):
            output.seek(0)
            result["projector_output"] = output.read()[-2000:]
    return result


def measure_latency(settings: Settings, templates: list[dict[str, Any]], count: int,
                    rate: float) -> dict[str, Any]:
    """Send ``count`` copies of ``templates`` at ``rate`` to the running projector and watch
    them become visible."""
    def record(number: int, at: float) -> dict[str, Any]:
        template = templates[number % len(templates)]
        return {**template, "event_id": str(uuid.uuid4()),
                "request_id": f"{LATENCY_ID_PREFIX}{number:010d}",
                "occurred_at": datetime.fromtimestamp(at, UTC)}

    sent: list[tuple[str, float]] = []
    done = threading.Event()
    with EventProducer(settings) as producer:
        # warm-up: one record, waited for, so the group join is not counted as latency
        warm = record(0, time.time())
        producer.send("request_created", warm)
        producer.flush()
        with connect(settings, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while not conn.execute("SELECT 1 FROM requests WHERE request_id = %s",
                                   (warm["request_id"],)).fetchone():
                if time.monotonic() > deadline:
                    return {"error": "the projector did not project the warm-up record"}
                time.sleep(0.1)
        watcher = Visibility(settings, sent, done)
        watcher.start()
        try:
            started = time.time()
            for number in range(1, count + 1):
                delay = started + (number - 1) / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                at = time.time()
                item = record(number, at)
                producer.send("request_created", item)
                sent.append((item["request_id"], at))
            finished = time.time()
            producer.flush()
        finally:
            done.set()
            watcher.join()
    visible = [watcher.seen[rid] - at for rid, at in sent if rid in watcher.seen]
    server = [watcher.server[rid] for rid, _ in sent if rid in watcher.server]
    if not visible:
        return {"error": "no record became visible"}
    return {"sent": len(sent), "visible": len(visible),
            "rate": len(sent) / (finished - started) if finished > started else 0.0,
            "visible_p50": percentile(visible, 50), "visible_p99": percentile(visible, 99),
            "visible_max": max(visible),
            "server_p50": percentile(server, 50), "server_p99": percentile(server, 99),
            "poll_interval": POLL_INTERVAL_S}


class Visibility(threading.Thread):
    """Polls PostgreSQL for the latency records: when each became visible, and the server's own
    ``projected_at − created_at``. Reads only the tail (``created_at`` from the oldest record
    not yet seen), so each poll is a short index range scan."""

    def __init__(self, settings: Settings, sent: list[tuple[str, float]],
                 done: threading.Event, grace: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.settings, self.sent, self.done, self.grace = settings, sent, done, grace
        self.seen: dict[str, float] = {}
        self.server: dict[str, float] = {}

    def run(self) -> None:
        oldest = 0
        deadline: float | None = None
        with connect(self.settings, autocommit=True) as conn:
            while True:
                sent = len(self.sent)
                while oldest < sent and self.sent[oldest][0] in self.seen:
                    oldest += 1
                if self.done.is_set():
                    if oldest >= len(self.sent):
                        return
                    deadline = deadline or time.monotonic() + self.grace
                    if time.monotonic() > deadline:
                        return
                if oldest < sent:
                    low = datetime.fromtimestamp(self.sent[oldest][1] - 1.0, UTC)
                    rows = conn.execute(
                        "SELECT request_id, extract(epoch FROM projected_at - created_at) "
                        "FROM requests WHERE created_at >= %s AND request_id LIKE %s",
                        (low, f"{LATENCY_ID_PREFIX}%")).fetchall()
                    now = time.time()
                    for request_id, lag in rows:
                        if request_id not in self.seen:
                            self.seen[request_id] = now
                            self.server[request_id] = float(lag)
                time.sleep(POLL_INTERVAL_S)
