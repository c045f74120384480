"""An SMTP server that quotes the recipient back in its errors, as Postfix and Exchange do.

Run as its own process (``python echo_smtp_server.py --port P --maildir D``): plain SMTP (no TLS,
no AUTH), SMTPUTF8 offered, mail to a Maildir. By recipient domain:

- ``…refused.example``: ``550 5.1.1 <address>: Recipient address rejected: User unknown …``
- ``…deferred.example``: ``450 4.2.0 <address>: Recipient address rejected: Greylisted …``
- ``…fails-after.example``: the recipient is accepted, then DATA gets
  ``554 5.7.1 <address>: Message refused …`` (a server that accepts, then errors)
- anything else: delivered.

It prints ``ready`` once it accepts connections and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from smtp_server import serve  # beside this file: how both servers run and stop


class EchoingMailbox(Mailbox):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain.endswith("refused.example"):
            return (f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in "
                    "virtual mailbox table")
        if domain.endswith("deferred.example"):
            return f"450 4.2.0 <{address}>: Recipient address rejected: Greylisted, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        failing = [r for r in envelope.rcpt_tos
                   if r.rpartition("@")[2].lower().endswith("fails-after.example")]
        if failing:
            return (f"554 5.7.1 <{failing[0]}>: Message refused by the content policy of "
                    f"{failing[0]}")
        result: str = await super().handle_DATA(server, session, envelope)
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    args = parser.parse_args()

    controller = Controller(EchoingMailbox(args.maildir), hostname=args.host, port=args.port,
                            enable_SMTPUTF8=True)
    serve(controller)


if __name__ == "__main__":
    main()
