"""Logging set-up: human-readable lines on a terminal, one JSON object per line elsewhere.

JSON lines carry the extra fields a call passes (``log.info(..., extra={"topic": t,
"partition": p, "offset": o, "request_id": r})``) so log search can follow one record.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

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
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """``fmt``: ``json`` or ``text``; default ``NYC311_LOG_FORMAT``, else text on a terminal."""
    fmt = fmt or os.environ.get("NYC311_LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic", "botocore", "boto3", "urllib3"):  # per-call INFO lines add nothing
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
