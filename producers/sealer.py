"""Seal residents' contacts before they enter Kafka (crypto-shredding; see nyc311/sealing.py).

A producer that has contacts (the simulator here; an upstream system that links this package)
seals each RequestCreated's contact under a new key stored in the vault, in chunks: the chunk's
keys commit in one transaction *before* its records are produced, so no sealed record reaches
Kafka without its key, and a crash in between leaves at most unused keys, which the purge
destroys on schedule. Requests whose contact was erased are produced without one.

Upstream systems that cannot reach the vault may keep sending plain contacts (schema v1's
``contact``): the projector seals them on arrival. Their plain copy in the topic is then
outside the vault's reach (docs/DESIGN.md, "Residents' contacts").
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from types import TracebackType

import psycopg
from tqdm import tqdm

from nyc311.kafka import EventProducer
from nyc311.settings import Settings
from nyc311.topics import ensure_topics, event_topics
from schemas.serde import Record
from storage.db import connect
from storage.vault import seal_records

CHUNK = 5000


class ContactSealer:
    """``sealed(events)`` yields the same (name, record) pairs with every contact sealed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: psycopg.Connection | None = None  # no network in __init__

    def seal_many(self, records: list[Record]) -> list[Record]:
        """RequestCreated records with their contacts sealed; the keys are committed."""
        if self._conn is None:
            self._conn = connect(self.settings)
        with self._conn.transaction():
            return seal_records(self._conn, self.settings, records)

    def sealed(self, events: Iterable[tuple[str, Record]]) -> Iterator[tuple[str, Record]]:
        it = iter(events)
        while chunk := list(islice(it, CHUNK)):
            created = [r for name, r in chunk if name == "request_created"]
            sealed = iter(self.seal_many(created)) if created else iter(())
            for name, record in chunk:
                yield name, next(sealed) if name == "request_created" else record

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ContactSealer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def produce_sealed(settings: Settings, events: Iterable[tuple[str, Record]], *,
                   progress: bool = False) -> Counter[str]:
    """Produce ``events`` (name, record) to their topics, created where missing, with every
    contact sealed on the way (:class:`ContactSealer`), a progress bar on standard error if
    asked; the count of each event type produced."""
    ensure_topics(settings, event_topics(settings))
    counts: Counter[str] = Counter()
    with EventProducer(settings) as producer, ContactSealer(settings) as sealer, \
            tqdm(desc="events", unit="ev", disable=not progress, file=sys.stderr) as bar:
        for name, record in sealer.sealed(events):
            producer.send(name, record)
            counts[name] += 1
            bar.update()
    return counts
