"""Consumer offsets kept in PostgreSQL, written in the same transaction as the rows they produced.

Because a batch's rows and its offsets commit together, a consumer that crashes at any moment
resumes exactly after the last batch that took effect: exactly-once *effect* on the projection
from at-least-once delivery. Offsets only move forward (``GREATEST``), so a consumer that lost
its partitions mid-batch and finished writing anyway cannot rewind the one that took over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import psycopg

TopicPartition = tuple[str, int]

_STORE = """
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset, updated_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset), updated_at = now()
"""


def load(conn: psycopg.Connection, group_id: str,
         partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    """Next offsets stored for ``partitions``; partitions never committed are absent."""
    wanted = list(partitions)
    if not wanted:
        return {}
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM consumer_offsets "
        "WHERE group_id = %s AND topic = ANY(%s)",
        (group_id, sorted({t for t, _ in wanted})),
    ).fetchall()
    stored = {(topic, partition): offset for topic, partition, offset in rows}
    return {tp: stored[tp] for tp in wanted if tp in stored}


def store(conn: psycopg.Connection, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
    if offsets:
        with conn.cursor() as cur:
            cur.executemany(_STORE, [(group_id, t, p, o) for (t, p), o in offsets.items()])


def load_group(conn: psycopg.Connection, group_id: str) -> dict[TopicPartition, int]:
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = %s",
        (group_id,),
    ).fetchall()
    return {(topic, partition): offset for topic, partition, offset in rows}
