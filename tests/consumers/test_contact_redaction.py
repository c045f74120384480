"""Residents' addresses and numbers never reach a log, an error column or an exception message.

Malformed contacts of every kind go through every channel path against real servers: an SMTP
server (aiosmtpd) that quotes the recipient in its refusals the way Postfix does, one that
accepts the recipient and then refuses the message, one that defers, SNS (moto's server)
refusing a number, and the fallback from a refused email to SMS. Then the captured log lines
(text and JSON) and every column of ``survey_dispatch`` are searched for each address, its
local part, its unique token and each number: none may be there.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import secrets
import sys
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from consumers.channels import OutgoingSurvey, PermanentSendError, SendError, TransientSendError
from consumers.channels.email import SmtpChannel
from consumers.channels.sms import SnsSmsChannel, classify_client_error
from tests.helpers import captured_logging
from tests.servers import Moto, SmtpServer, free_port, smtp_greets, start, stop_process, wait_until

ECHO_SERVER = Path(__file__).with_name("echo_smtp_server.py")
SECRET = "test-secret-0123456789abcdef"


@dataclass(frozen=True)
class Contact:
    kind: str
    email: str | None
    phone: str | None
    token: str  # a string unique to this contact, inside its address (or its number)

    def secrets(self) -> list[str]:
        """What must not be found anywhere: the values, trimmed, the local part, the token."""
        found = [self.token]
        for value in (self.email, self.phone):
            if value:
                found += [value, value.strip()]
        if self.email and "@" in self.email:
            local = self.email.strip().rpartition("@")[0]
            found += [local, local.strip('"<')]
        return [s for s in found if len(s.strip()) >= 3]


def malformed_contacts() -> list[Contact]:
    """At least thirteen kinds of bad address and number, each with a token of its own."""
    out: list[Contact] = []

    def email(kind: str, template: str, phone: str | None = None) -> None:
        token = f"zq{secrets.token_hex(4)}"
        out.append(Contact(kind, template.format(t=token), phone, token))

    def phone(kind: str, number: str, with_email: str | None = None) -> None:
        out.append(Contact(kind, with_email, number, number.strip()))

    digits = f"{secrets.randbelow(10**7):07d}"
    email("quotes", '"{t} quoted"@refused.example')
    email("spaces", "{t} maria gonzalez@refused.example")
    email("unicode local part", "{t}jösé.ñúñez@refused.example")
    email("unicode domain", "{t}@exämple.refused.example")
    email("CRLF injection", "{t}@refused.example\r\nRCPT TO:<victim@elsewhere.example>")
    email("very long", "{t}" + "x" * 200 + "@refused.example")
    email("longer than the contract allows", "{t}" + "y" * 300 + "@refused.example")
    email("missing @", "{t}.refused.example")
    email("leading dot", ".{t}@refused.example")
    email("trailing dot", "{t}.@refused.example")
    email("double dot", "{t}..dots@refused.example")
    email("angle brackets", "<{t}@refused.example>")
    email("two @", "{t}@inner@refused.example")
    email("a list", "{t}@refused.example, other@elsewhere.example")
    email("tab", "{t}\t@refused.example")
    email("comment", "{t}(work)@refused.example")
    email("accepted, then the message refused", "{t}@fails-after.example")
    email("deferred", "{t}@deferred.example")
    email("refused, falls back to a bad number", "{t}@refused.example",
          phone=f"+1646{digits[:3]}CALL")
    email("refused, falls back to SMS", "{t}@refused.example", phone=f"+1718{digits}")
    phone("+1 too short", f"+1917{digits[:3]}")
    phone("+1 too long", f"+1347{digits}98765")
    phone("letters", f"+1212{digits[:3]}CALL")
    phone("spaces and brackets", f"+1 (929) {digits[:3]}-{digits[3:]}")
    phone("extension", f"332-{digits[:3]}-{digits[3:]} ext 9")
    phone("CRLF", f"+1516{digits}\r\nX")
    phone("tel: URI", f"tel:+1631{digits}")
    phone("Arabic-Indic digits", "+١٢١٢٥٥٥" + digits[:4])
    return out


def assert_nothing_leaks(contacts: list[Contact], haystack: str) -> None:
    lowered = haystack.lower()
    for contact in contacts:
        for secret in contact.secrets():
            assert secret.lower() not in lowered, f"{contact.kind}: {secret!r} leaked"


@pytest.fixture(scope="module")
def echo_smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    folder = tmp_path_factory.mktemp("echo-smtp")
    port = free_port()
    log = folder / "server.log"
    proc = start([sys.executable, str(ECHO_SERVER), "--port", str(port),
                  "--maildir", str(folder / "maildir")], log)
    wait_until(lambda: smtp_greets(port), proc, log, "the echoing SMTP server")
    yield SmtpServer(port, folder / "maildir", proc, log)
    stop_process(proc)


@pytest.fixture
def captured_logs(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """The project's own logging set-up (format: the test's parameter) into a buffer."""
    with captured_logging("DEBUG", request.param) as buffer:
        yield buffer


def log_text(buffer: io.StringIO) -> str:
    """The lines as written, and for JSON lines every value decoded (escapes undone)."""
    raw = buffer.getvalue()
    decoded = []
    for line in raw.splitlines():
        with contextlib.suppress(ValueError):  # a text line
            decoded.extend(str(v) for v in json.loads(line).values())
    return raw + "\n" + "\n".join(decoded)


# ---------------------------------------------------------------- the channels alone


def survey(email: str | None, phone: str | None) -> OutgoingSurvey:
    return OutgoingSurvey(survey_id=str(uuid.uuid4()), language="en", email=email, phone=phone,
                          subject="NYC 311 survey", text="text\n", html="<p>html</p>",
                          sms="NYC 311: survey https://survey.example/s/x")


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize("captured_logs", ["text", "json"], indirect=True)
def test_channel_errors_never_quote_the_contact(echo_smtp: SmtpServer, moto_server: Moto,
                                                captured_logs: io.StringIO) -> None:
    contacts = malformed_contacts()
    email = SmtpChannel("127.0.0.1", echo_smtp.port, starttls=False, timeout=10)
    sms = SnsSmsChannel("us-east-1", moto_server.url)
    errors: list[SendError] = []
    for contact in contacts:
        outgoing = survey(contact.email, contact.phone)
        for channel in (email, sms):
            if not channel.can_send(outgoing):
                continue
            try:
                channel.send(outgoing)
            except SendError as exc:
                errors.append(exc)
                logging.getLogger("test").exception("sending failed: %s", exc)
    email.close()
    sms.close()

    text = "\n".join(["".join(traceback.format_exception(e)) for e in errors]
                     + [repr(e) for e in errors])
    assert_nothing_leaks(contacts, text + log_text(captured_logs))
    # what the operator needs is still there: the class of error and the server's code
    messages = [str(e) for e in errors]
    assert any("SMTPRecipientsRefused 550 5.1.1 <<address>>: Recipient address rejected" in m
               for m in messages)
    assert any("SMTPDataError 554 5.7.1" in m for m in messages)
    assert any(isinstance(e, TransientSendError) and "SMTPRecipientsRefused 450" in str(e)
               for e in errors)
    assert any("SNS InvalidParameter (400)" in m for m in messages)
    assert any("not a usable email address" in m for m in messages)
    assert all(e.__suppress_context__ for e in errors)  # the library's text is not chained


def test_an_sns_refusal_quoting_the_number_is_redacted() -> None:
    """AWS's own wording quotes the number (moto's does not); the code and the reason stay."""
    number = "+1212555CALL"
    error = ClientError({"Error": {"Code": "InvalidParameter", "Message":
                                   f"Invalid parameter: PhoneNumber Reason: {number} is not "
                                   "valid to publish"},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}, "Publish")
    refused = classify_client_error(error, number)
    assert isinstance(refused, PermanentSendError)
    assert str(refused) == ("SNS InvalidParameter (400): Invalid parameter: PhoneNumber Reason: "
                            "<number> is not valid to publish")


# ---------------------------------------------------------------- through the dispatcher


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize("captured_logs", ["text", "json"], indirect=True)
def test_the_dispatcher_records_and_logs_no_contact(settings, topics, db, echo_smtp,
                                                    moto_server, captured_logs) -> None:
    from consumers.channels import channels_from_settings
    from consumers.dispatcher import GROUP_ID, Dispatcher
    from consumers.loop import ConsumeLoop
    from tests.helpers import produce, project

    run = replace(settings, survey_secret=SECRET, smtp_host="127.0.0.1",
                  smtp_port=echo_smtp.port, smtp_starttls=False, sms_provider="sns",
                  sns_endpoint_url=moto_server.url, send_attempts=1)
    contacts = malformed_contacts()
    created_at = datetime.now(UTC) - timedelta(days=1)
    events = []
    for i, contact in enumerate(contacts):
        request_id = f"R{i:03d}"
        events += [
            ("request_created", {
                "event_id": str(uuid.uuid4()), "occurred_at": created_at,
                "request_id": request_id, "agency": "DOT",
                "agency_name": "Department of Transportation", "complaint_type": "Street Light",
                "descriptor": None, "channel": "ONLINE", "borough": "QUEENS",
                "incident_zip": "11101", "language": "en",
                "contact": {"email": contact.email, "phone": contact.phone}}),
            ("request_closed", {
                "event_id": str(uuid.uuid4()), "occurred_at": created_at + timedelta(hours=20),
                "request_id": request_id, "status": "RESOLVED",
                "resolution_description": "Repaired."}),
        ]
    produce(run, events)
    project(run)
    dispatcher = Dispatcher(run, lambda: channels_from_settings(run))
    try:
        ConsumeLoop(run, GROUP_ID, dispatcher).run(until_caught_up=True, max_seconds=120,
                                                   on_tick=dispatcher.tick)
    finally:
        dispatcher.close()

    rows = db.execute("SELECT * FROM survey_dispatch").fetchall()
    table = "\n".join(str(value) for row in rows for value in row)
    assert_nothing_leaks(contacts, table + "\n" + log_text(captured_logs))

    errors = {r[0]: r[1] for r in db.execute(
        "SELECT request_id, last_error FROM survey_dispatch WHERE status = 'failed'")}
    assert len(errors) >= 15, errors  # the bad ones failed, and said why
    fallback = next(i for i, c in enumerate(contacts)
                    if c.kind == "refused, falls back to a bad number")
    assert errors[f"R{fallback:03d}"].startswith(
        "EMAIL: recipient refused: SMTPRecipientsRefused 550 5.1.1 <<address>>")
    assert "SMS: SNS InvalidParameter (400)" in errors[f"R{fallback:03d}"]
    sent = next(i for i, c in enumerate(contacts) if c.kind == "refused, falls back to SMS")
    assert db.execute("SELECT status, channel FROM survey_dispatch WHERE request_id = %s",
                      (f"R{sent:03d}",)).fetchone() == ("sent", "SMS")
    assert "survey for closure" in captured_logs.getvalue()  # the failures were logged
