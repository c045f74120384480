"""A real SMTP server for the channel tests: STARTTLS required, AUTH required, mail to a Maildir.

Run as its own process (``python smtp_server.py --port P --maildir D --cert C --key K --user U
--password PW``) so the tests talk to it over TCP exactly as they would to a production relay.
Recipients ending in ``@refused.example`` get ``550``, those ending in ``@deferred.example`` get
``450``. It prints ``ready`` once it accepts connections and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


class RefusingMailbox(Mailbox):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.lower().endswith("@refused.example"):
            return "550 5.1.1 No such user here"
        if address.lower().endswith("@deferred.example"):
            return "450 4.2.1 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class Authenticator:
    def __init__(self, user: str, password: str) -> None:
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == self.user
              and auth_data.password == self.password)
        return AuthResult(success=ok, handled=False)


def serve(controller: Controller) -> None:
    """Start ``controller``, say ``ready``, and serve until SIGTERM or SIGINT."""
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()
    sys.exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    controller = Controller(
        RefusingMailbox(args.maildir), hostname=args.host, port=args.port,
        tls_context=tls, require_starttls=True, auth_required=True, auth_require_tls=True,
        authenticator=Authenticator(args.user, args.password),
    )
    serve(controller)


if __name__ == "__main__":
    main()
