"""Logging set-up: human-readable lines on a terminal, one JSON object per line elsewhere.

JSON lines carry the extra fields a call passes (``log.info(..., extra={"topic": t,
"partition": p, "offset": o, "request_id": r})``) so log search can follow one record.

Every handler set up here carries :class:`nyc311.redact.RedactingFilter`: whatever a record
says, an email address or a phone number in it (message, arguments, exception text, extra
fields) is written as ``<address>`` / ``<number>``. Residents' contacts never reach a log.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

from nyc311.redact import RedactingFilter

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # set (and redacted) by RedactingFilter when it ran
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str | None = None,
                  stream: TextIO | None = None) -> None:
    """``fmt``: ``json`` or ``text``; default ``NYC311_LOG_FORMAT``, else text on a terminal.
    ``stream``: where lines go (default: standard error)."""
    stream = stream or sys.stderr
    fmt = fmt or os.environ.get("NYC311_LOG_FORMAT") or ("text" if stream.isatty() else "json")
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic", "botocore", "boto3", "urllib3"):  # per-call INFO lines add nothing
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
