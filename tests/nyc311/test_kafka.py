"""EventProducer on the real broker: a refused record raises from flush, with the bulk
producer's reports of failures only too."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from nyc311.kafka import BULK_OVERRIDES, DeliveryError, EventProducer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("overrides", [{}, BULK_OVERRIDES], ids=["default", "bulk"])
def test_a_refused_record_raises_from_flush_once_and_later_ones_land(settings, overrides):
    topic = settings.topic(f"check.producer.{len(overrides)}")
    admin = AdminClient(settings.kafka_config())
    created = admin.create_topics([NewTopic(topic, 1, config={"max.message.bytes": "2000"})])
    created[topic].result(30)
    producer = EventProducer(settings, **overrides)
    producer.produce_raw(topic, b"large", os.urandom(5000))  # over the limit, even with lz4
    with pytest.raises(DeliveryError) as raised:
        producer.flush()
    assert len(raised.value.errors) == 1 and "key=b'large'" in raised.value.errors[0]
    assert "MSG_SIZE_TOO_LARGE" in raised.value.errors[0]
    producer.produce_raw(topic, b"small", b"x" * 10)
    producer.produce_raw(topic, b"small", b"z" * 10)
    producer.flush()  # the refused record was reported once; these landed

    consumer = Consumer(settings.kafka_config(**{"group.id": topic, "auto.offset.reset":
                                                 "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    values = []
    try:
        while len(values) < 2:
            msg = consumer.poll(10)
            assert msg is not None, f"only {values} arrived"
            assert msg.error() is None
            values.append(msg.value())
    finally:
        consumer.close()
    assert values == [b"x" * 10, b"z" * 10]
