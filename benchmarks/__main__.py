"""``python -m benchmarks`` (``make bench``): how fast the pipeline is, as ratios against what the
machine can do.

Why ratios: an absolute figure (events/s) says as much about the machine, and whatever else runs
on it, as about the code. So every run measures, on the same services and the same data, the two
limits the projector cannot beat: reading and decoding the topics (a) and COPYing the same rows
into the same tables (b). The projector (c) is reported as a share of the slower of the two; the
target c ≥ 0.5 × min(a, b) says "the projector's own work costs no more than the work nobody can
avoid".

Everything happens in a fresh database and under a fresh topic prefix, removed at the end:

- produce a NYC-scale month: the simulator's requests and closures, plus the surveys the
  dispatcher would send (one per closure of a request with a contact) and the answers a realistic
  share of people give; the first half of the month first, then the rest;
- peak memory of the projector subprocess after the first half and after the whole month, to
  show that it does not grow with the topics;
- (a) raw consume + decode, (b) raw COPY, (c) the projector catching up from zero;
- (d) the month's aggregation and publication; (e) end-to-end latency at a steady rate;
- (f) a year's rebuild, extrapolated from (c), or measured with ``--year``;
- a pyinstrument profile of the projector when (c) or (f) misses its target.

This module holds the command line: its options, the run under a SIGTERM handler that cleans up
as after Ctrl-C, and where the report goes. The run itself is :class:`benchmarks.runner.Bench`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

from benchmarks.dataset import DEFAULT_MONTH, SEED
from benchmarks.profile import clean_paths
from benchmarks.report import json_default, render
from benchmarks.runner import Bench, say
from nyc311.stop import StopFlag

PROG = "python -m benchmarks"
DEFAULT_OUT = Path("benchmarks") / "RESULTS.md"
SMOKE_REQUESTS = 1_500


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Benchmark the pipeline on the local services, in a fresh database and "
                    "topic prefix (both removed at the end).")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests a month (default 270000; 1500 with --smoke)")
    parser.add_argument("--month", default=DEFAULT_MONTH,
                        help=f"the month to simulate, or the last of --year's (default "
                             f"{DEFAULT_MONTH})")
    parser.add_argument("--year", action="store_true",
                        help="twelve months, so (f) is measured rather than extrapolated")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"the report (default {DEFAULT_OUT}; with --smoke: stdout only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--smoke", action="store_true",
                        help="a few thousand events: checks the harness, not the speed")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="NYC311_BATCH_SIZE for (b), (c) and the subprocesses")
    parser.add_argument("--synchronous-commit", choices=("on", "off"), default=None,
                        help="set synchronous_commit on the benchmark databases (what-if)")
    parser.add_argument("--latency-rate", type=float, default=None,
                        help="events/s in (e) (default 1000; 200 with --smoke)")
    parser.add_argument("--latency-seconds", type=float, default=None,
                        help="seconds of (e) (default 20; 3 with --smoke)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="worker processes of the projector in (c) (default: one per CPU, "
                             "%(default)s here); (c) is also measured with one")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="always",
                        help="pyinstrument one projector process's catch-up: always (the "
                             "default), auto (only when a target is missed) or never")
    parser.add_argument("--profile-seconds", type=float, default=None,
                        help="seconds of catch-up to profile (default 30; 5 with --smoke)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.requests = args.requests or (SMOKE_REQUESTS if smoke else 270_000)
    args.latency_rate = args.latency_rate or (200.0 if smoke else 1000.0)
    args.latency_seconds = args.latency_seconds or (3.0 if smoke else 20.0)
    args.profile_seconds = args.profile_seconds or (5.0 if smoke else 30.0)
    if args.out is None and not smoke:
        args.out = DEFAULT_OUT
    if args.requests < 100:
        parser.error("--requests: at least 100")
    return args


def describe_command(argv: list[str]) -> str:
    """The command line for the report: file options by their names only (no machine paths),
    and ``make bench`` when make ran it."""
    shown, hide_next = [], False
    for arg in argv:
        shown.append(Path(arg).name if hide_next else arg)
        hide_next = arg in ("--out", "--json")
    command = " ".join([PROG, shlex.join(shown)]).strip()
    return f"make bench ({command})" if os.environ.get("MAKELEVEL") else command


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = describe_command(sys.argv[1:] if argv is None else argv)
    bench = Bench(args)

    def exit_as_on_ctrl_c() -> None:  # SIGTERM cleans up as Ctrl-C (KeyboardInterrupt) does
        raise SystemExit(128 + signal.SIGTERM)

    stop = StopFlag("cleaning up", signals=(signal.SIGTERM,)).on_stop(exit_as_on_ctrl_c)
    try:
        with stop:
            bench.run()
    except BaseException:
        # The handler's SystemExit can surface as another error when it lands inside a C
        # extension (librdkafka's config parsing turns it into a TypeError): once SIGTERM came,
        # whatever ended the run, the exit is SIGTERM's.
        if not stop.is_set():
            raise
    finally:
        say("cleaning up …")
        left = bench.cleanup()
        for item in left:
            print(f"not removed: {item}", file=sys.stderr)
    if stop.is_set():
        return 128 + signal.SIGTERM
    bench.notes += [f"not removed at the end of the run: {item}" for item in left]
    report = clean_paths(render(bench, command))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n", encoding="utf-8")
        say(f"wrote {args.out}")
    else:
        print(report)
    if args.json is not None:
        args.json.write_text(json.dumps({**bench.figures, "profile": bench.profile,
                                         "notes": bench.notes}, default=json_default,
                                        indent=2) + "\n", encoding="utf-8")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
