"""A consumer run as several processes of one consumer group (``--processes N``).

Kafka spreads a group's partitions over its members. A member that is a process of its own has
its own interpreter, so N processes keep N cores busy where threads of one process would take
turns on one interpreter lock (measured in benchmarks/README.md). The parent only supervises:

- SIGTERM or SIGINT to the parent is passed on to every worker; each finishes the batch in
  hand, commits it and leaves the group, as a single process does;
- a worker that fails stops the others and the parent exits with an error, for the service
  manager to restart the whole (offsets live in PostgreSQL with the rows: nothing is lost);
- a worker stopped with work it could not commit (the database away at SIGTERM or at
  ``--max-seconds``) says so with exit status 75 (``EX_TEMPFAIL``): not a failure, the others
  go on, and the run's totals count it as unfinished;
- with ``until_caught_up`` each worker stops once its partitions have no lag; as workers
  leave, the group gives their partitions to the rest, which find them caught up and stop too.
  Each worker judges only what it holds, so a partition moving between two workers as they stop
  can be left behind by both: a caller that needs every partition caught up (the rebuild)
  checks them all afterwards;
- the workers project into the schema their settings name, under the group they are given (the
  projector's by default; a rebuild's);
- with a metrics port P, worker i serves ``/metrics`` and ``/healthz`` on P + i;
- on Linux a worker whose parent dies, even by SIGKILL, is sent SIGTERM (``PR_SET_PDEATHSIG``)
  and stops as above, instead of running on as an orphan member of the group.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from nyc311.settings import Settings
from nyc311.stop import StopFlag

log = logging.getLogger(__name__)


@dataclass
class WorkerTotals:
    """What the workers of one run did, summed."""

    records: int = 0
    batches: int = 0
    dead_lettered: int = 0
    failed: int = 0  # workers that exited with an error
    unfinished: int = 0  # workers stopped with uncommitted work (exit status EX_TEMPFAIL)


def _projector_worker(index: int, settings: Settings, group_id: str | None, log_level: str,
                      log_format: str | None, until_caught_up: bool, max_seconds: float | None,
                      metrics_port: int, results: Any) -> None:
    """One worker: the projector's consume loop, in a process of its own (group ``group_id``,
    the projector's by default; a rebuild passes its own)."""
    from consumers.loop import EX_TEMPFAIL, ConsumeLoop
    from consumers.projector import GROUP_ID, Projector
    from nyc311.logs import setup_logging

    setup_logging(log_level, log_format)
    _stop_with_parent()
    loop = ConsumeLoop(settings, group_id or GROUP_ID, Projector(settings))
    loop.install_signal_handlers()
    if metrics_port:
        from nyc311.metrics import serve_metrics

        serve_metrics(metrics_port + index, loop.is_ready, loop.metrics)
    stats = loop.run(until_caught_up=until_caught_up, max_seconds=max_seconds)
    results.put((index, stats.records, stats.batches, stats.dead_lettered))
    if stats.abandoned:
        sys.exit(EX_TEMPFAIL)


def _stop_with_parent() -> None:
    """Linux: get SIGTERM when the parent dies, even by SIGKILL, rather than run on orphaned."""
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    except (OSError, AttributeError):  # no prctl: the parent's own handlers still apply
        return
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid != os.getppid():  # died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_projector_processes(settings: Settings, processes: int, *, until_caught_up: bool,
                            max_seconds: float | None, metrics_port: int,
                            log_level: str = "INFO",
                            log_format: str | None = None,
                            group_id: str | None = None,
                            stop: StopFlag | None = None) -> WorkerTotals:
    """Run ``processes`` projector workers in one group until they have all stopped.

    ``settings`` (a dataclass: it is pickled to each spawned worker) say which schema they
    project into; ``group_id`` is the contract group name (the projector's by default);
    ``stop``, see :func:`supervise`."""
    return supervise(_projector_worker, processes,
                     (settings, group_id, log_level, log_format, until_caught_up, max_seconds,
                      metrics_port), stop=stop)


def worker_pids(parent: int) -> list[int]:
    """The worker processes :func:`supervise` started under ``parent`` (Linux ``/proc``):
    its children that run multiprocessing's ``spawn_main``, not its resource tracker."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return []
    found = []
    for child in map(int, children):
        with contextlib.suppress(OSError):  # exited meanwhile
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def supervise(target: Callable[..., None], processes: int,
              args: tuple[Any, ...], stop: StopFlag | None = None) -> WorkerTotals:
    """Start ``target(index, *args, results)`` in ``processes`` spawned processes; pass stop
    signals on; stop them all when one fails. ``target`` puts (index, records, batches,
    dead-lettered) on ``results`` when it ends normally (exit status 0, or ``EX_TEMPFAIL``
    when it stopped with uncommitted work).

    By default the signals are caught here for the duration; a caller with a :class:`StopFlag`
    of its own (the rebuild, which must also know it was interrupted) passes it as ``stop``:
    setting it stops the workers, and its handlers stay as the caller installed them."""
    from consumers.loop import EX_TEMPFAIL

    ctx = multiprocessing.get_context("spawn")  # no inherited librdkafka threads or sockets
    results = ctx.Queue()
    workers = [ctx.Process(target=target, args=(i, *args, results), name=f"worker-{i}")
               for i in range(processes)]

    stopping = False  # the workers were told to stop (a signal, or another worker failed)

    def stop_all(force: bool = False) -> None:
        """SIGTERM (each worker finishes its batch), or SIGKILL with ``force``."""
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    if force:
                        worker.kill()
                    else:
                        worker.terminate()

    own = stop is None
    if stop is None:
        stop = StopFlag(f"stopping {processes} workers after their current batch", logger=log)
        stop.install()
    stop.on_stop(stop_all)
    totals = WorkerTotals()
    try:
        for worker in workers:
            worker.start()
        log.info("started %d workers: pids %s", processes,
                 ", ".join(str(w.pid) for w in workers))
        if stop.is_set():  # set while they started: they stop as soon as they can
            stop_all()
        running = {w.sentinel: w for w in workers}
        while running:
            for sentinel in wait(list(running)):
                worker = running.pop(sentinel)  # type: ignore[arg-type]
                worker.join()
                if worker.exitcode == EX_TEMPFAIL:  # stopped with work left: it said why
                    totals.unfinished += 1
                    continue
                if stopping and worker.exitcode == -signal.SIGTERM:
                    # our SIGTERM came before the worker had its handler, which it installs
                    # before it consumes anything: it was starting, had no work in hand and
                    # left none undone
                    continue
                if worker.exitcode != 0 and totals.failed == 0:
                    log.error("%s (pid %s) exited with code %s: stopping the others",
                              worker.name, worker.pid, worker.exitcode)
                    stop_all()
                if worker.exitcode != 0:
                    totals.failed += 1
    except BaseException:
        stop_all()
        for worker in workers:
            worker.join(30)
        stop_all(force=True)
        raise
    finally:
        if own:
            stop.restore()
    for _ in range(processes - totals.failed):  # a worker that ended normally put its stats
        try:
            _index, records, batches, dead = results.get(timeout=10)
        except queue.Empty:
            break
        totals.records += records
        totals.batches += batches
        totals.dead_lettered += dead
    results.close()
    return totals
