"""Cooperative rebalancing: a member joining the group does not stop the member already in it.

Two projector loops of one group, on threads of this process, on the real services. The first
holds every partition and is consuming a steady stream when the second joins. With
cooperative-sticky the first gives up only the partitions that move to the second (a revocation
of those alone, never of everything), holds some partitions at every moment, reads none of
its partitions again from the stored offsets, and goes on committing on the ones it kept. The
rows are exact at the end: nothing lost or doubled by the rebalance.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from consumers.loop import ConsumeLoop
from consumers.projector import GROUP_ID, Projector
from nyc311.kafka import TP
from tests.consumers.test_projector import month_events
from tests.faults.test_rebalance import produce_slowly
from tests.helpers import expected_tables, fetch_tables, produce, stored_offsets, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 12  # 4 topics x 3


class Recording(ConsumeLoop):
    """The projector's loop, recording each rebalance callback's delta with what it held after
    it, and the partitions of every batch it committed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.callbacks: list[tuple[str, set[TP], set[TP]]] = []
        self.batches: list[set[TP]] = []
        self.errors: list[BaseException] = []

    def _record(self, kind: str, partitions: list[Any]) -> None:
        with self.lock:
            self.callbacks.append((kind, {(tp.topic, tp.partition) for tp in partitions},
                                   set(self.stats.assigned)))

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        super()._on_assign(consumer, partitions)
        self._record("assign", partitions)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        super()._on_revoke(consumer, partitions)
        self._record("revoke", partitions)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        super()._on_lost(consumer, partitions)
        self._record("lost", partitions)

    def _write(self, items: list[Any], ends: dict[TP, int]) -> dict[TP, int]:
        written = super()._write(items, ends)
        with self.lock:
            self.batches.append(set(written))
        return written

    def history(self) -> tuple[list[tuple[str, set[TP], set[TP]]], list[set[TP]]]:
        with self.lock:
            return list(self.callbacks), list(self.batches)

    def held(self) -> set[TP]:
        callbacks, _ = self.history()
        return set(callbacks[-1][2]) if callbacks else set()

    def start(self) -> threading.Thread:
        def main() -> None:
            try:
                self.run()
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        return thread


def test_a_member_joining_does_not_stop_the_running_one(settings, topics, db):
    before = month_events(300, seed=111)
    stream = month_events(1500, seed=113)
    total = len(before) + len(stream)
    produce(settings, before)
    small = replace(settings, batch_size=20)
    first = Recording(small, GROUP_ID, Projector(small))
    second = Recording(small, GROUP_ID, Projector(small))
    threads: list[threading.Thread] = []
    try:
        threads.append(first.start())
        wait_until(lambda: len(first.held()) == PARTITIONS, 60, "the first to hold everything")
        wait_until(lambda: stored_offsets(settings) >= len(before), 60, "the first to catch up")
        producer = threading.Thread(target=produce_slowly, args=(settings, stream), daemon=True)
        producer.start()
        threads.append(second.start())
        wait_until(lambda: bool(second.held())
                   and len(first.held()) + len(second.held()) == PARTITIONS,
                   60, "the second to take its share")
        kept = first.held()
        joined_at = len(first.history()[1])
        producer.join(120)
        assert not producer.is_alive()
        wait_until(lambda: stored_offsets(settings) == total, 120, "the stream to be projected")
        callbacks, batches = first.history()  # before the stop revokes everything
        taken = {tp for kind, delta, _ in second.history()[0] if kind == "assign"
                 for tp in delta}
    finally:
        first.stop()
        second.stop()
        for thread in threads:
            thread.join(30)
    for loop, thread in zip((first, second), threads, strict=True):
        assert not thread.is_alive(), "a loop did not stop"
        assert not loop.errors, loop.errors

    # the first was assigned everything once, then revoked once: exactly the partitions the
    # second took, none of those it kept; it held some partitions at every moment
    assigns = [delta for kind, delta, _ in callbacks if kind == "assign" and delta]
    revokes = [(delta, after) for kind, delta, after in callbacks if kind != "assign"]
    assert len(assigns) == 1 and len(assigns[0]) == PARTITIONS, callbacks
    assert len(revokes) == 1, callbacks
    revoked, left = revokes[0]
    assert 0 < len(kept) < PARTITIONS
    assert left == kept and revoked == assigns[0] - kept, callbacks
    assert revoked == taken, (revoked, taken)
    assert all(after for _, _, after in callbacks), callbacks
    # and it went on committing on the partitions it kept once the second had joined
    assert any(batch & kept for batch in batches[joined_at:]), "no batch after the join"
    assert fetch_tables(db) == expected_tables(before + stream)
