"""What every command shares: the settings (loaded on first use, so `--help` works with nothing
configured), the TIMESTAMP option type, and the environment listed under `nyc311 --help`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from nyc311.settings import DOCUMENTED, Settings, SettingsError, load_settings


def env_help() -> str:
    rows = [f"  {name:<26} {text}" + (f" (default: {default})" if default else "")
            for name, (default, text) in DOCUMENTED.items()]
    return "\b\nEnvironment:\n" + "\n".join(rows)


class Instant(click.ParamType):
    """An ISO 8601 instant (UTC when it has no offset), or ``now``."""

    name = "TIMESTAMP"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        if value == "now":
            return datetime.now(UTC)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"expected ISO 8601 such as 2026-11-01T00:00:00-04:00, or 'now'; "
                      f"got {value!r}", param, ctx)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


INSTANT = Instant()


class Context:
    """Settings are loaded on first use, so `--help` works with nothing configured."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self.log_level: str = "INFO"
        self.log_format: str | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except SettingsError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings


pass_ctx = click.make_pass_decorator(Context, ensure=True)
