"""`nyc311 privacy erase`: one person's contact, on request."""

from __future__ import annotations

from typing import Any

import click

from cli.context import Context, pass_ctx


@click.group()
def privacy() -> None:
    """Residents' contacts: erase one person's on request."""


@privacy.command("erase")
@click.option("--request-id", "request_ids", multiple=True,
              help="Erase the contact given with this request (repeatable).")
@click.option("--contacts-from", type=click.File("r", encoding="utf-8"), default=None,
              help="Erase every request whose contact is one of the email addresses or phone "
                   "numbers in this file, one a line ('-': standard input). Read from a file so "
                   "the contact stays out of shell history and process lists.")
@click.option("--dry-run", is_flag=True, help="Count what would be erased; erase nothing.")
@pass_ctx
def privacy_erase(obj: Context, request_ids: tuple[str, ...], contacts_from: Any,
                  dry_run: bool) -> None:
    """Erase contacts now, whatever the retention: the keys are destroyed (every copy becomes
    unreadable) and the request is recorded as erased, so no replay brings the contact back."""
    from storage.db import connection
    from storage.vault import erase, find_requests

    if not request_ids and contacts_from is None:
        raise click.UsageError("give --request-id or --contacts-from")
    with connection(obj.settings) as conn:
        conn.autocommit = True
        ids = set(request_ids)
        if contacts_from is not None:
            ids.update(find_requests(conn, obj.settings, contacts_from.read().splitlines()))
        if dry_run:
            click.echo(f"would erase the contacts of {len(ids):,} requests")
            return
        keys, contacts = erase(conn, obj.settings, sorted(ids), "request") if ids else (0, 0)
    click.echo(f"erased the contacts of {len(ids):,} requests ({keys:,} keys destroyed, "
               f"{contacts:,} projected contacts removed)")
