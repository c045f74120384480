"""The redaction shared by the channels, the dispatcher and the log filter."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from nyc311.redact import redact_contact, redact_text, sensitive
from tests.helpers import captured_logging

KEPT = [  # what log lines are full of and must come out unchanged
    "2026-10-05T14:00:00.123+00:00",
    "2026-10-05 14:00:00,123",
    "survey 3f2a9c1e-1234-5678-9abc-def012345678",
    "request 39573567",
    "nyc311.request-created[2]@123456789012",
    "offset 9876543210 lag 1234567",
    "postgresql://nyc311:***@127.0.0.1:55432/nyc311",
    "127.0.0.1:19092",
    "took 0.512 s for 20,000 records",
    "revision 3 as of 2026-11-01T00:00:00-04:00",
]


@pytest.mark.parametrize("text", KEPT)
def test_ids_times_offsets_and_addresses_of_servers_are_kept(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("550 5.1.1 <maria.g@example.org>: rejected", "550 5.1.1 <<address>>: rejected"),
    ('to "john doe"@example.com', "to <address>"),
    ("o'brien@example.ie", "<address>"),
    ("jösé@exämple.com", "<address>"),
    ("Reason: +12125550123 is not valid", "Reason: <number> is not valid"),
    ("call +1 (212) 555-0123", "call <number>"),
    ("call 212-555-0123 or (212) 555-0123 or 212.555.0123",
     "call <number> or <number> or <number>"),
    ("+121255501234567890 (too long)", "<number> (too long)"),
])
def test_email_and_phone_shapes_are_replaced(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_a_contact_is_replaced_in_every_form_a_server_may_quote_it() -> None:
    email = "Maria Gonzalez.example.org\r\nBcc: x"  # no @: no pattern finds it
    text = ("refused 'Maria Gonzalez.example.org\\r\\nBcc: x', MARIA GONZALEZ.EXAMPLE.ORG, "
            "maria and gonzalez.example.org; number 2125550123 / +1 212 555 0123")
    out = redact_contact(text, email, "+12125550123")
    for piece in ("Maria", "maria", "MARIA", "Gonzalez", "2125550123"):
        assert piece not in out
    assert out.startswith("refused '<address>'")


def test_a_short_piece_is_replaced_only_as_a_word_of_its_own() -> None:
    text = "550 <ana@refused.example>: ana unknown; see the mailbox table of Banana Inc"
    assert redact_contact(text, "ana@refused.example") == (
        "550 <<address>>: <address> unknown; see the mailbox table of Banana Inc")


@pytest.fixture(params=["text", "json"])
def log_lines(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    with captured_logging("INFO", request.param) as buffer:
        yield buffer


def test_every_part_of_a_log_record_is_redacted(log_lines: io.StringIO) -> None:
    log = logging.getLogger("consumers.dispatcher")
    try:
        raise RuntimeError("server said <kim.lee@example.net> and +13475550199")
    except RuntimeError:
        log.exception("survey 3f2a9c1e-1234-5678-9abc-def012345678 to %s failed at offset %d",
                      "kim.lee@example.net", 123456789012,
                      extra={"request_id": "39573567", "contact": "+13475550199"})
    with sensitive("no-at-sign.kim.example.net", "+1347555CALL"):
        log.warning("echo of no-at-sign.kim.example.net and +1347555CALL")
    out = log_lines.getvalue()
    for secret in ("kim.lee", "5550199", "no-at-sign", "555CALL"):
        assert secret not in out
    for kept in ("3f2a9c1e-1234-5678-9abc-def012345678", "123456789012", "RuntimeError",
                 "Traceback"):
        assert kept in out
    assert "<address>" in out and "<number>" in out
    if out.startswith("{"):
        first = json.loads(out.splitlines()[0])
        assert first["request_id"] == "39573567" and first["contact"] == "<number>"
        assert "<address>" in first["exc"]


def test_outside_the_block_the_values_are_no_longer_known(log_lines: io.StringIO) -> None:
    with sensitive("plain-words-value"):
        pass
    logging.getLogger("x").warning("plain-words-value")
    assert "plain-words-value" in log_lines.getvalue()
