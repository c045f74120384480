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

from collections.abc import Iterable, Iterator
from itertools import islice
from types import TracebackType

import psycopg

from nyc311.settings import Settings
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
