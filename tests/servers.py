"""Real server processes for tests: an SMTP server (aiosmtpd) and an SNS-compatible one (moto).

Each runs as a separate process on a free local port and is stopped at teardown; what was
delivered is read back from the server's side.
"""

from __future__ import annotations

import email
import json
import mailbox
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` free ports, all different."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    """The status and body of a GET; an HTTP error's too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path,
               what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()}")
        if ready():
            return
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"{what} did not answer within {STARTUP_SECONDS} s: {log.read_text()}")


def smtp_greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(64).startswith(b"220")
    except OSError:
        return False


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def received(maildir: Path) -> list[EmailMessage]:
    """Every message the server put in the Maildir, parsed with the modern email policy."""
    box = mailbox.Maildir(maildir, factory=None, create=False)
    messages = []
    for key in box.iterkeys():
        parsed = email.message_from_bytes(box.get_bytes(key), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


@dataclass
class SmtpServer:
    port: int
    maildir: Path
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def plain_smtp(tmp_path: Path) -> Iterator[Callable[[], SmtpServer]]:
    """aiosmtpd's own command line: no TLS, no AUTH, each message into a Maildir.

    Yields a starter, so a test can restart the server on the same port and Maildir.
    """
    port = free_port()
    maildir = tmp_path / "maildir"
    procs: list[subprocess.Popen[bytes]] = []

    def start_server() -> SmtpServer:
        log = tmp_path / f"aiosmtpd-{len(procs)}.log"
        proc = start([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                      "-c", "aiosmtpd.handlers.Mailbox", str(maildir)], log)
        procs.append(proc)
        wait_until(lambda: smtp_greets(port), proc, log, "aiosmtpd")
        return SmtpServer(port, maildir, proc, log)

    yield start_server
    for proc in procs:
        stop_process(proc)


@dataclass
class Moto:
    url: str

    def sms_messages(self) -> list[dict[str, str]]:
        """The SMS moto's SNS backend recorded, read over its HTTP API."""
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=10) as response:
            data = json.load(response)
        return list(data.get("sns", {}).get("SMS", []))


def moto_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log)
    wait_until(lambda: moto_answers(url), proc, log, "moto server")
    yield Moto(url)
    stop_process(proc)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials moto accepts, and no AWS configuration of the machine leaking in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SNS"):
        monkeypatch.delenv(name, raising=False)


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free local port in a thread; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# -- headless Chromium (Debian's package, driven by Playwright) ------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason=f"{CHROMIUM} not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
