"""The delivery channels against real servers: aiosmtpd for SMTP, moto's server for SNS.

Each server runs as a separate process on a free local port, so the channels go through real
TCP, real STARTTLS and real HTTP exactly as in production. What was delivered is read back from
the server's side (the Maildir aiosmtpd writes, moto's recorded SMS), never from the client.
"""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import logging
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from email import policy
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from consumers.channels import (
    Channel,
    ChannelUnavailableError,
    OutgoingSurvey,
    PermanentSendError,
    TransientSendError,
    channels_from_settings,
)
from consumers.channels.email import SmtpChannel, build_message, recipient_address
from consumers.channels.sms import SnsSmsChannel, classify_client_error
from nyc311.settings import Settings
from tests.servers import (
    Moto,
    SmtpServer,
    free_port,
    moto_answers,
    received,
    smtp_greets,
    start,
    stop_process,
    wait_until,
)

SMTP_SERVER_SCRIPT = Path(__file__).with_name("smtp_server.py")
SMTP_USER = "dispatcher"
SMTP_PASSWORD = "correct horse battery staple"


# ---------------------------------------------------------------- helpers


def survey(**changes: object) -> OutgoingSurvey:
    survey_id = str(uuid.uuid4())
    link = f"https://311.nyc.gov/encuesta/{survey_id}"
    base = OutgoingSurvey(
        survey_id=survey_id,
        language="es",
        email="maria.gonzalez@example.org",
        phone="+12125550123",
        subject="Encuesta de satisfacción del 311: ¿cómo lo hicimos?",
        text=f"Su solicitud fue cerrada. Díganos qué le pareció: {link}\n",
        html=f'<p>Su solicitud fue cerrada. <a href="{link}">Responda la encuesta</a></p>',
        sms=f"NYC 311: su solicitud fue cerrada. Encuesta: {link}",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------- SMTP servers


@dataclass
class TlsFiles:
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


def self_signed(folder: Path) -> TlsFiles:
    """A certificate for 127.0.0.1 (and localhost), its own issuer, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nyc311 test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(folder / "cert.pem", folder / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_smtp(tmp_path_factory: pytest.TempPathFactory,
             tls_files: TlsFiles) -> Iterator[SmtpServer]:
    """tests/consumers/smtp_server.py: STARTTLS and AUTH required, some recipients refused."""
    folder = tmp_path_factory.mktemp("tls-smtp")
    port = free_port()
    log = folder / "server.log"
    proc = start([sys.executable, str(SMTP_SERVER_SCRIPT), "--port", str(port),
                  "--maildir", str(folder / "maildir"), "--cert", str(tls_files.cert),
                  "--key", str(tls_files.key), "--user", SMTP_USER,
                  "--password", SMTP_PASSWORD], log)
    wait_until(lambda: smtp_greets(port), proc, log, "the TLS SMTP server")
    yield SmtpServer(port, folder / "maildir", proc, log)
    stop_process(proc)


def tls_channel(server: SmtpServer, files: TlsFiles, password: str = SMTP_PASSWORD,
                **kwargs: object) -> SmtpChannel:
    return SmtpChannel("127.0.0.1", server.port, starttls=True, username=SMTP_USER,
                       password=password, ssl_context=files.client_context(), timeout=10,
                       **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- SMTP tests


def test_spanish_survey_arrives_whole(plain_smtp: Callable[[], SmtpServer]) -> None:
    server = plain_smtp()
    channel = SmtpChannel("127.0.0.1", server.port, starttls=False, timeout=10,
                          sender="NYC 311 <encuestas@311.nyc.gov>")
    outgoing = survey()
    channel.send(outgoing)
    channel.close()

    [message] = received(server.maildir)
    assert message["To"] == "maria.gonzalez@example.org"
    assert message["X-RcptTo"] == "maria.gonzalez@example.org"
    assert message["X-MailFrom"] == "encuestas@311.nyc.gov"
    assert message["From"].addresses[0].addr_spec == "encuestas@311.nyc.gov"
    assert message["Subject"] == "Encuesta de satisfacción del 311: ¿cómo lo hicimos?"
    assert message["Content-Language"] == "es"
    assert message["Message-ID"] == f"<{outgoing.survey_id}@surveys.311.nyc.gov>"
    assert message["Auto-Submitted"] == "auto-generated"
    sent_at = message["Date"].datetime
    assert abs((dt.datetime.now(dt.UTC) - sent_at).total_seconds()) < 60
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    link = f"https://311.nyc.gov/encuesta/{outgoing.survey_id}"
    assert text.get_content() == outgoing.text
    assert "Díganos" in text.get_content() and link in text.get_content()
    assert f'href="{link}"' in html.get_content()


def test_headers_are_seven_bit_on_the_wire() -> None:
    """Non-ASCII subject is RFC 2047 encoded and bodies quoted-printable: any relay takes it."""
    outgoing = survey(language="zh", subject="311 满意度调查", text="您好\n", html="<p>您好</p>")
    raw = bytes(build_message(outgoing, sender="NYC 311 <surveys@311.nyc.gov>",
                              recipient="li@example.org"))
    raw.decode("ascii")  # raises if any 8-bit byte reached the wire form
    [subject] = [line for line in raw.splitlines() if line.startswith(b"Subject:")]
    assert b"=?utf-8?" in subject
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "311 满意度调查"


def test_connection_is_reused_and_replaced_when_the_server_restarts(
        plain_smtp: Callable[[], SmtpServer]) -> None:
    server = plain_smtp()
    channel = SmtpChannel("127.0.0.1", server.port, starttls=False, timeout=10)
    first, second, third = survey(), survey(), survey()
    channel.send(first)
    channel.send(second)
    stop_process(server.proc)
    plain_smtp()  # same port, same Maildir: the kept connection is dead
    channel.send(third)
    channel.close()
    # aiosmtpd records the client's address and port (X-Peer): one connection, then a new one.
    peers = {m["Message-ID"]: m["X-Peer"] for m in received(server.maildir)}
    assert set(peers) == {s.message_id for s in (first, second, third)}
    assert peers[first.message_id] == peers[second.message_id] != peers[third.message_id]


def test_starttls_and_auth_deliver(tls_smtp: SmtpServer, tls_files: TlsFiles) -> None:
    channel = tls_channel(tls_smtp, tls_files)
    outgoing = survey(email="tls.person@example.org")
    channel.send(outgoing)
    channel.close()
    [message] = [m for m in received(tls_smtp.maildir) if m["Message-ID"] == outgoing.message_id]
    assert message["To"] == "tls.person@example.org"
    assert message["Subject"] == outgoing.subject


def test_wrong_password_waits_for_the_operator(tls_smtp: SmtpServer, tls_files: TlsFiles,
                                               caplog: pytest.LogCaptureFixture) -> None:
    channel = tls_channel(tls_smtp, tls_files, password="wrong")
    with caplog.at_level(logging.ERROR), pytest.raises(ChannelUnavailableError) as caught:
        channel.send(survey())
    assert isinstance(caught.value, TransientSendError)  # retried, never recorded as failed
    assert "535" in str(caught.value)
    assert any("refused the login" in r.getMessage() for r in caplog.records)


def test_refused_recipient_is_permanent_and_the_connection_stays_usable(
        tls_smtp: SmtpServer, tls_files: TlsFiles) -> None:
    channel = tls_channel(tls_smtp, tls_files)
    with pytest.raises(PermanentSendError, match="550"):
        channel.send(survey(email="nobody@refused.example"))
    with pytest.raises(TransientSendError, match="450") as deferred:
        channel.send(survey(email="busy@deferred.example"))
    assert not isinstance(deferred.value, PermanentSendError)
    after = survey(email="after.refusal@example.org")
    channel.send(after)
    channel.close()
    assert after.message_id in {m["Message-ID"] for m in received(tls_smtp.maildir)}


def test_untrusted_certificate_is_not_accepted(tls_smtp: SmtpServer) -> None:
    channel = SmtpChannel("127.0.0.1", tls_smtp.port, starttls=True, username=SMTP_USER,
                          password=SMTP_PASSWORD, timeout=10)  # system CAs only
    with pytest.raises(ChannelUnavailableError, match="certificate"):
        channel.send(survey())


def test_starttls_required_but_not_offered_sends_nothing(
        plain_smtp: Callable[[], SmtpServer]) -> None:
    server = plain_smtp()
    channel = SmtpChannel("127.0.0.1", server.port, starttls=True, timeout=10)
    with pytest.raises(ChannelUnavailableError, match="STARTTLS"):
        channel.send(survey())
    assert received(server.maildir) == []


def test_nothing_listening_is_transient() -> None:
    channel = SmtpChannel("127.0.0.1", free_port(), starttls=False, timeout=5)
    with pytest.raises(TransientSendError) as caught:
        channel.send(survey())
    assert not isinstance(caught.value, ChannelUnavailableError)


@pytest.mark.parametrize("address", ["not an address", "someone@", "@example.org",
                                     "a@b.example\r\nBcc: x@y.example", "   "])
def test_unusable_address_is_permanent_without_connecting(address: str) -> None:
    channel = SmtpChannel("127.0.0.1", free_port(), starttls=False, timeout=5)
    with pytest.raises(PermanentSendError):
        channel.send(survey(email=address))


def test_internationalized_domain_is_sent_as_idna() -> None:
    assert recipient_address(" ana@correo.españa.example ") == "ana@correo.xn--espaa-rta.example"


def test_can_send_needs_an_email() -> None:
    channel = SmtpChannel("smtp.example.org")
    assert channel.can_send(survey())
    assert not channel.can_send(survey(email=None))
    assert not channel.can_send(survey(email=""))


def test_survey_rejects_unknown_language_and_non_uuid_id() -> None:
    with pytest.raises(ValueError, match="language"):
        survey(language="de")
    with pytest.raises(ValueError, match="survey_id"):
        survey(survey_id="42")


# ---------------------------------------------------------------- SNS (moto server)


@pytest.mark.usefixtures("aws_env")
def test_sms_reaches_sns(moto_server: Moto) -> None:
    channel = SnsSmsChannel("us-east-1", moto_server.url)
    outgoing = survey(phone="+17185550142")
    channel.send(outgoing)
    channel.close()
    sent = [m for m in moto_server.sms_messages() if m["message"] == outgoing.sms]
    assert [(m["phone_number"], m["message"]) for m in sent] == [("+17185550142", outgoing.sms)]


@pytest.mark.usefixtures("aws_env")
def test_invalid_phone_number_is_permanent(moto_server: Moto) -> None:
    channel = SnsSmsChannel("us-east-1", moto_server.url)
    outgoing = survey(phone="not-a-number")
    with pytest.raises(PermanentSendError, match="InvalidParameter"):
        channel.send(outgoing)
    assert all(m["message"] != outgoing.sms for m in moto_server.sms_messages())


@pytest.mark.usefixtures("aws_env")
def test_sms_too_long_is_permanent(moto_server: Moto) -> None:
    channel = SnsSmsChannel("us-east-1", moto_server.url)
    with pytest.raises(PermanentSendError, match="InvalidParameter"):
        channel.send(survey(sms="x" * 1601))


@pytest.mark.usefixtures("aws_env")
def test_sns_down_is_transient() -> None:
    channel = SnsSmsChannel("us-east-1", f"http://127.0.0.1:{free_port()}", connect_timeout=2)
    with pytest.raises(TransientSendError) as caught:
        channel.send(survey())
    assert not isinstance(caught.value, ChannelUnavailableError)


def test_no_credentials_waits_for_the_operator(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path, moto_server: Moto) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    channel = SnsSmsChannel("us-east-1", moto_server.url)
    with pytest.raises(ChannelUnavailableError, match="credentials"):
        channel.send(survey())


@pytest.fixture(scope="module")
def moto_server_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """A moto server that checks credentials (INITIAL_NO_AUTH_ACTION_COUNT=0), as AWS does."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    wait_until(lambda: moto_answers(url), proc, log, "moto server with auth")
    yield Moto(url)
    stop_process(proc)


@pytest.mark.usefixtures("aws_env")
def test_unknown_access_key_waits_for_the_operator(moto_server_with_auth: Moto,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    channel = SnsSmsChannel("us-east-1", moto_server_with_auth.url)
    outgoing = survey()
    with caplog.at_level(logging.ERROR), pytest.raises(ChannelUnavailableError,
                                                       match="InvalidClientTokenId"):
        channel.send(outgoing)
    assert any("SMS channel unavailable" in r.getMessage() for r in caplog.records)
    assert all(m["message"] != outgoing.sms for m in moto_server_with_auth.sms_messages())


def client_error(code: str, status: int) -> ClientError:
    """The exception botocore raises for an SNS error answer with this code and status."""
    return ClientError({"Error": {"Type": "Sender", "Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "Publish")


@pytest.mark.parametrize(("code", "status", "expected"), [
    # Answers a test server cannot be made to give on demand: classified from their shape.
    ("Throttling", 400, TransientSendError),
    ("ThrottledException", 429, TransientSendError),
    ("KMSThrottling", 400, TransientSendError),
    ("InternalError", 500, TransientSendError),
    ("ServiceUnavailable", 503, TransientSendError),
    ("InvalidParameter", 500, TransientSendError),  # a 5xx is the server's fault, whatever code
    ("SomethingNew", 400, TransientSendError),
    ("InvalidParameterValue", 400, PermanentSendError),
    ("EndpointDisabled", 400, PermanentSendError),
    ("AuthorizationError", 403, ChannelUnavailableError),
    ("OptInRequired", 403, ChannelUnavailableError),
])
def test_sns_error_classification(code: str, status: int, expected: type[Exception]) -> None:
    error = classify_client_error(client_error(code, status))
    assert type(error) is expected
    assert code in str(error)


def test_can_send_needs_a_phone() -> None:
    channel = SnsSmsChannel("us-east-1", "http://127.0.0.1:9")
    assert channel.can_send(survey())
    assert not channel.can_send(survey(phone=None))
    assert not channel.can_send(survey(phone=" "))


# ---------------------------------------------------------------- channels_from_settings


def settings(**values: object) -> Settings:
    return Settings(kafka_bootstrap_servers="127.0.0.1:9", database_url="postgresql://x@y/z",
                    **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("values", "expected"), [
    ({}, ["SMS"]),
    ({"sms_provider": "none"}, []),
    ({"smtp_host": "smtp.example.org"}, ["EMAIL", "SMS"]),
    ({"smtp_host": "smtp.example.org", "sms_provider": "none"}, ["EMAIL"]),
])
def test_channels_follow_settings(values: dict[str, object], expected: list[str]) -> None:
    assert [c.name for c in channels_from_settings(settings(**values))] == expected


def test_both_channels_implement_the_protocol() -> None:
    assert isinstance(SmtpChannel("smtp.example.org"), Channel)
    assert isinstance(SnsSmsChannel("us-east-1"), Channel)


def test_channels_carry_their_settings() -> None:
    email_channel, sms_channel = channels_from_settings(settings(
        smtp_host="smtp.example.org", smtp_port=2525, smtp_starttls=False,
        smtp_username="u", smtp_password="s3cret-pw", smtp_from="NYC 311 <x@311.nyc.gov>",
        aws_region="us-west-2", sns_endpoint_url="http://127.0.0.1:4566"))
    assert isinstance(email_channel, SmtpChannel) and isinstance(sms_channel, SnsSmsChannel)
    assert (email_channel.host, email_channel.port, email_channel.starttls) == (
        "smtp.example.org", 2525, False)
    assert (email_channel.username, email_channel.envelope_from) == ("u", "x@311.nyc.gov")
    assert "s3cret-pw" not in repr(email_channel)
    assert (sms_channel.region, sms_channel.endpoint_url) == ("us-west-2",
                                                              "http://127.0.0.1:4566")


@pytest.mark.usefixtures("aws_env")
def test_first_channel_that_can_send_delivers(plain_smtp: Callable[[], SmtpServer],
                                              moto_server: Moto) -> None:
    """Built from settings alone, the channels deliver to the real servers; email first."""
    server = plain_smtp()
    channels = channels_from_settings(settings(
        smtp_host="127.0.0.1", smtp_port=server.port, smtp_starttls=False,
        sns_endpoint_url=moto_server.url))
    by_email = survey()
    by_sms = survey(email=None, phone="+13475550199")
    for outgoing in (by_email, by_sms):
        next(c for c in channels if c.can_send(outgoing)).send(outgoing)
    for channel in channels:
        channel.close()
    assert [m["Message-ID"] for m in received(server.maildir)] == [by_email.message_id]
    assert ("+13475550199", by_sms.sms) in {
        (m["phone_number"], m["message"]) for m in moto_server.sms_messages()}
    assert all(m["message"] != by_email.sms for m in moto_server.sms_messages())
