"""The producers: `nyc311 import-nyc-csv` and `nyc311 simulate`."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

import click

from cli.context import INSTANT, Context, pass_ctx


@click.command("import-nyc-csv")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--processes", type=click.IntRange(1, 64), default=None,
              help="Worker processes that parse rows and encode events  [default: one per "
                   "CPU]. 1 reads the file in this process; a file under 8 MB always is.")
@pass_ctx
def import_nyc_csv_cmd(obj: Context, file: Path, progress: bool, processes: int | None) -> None:
    """Backfill from an NYC Open Data 311 CSV export (RequestCreated, RequestClosed).

    Every row is accounted for in the summary: imported, rejected (with reasons) or imported
    with an anomaly. Event ids are derived from the rows, so importing a file twice changes
    nothing in the projection. A file that is missing, a directory, empty, binary, not UTF-8,
    not CSV or without the export's required columns is refused with one line saying why
    (exit status 1) before anything is sent.

    Rows are parsed and encoded by worker processes, chunk by chunk, and produced in file
    order; the verdicts, line numbers and summary are those of a single pass.
    """
    from concurrent.futures.process import BrokenProcessPool

    from nyc311.kafka import BULK_OVERRIDES, EventProducer
    from nyc311.topics import ensure_topics, event_topics
    from producers.nyc_csv import NycCsvFormatError, check_nyc_csv
    from producers.nyc_import import default_processes, import_nyc_csv

    def refuse(exc: Exception) -> click.ClickException:
        if isinstance(exc, IsADirectoryError):
            return click.ClickException(f"{file} is a directory, not a CSV file")
        if isinstance(exc, OSError):
            return click.ClickException(f"cannot read {file}: {exc.strerror or exc}")
        return click.ClickException(str(exc))

    try:
        check_nyc_csv(file)
    except (NycCsvFormatError, OSError) as exc:
        raise refuse(exc) from None
    ensure_topics(obj.settings, event_topics(obj.settings))
    with EventProducer(obj.settings, **BULK_OVERRIDES) as producer:
        try:
            summary = import_nyc_csv(file, producer, progress=progress,
                                     processes=processes or default_processes())
        except (NycCsvFormatError, OSError) as exc:  # found deep inside the file
            raise refuse(exc) from None
        except BrokenProcessPool:
            raise click.ClickException(
                "a worker process of the import died (out of memory, or killed); the events "
                "sent so far are kept, and importing the file again sends the same ones") from None
    click.echo(summary.render())


@click.command()
@click.option("--month", required=True, help="Month to simulate, YYYY-MM (New York time).")
@click.option("--requests", "count", type=click.IntRange(1, 1_000_000), default=10_000,
              show_default=True, help="Service requests to create in the month.")
@click.option("--seed", type=int, default=311, show_default=True,
              help="Random seed; the same seed gives the same events.")
@click.option("--until", type=INSTANT, default=None,
              help="Leave out what happens after this instant (UTC unless it has an offset; "
                   "'now' works too): a month in progress.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@pass_ctx
def simulate(obj: Context, month: str, count: int, seed: int, until: datetime | None,
             progress: bool) -> None:
    """Produce a realistic month of NYC-like 311 traffic (created and closed events).

    Contacts are sealed under keys kept in the vault (the database), as producers should.

    With --until, events after that instant are left out: the month so far, with the requests
    not closed by then still open.
    """
    from producers.sealer import produce_sealed
    from producers.simulate import simulate_month

    try:
        events = simulate_month(month, count, seed)
        first = next(events, None)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from None
    wanted = ((name, record) for name, record in itertools.chain([first] if first else [], events)
              if until is None or record["occurred_at"] <= until)
    counts = produce_sealed(obj.settings, wanted, progress=progress)
    click.echo(f"produced {sum(counts.values()):,} events for {month} (seed {seed}): "
               + ", ".join(f"{n} {c:,}" for n, c in sorted(counts.items())))
