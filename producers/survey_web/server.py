"""Run the survey page under uvicorn (``nyc311 survey-web``).

Uvicorn's access log is off: every survey URL carries its link token, and a token in a log file
is a way to answer someone else's survey. The app logs what matters (a survey id answered, a
link refused) without it. SIGTERM and Ctrl-C finish the requests in hand, then the outbox relay
sends what is due (for up to ten seconds) and stops; answers still unsent wait in the outbox for
the next start.
"""

from __future__ import annotations

import uvicorn

from nyc311.settings import Settings
from producers.survey_web.app import create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8311


def server(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
           forwarded_allow_ips: str | None = None) -> uvicorn.Server:
    """A configured uvicorn server for the survey page, not yet started."""
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        access_log=False,
        server_header=False,
        log_config=None,  # keep the process's logging set-up (nyc311.logs)
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        timeout_graceful_shutdown=30,
    )
    return uvicorn.Server(config)


def serve(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          forwarded_allow_ips: str | None = None) -> None:
    """Serve the survey page until SIGTERM or Ctrl-C."""
    server(settings, host, port, forwarded_allow_ips).run()
