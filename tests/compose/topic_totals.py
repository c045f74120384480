"""What the topics imply for one month, computed from the events alone (no PostgreSQL).

Run inside the app image on the stack's network (tests/compose/test_stack.py pipes it into
``python -``), so it reads the broker as the services do::

    python - MONTH < topic_totals.py

It reads every partition of the event topics from the beginning up to the end offsets it finds
at start, decodes with the contract's schemas, and prints one JSON object:

- ``received``: requests created in MONTH (New York time), by ``agency|complaint_type``;
- ``closed``: of those, the ones with a closure before the first instant of the next month;
- ``requests``, ``created_events``, ``closures``, ``answers``, ``reopens``: distinct request ids
  created, request-created events, closure events, survey answers and reopen requests on the
  topics, whatever the month (two simulations may draw the same request id);
- ``reopen_agencies``: the keys of the reopen requests (the agency each is forwarded to).

The counting is plain Python over the events, independent of the projection's SQL.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from nyc311.settings import load_settings
from schemas.serde import EVENT_TYPES, Serde

NEW_YORK = ZoneInfo("America/New_York")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=NEW_YORK)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=NEW_YORK)
    return start, end


def version(event: dict) -> tuple[datetime, str]:
    return event["occurred_at"], str(event["event_id"])


def read_topic(topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of ``topic`` up to its end offsets now, as (key, value)."""
    consumer = Consumer({
        "bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        "group.id": f"nyc311-compose-check-{uuid.uuid4()}",  # never commits
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        wanted = {}
        for number in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=30)
            if high > low:
                wanted[number] = high
        consumer.assign([TopicPartition(topic, n, OFFSET_BEGINNING) for n in wanted])
        records: list[tuple[bytes | None, bytes | None]] = []
        while wanted:
            msg = consumer.poll(10)
            if msg is None:
                raise SystemExit(f"{topic}: no record within 10 s, {wanted} still to read")
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise SystemExit(f"{topic}: {error}")
            number, offset = msg.partition(), msg.offset() or 0
            if number in wanted and offset < wanted[number]:
                records.append((msg.key(), msg.value()))
            if number in wanted and offset + 1 >= wanted[number]:
                del wanted[number]
        return records
    finally:
        consumer.close()


def main(month: str) -> dict[str, object]:
    start, end = month_bounds(month)
    serde = Serde()
    settings = load_settings()

    def events(name: str) -> list[tuple[bytes | None, dict]]:
        topic = settings.topic(EVENT_TYPES[name].topic)
        return [(key, serde.decode(name, value)) for key, value in read_topic(topic)]

    created: dict[str, dict] = {}
    created_events = events("request_created")
    for _, event in created_events:
        # two RequestCreated for one request id: the newest (occurred_at, event_id) holds, as
        # the projection does (consumers/projector.py: the newest RequestCreated wins)
        held = created.get(event["request_id"])
        if held is None or version(event) > version(held):
            created[event["request_id"]] = event
    closures = events("request_closed")
    closed_before_end = {event["request_id"] for _, event in closures
                         if event["occurred_at"] < end}
    received: Counter[str] = Counter()
    closed: Counter[str] = Counter()
    for request_id, event in created.items():
        if start <= event["occurred_at"] < end:
            group = f"{event['agency']}|{event['complaint_type']}"
            received[group] += 1
            closed[group] += request_id in closed_before_end
    reopens = events("reopen_requested")
    return {
        "received": dict(received),
        "closed": dict(closed),
        "requests": len(created),
        "created_events": len(created_events),
        "closures": len(closures),
        "answers": len(events("survey_answered")),
        "reopens": len(reopens),
        "reopen_agencies": sorted((key or b"").decode() for key, _ in reopens),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), sort_keys=True))
