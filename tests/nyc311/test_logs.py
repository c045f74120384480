"""JSON log lines carry the fields a call passes, so log search can follow one record."""

from __future__ import annotations

import json
import logging

from nyc311.logs import JsonFormatter


def test_a_json_line_has_the_message_level_and_the_extra_fields():
    record = logging.LogRecord("consumers.loop", logging.WARNING, __file__, 1,
                               "dead-lettering %s[%s]@%s", ("t", 2, 40), None)
    record.topic, record.partition, record.offset, record.key = "t", 2, 40, "59000001"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "dead-lettering t[2]@40"
    assert line["level"] == "WARNING" and line["logger"] == "consumers.loop"
    assert (line["topic"], line["partition"], line["offset"], line["key"]) == (
        "t", 2, 40, "59000001")
    assert line["ts"].endswith("+00:00")
