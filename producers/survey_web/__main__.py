"""``python -m producers.survey_web``: the survey page without the ``nyc311`` command."""

from __future__ import annotations

import argparse
import os

from nyc311.logs import setup_logging
from nyc311.settings import load_settings
from producers.survey_web.server import DEFAULT_HOST, DEFAULT_PORT, serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m producers.survey_web",
                                     description="Serve the 311 satisfaction survey page.")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    setup_logging(os.environ.get("NYC311_LOG_LEVEL", "INFO").upper())
    serve(load_settings(), args.host, args.port)


if __name__ == "__main__":
    main()
