"""The history backfill's benchmark (``python -m benchmarks.importer``) end to end, small.

Runs it as ``make bench`` does, against the real services, on a 2,000-row export, and checks
that its section is appended to the report after the text already there, that the figures in it
are positive and agree with each other (the ratios and the extrapolation are the arithmetic the
module prints them as), and that the run removed its database, topics and consumer groups. Like
test_bench_smoke.py, it never asserts a speed.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from tests.backends import Services

REPO = Path(__file__).resolve().parents[2]
HISTORY_REQUESTS = 40_000_000  # (j)'s requests, as benchmarks/importer.py defines them
EARLIER = "# Benchmark results\n\nThe month's report, written before the importer runs.\n"


def _env(services: Services) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "NYC311_", "MAKE"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=services.kafka_bootstrap_servers,
               DATABASE_URL=services.database_url, PYTHONUNBUFFERED="1")
    return env


def _importer(services: Services, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks.importer", *args], cwd=REPO,
                          env=_env(services), capture_output=True, text=True, timeout=600)


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _row(section: str, pattern: str) -> re.Match[str]:
    found = re.search(pattern, section, re.MULTILINE)
    assert found, f"no line matching {pattern!r} in:\n{section}"
    return found


def _leftovers(services: Services, prefix: str) -> tuple[list[str], list[str], list[str]]:
    """The benchmark's databases, topics and consumer groups whose names start with its
    prefixes (``nyc311_bench_import_<tag>``, ``benchimport<tag>``)."""
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        databases = [name for (name,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"nyc311_bench_import_{prefix}%",)).fetchall()]
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap_servers})
    topics = [t for t in admin.list_topics(timeout=10).topics
              if t.startswith(f"benchimport{prefix}")]
    listed = admin.list_consumer_groups(request_timeout=30).result()
    groups = [g.group_id for g in listed.valid if g.group_id.startswith(f"benchimport{prefix}")]
    return sorted(databases), sorted(topics), sorted(groups)


def _source_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return sum(1 for row in csv.reader(f) if row) - 1


def test_importer_bench_appends_consistent_figures(services: Services, shared_csv: Path,
                                                   tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    report.write_text(EARLIER, encoding="utf-8")
    done = _importer(services, "--rows", "2000", "--processes", "1", "--append", str(report))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tag = _row(done.stdout, r"^importer benchmark (\w+): database nyc311_bench_import_\1, "
                            r"topics benchimport\1\*$")[1]
    assert "cleaning up" in done.stdout
    assert "not removed" not in done.stderr, done.stderr

    # the earlier text is kept; the section printed is what was appended, after a blank line
    text = report.read_text(encoding="utf-8")
    assert text.startswith(EARLIER)
    appended = text[len(EARLIER):]
    assert appended.startswith("\n## The history backfill (`python -m benchmarks.importer`)\n")
    assert appended.endswith("\n") and appended.count("## The history backfill") == 1
    section = appended[1:-1]
    assert section in done.stdout
    assert str(REPO) not in section and str(tmp_path) not in section  # meant to be committed

    # the import runs: two sizes, half and all of --rows, each with its events, rate and memory
    runs = [(int(_num(m[1])), int(_num(m[2])), _num(m[3]), _num(m[4]), _num(m[5]))
            for m in re.finditer(r"^\| ([\d,]+) \| ([\d,]+) \| ([\d.]+) s \| ([\d,]+) \| "
                                 r"([\d.]+) MiB \|$", section, re.MULTILINE)]
    assert [r[0] for r in runs] == [1_000, 2_000], section
    for rows, events, wall, rate, rss in runs:
        assert rows < events <= 2 * rows  # a RequestCreated per row, a closure for some
        assert wall > 0 and rate > 0 and rss > 0
    if 1_000 % _source_rows(shared_csv) == 0:  # the larger export is the smaller one twice
        assert runs[1][1] == 2 * runs[0][1]
    rows, events, _, _, _ = runs[-1]
    assert "1,000, 2,000 rows." in section

    # (g) the raw read
    g = _num(_row(section, r"^\| \(g\) raw read, csv module, one core \| ([\d,]+) rows/s \|")[1])
    assert g > 0

    # (h) the larger import's rate, as a share of (g) that is the quotient of the two printed
    found = _row(section, r"^\| \(h\) `nyc311 import-nyc-csv --processes 1`, acknowledged "
                          r"\| ([\d,]+) rows/s "
                          r"= ([\d.]+) × g \| .* \| \*\*(met|missed)\*\* \|$")
    h, h_over_g = _num(found[1]), float(found[2])
    assert h == runs[-1][3]  # the summary's own rate of the larger run
    assert h < g  # the import reads every row as (g) does, and then does more
    low, high = (h - 0.5) / (g + 0.5), (h + 0.5) / (g - 0.5)  # h and g are printed rounded
    assert low - 0.005 <= h_over_g <= high + 0.005, (h, g, h_over_g)
    assert found[3] == ("met" if h >= 50_000 and h >= 0.5 * g else "missed")

    # (i) the rebuild: every event of the larger import, at records / seconds
    found = _row(section, r"^\| \(i\) `nyc311 rebuild --processes 1` \| ([\d,]+) events/s "
                          r"\(([\d,]+) records in (\d+) s, ")
    i, records, seconds = _num(found[1]), int(_num(found[2])), float(found[3])
    assert records == events
    assert seconds > 0 and i > 0
    assert abs(i - records / seconds) <= 0.5  # the seconds are exact as printed, i rounded
    steady = re.search(r"; ([\d,]+) events/s steady \(", section)
    assert steady is None or _num(steady[1]) >= i  # absent when it would be below (i)
    assert "| ≥ (c) above | |" in section  # the report appended to has no (c)

    # (j) 40M requests at (h)'s rate, plus their events (the larger run's per request) at (i)'s
    found = _row(section, r"^\| \(j\) 40M requests imported \+ rebuilt \| ([\d.]+) min "
                          r"\(([\d.]+) events a request\) \| < 30 min \| \*\*(met|missed)\*\* \|$")
    j_min, per_request = float(found[1]), float(found[2])
    assert per_request == round(events / rows, 2)
    i_exact = records / seconds
    j_low = (HISTORY_REQUESTS / (h + 0.5) + HISTORY_REQUESTS * events / rows / i_exact) / 60
    j_high = (HISTORY_REQUESTS / (h - 0.5) + HISTORY_REQUESTS * events / rows / i_exact) / 60
    assert j_low - 0.05 <= j_min <= j_high + 0.05, (j_low, j_min, j_high)
    assert found[3] == ("met" if j_min < 30 else "missed")

    # memory: each run's peak RSS, as in the runs' table
    found = _row(section, r"^\| memory \| ([\d.]+) MiB at 1,000 rows, ([\d.]+) MiB at 2,000 "
                          r"rows \| flat in file size \| \*\*(met|missed)\*\* \|$")
    assert (float(found[1]), float(found[2])) == (runs[0][4], runs[1][4])

    # what bounds (h): six stages with positive costs, who used the cores, the arithmetic
    bounds = section[section.index("### What bounds (h) and (j)"):]
    stages = [float(m[1]) for m in re.finditer(r"^\| [^|]+ \| [^|]+ \| ([\d.]+) \|$", bounds,
                                                re.MULTILINE)]
    assert len(stages) == 6 and all(cost > 0 for cost in stages), bounds
    worker_us = sum(stages[:3])
    found = _row(bounds, r"A worker spends (\d+) µs a row, \d+% of the (\d+) µs of CPU a row")
    assert abs(int(found[1]) - worker_us) <= 1 and abs(int(found[2]) - sum(stages)) <= 1
    assert _row(bounds, r"^During the 2,000-row import \([\d.]+ s\), cores used: the command "
                        r"and its workers [\d.]+, .*idle [\d.]+, "
                        r"stolen by the hypervisor [\d.]+\.$")

    # nothing of the run is left: its database, its topics (both sizes'), the rebuild's group
    assert _leftovers(services, tag) == ([], [], [])


@pytest.mark.parametrize(("args", "message"), [
    (["--rows", "0"], "--rows: at least 1000"),
    (["--source", "{tmp}/missing.csv"], "--source: no file {tmp}/missing.csv"),
    (["--processes", "0"], "--processes: 1 to 64"),
    (["--append", "{tmp}/no-such-dir/RESULTS.md"], "--append: no directory {tmp}/no-such-dir"),
], ids=["rows-0", "missing-source", "processes-0", "append-no-directory"])
def test_importer_bench_bad_argument(services: Services, tmp_path: Path, args: list[str],
                                     message: str) -> None:
    """A bad option stops the run before it makes anything, with the option named."""
    args = [a.format(tmp=tmp_path) for a in args]
    before = _leftovers(services, "")
    done = _importer(services, "--rows", "2000", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"python -m benchmarks.importer: error: {message.format(tmp=tmp_path)}" \
        in done.stderr, done.stderr
    assert "importer benchmark" not in done.stdout  # no tag: no database or topic was made
    after = _leftovers(services, "")
    assert all(set(a) <= set(b) for a, b in zip(after, before, strict=True)), (before, after)
    assert not (tmp_path / "no-such-dir").exists()


def test_make_bench_smoke_runs_the_importer_small() -> None:
    """``make bench BENCH_ARGS=--smoke``: the importer runs small and, like the month's smoke
    report, only prints; without --smoke it appends its full section to RESULTS.md."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}

    def importer_line(*make_args: str) -> str:
        done = subprocess.run(["make", "-n", "bench", *make_args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = [line for line in done.stdout.splitlines() if "-m benchmarks.importer" in line]
        assert len(lines) == 1, done.stdout
        return lines[0]

    smoke = importer_line("BENCH_ARGS=--smoke --profile never")
    assert "--rows 2000" in smoke and "--append" not in smoke
    full = importer_line()
    assert "--append benchmarks/RESULTS.md" in full and "--rows" not in full
    passed = importer_line("BENCH_ARGS=--smoke", "IMPORT_BENCH_ARGS=--rows 4000")
    assert passed.index("--rows 2000") < passed.index("--rows 4000")  # argparse: the last wins


def test_the_rebuild_is_judged_against_the_months_catch_up(tmp_path: Path) -> None:
    from benchmarks.importer import Run, month_catch_up, render

    report = tmp_path / "RESULTS.md"
    report.write_text("| (c) projector catch-up, `--processes 2` | 28,978 events/s = 0.41 × a |\n",
                      encoding="utf-8")
    c = month_catch_up(report)
    assert c == 28_978
    assert month_catch_up(tmp_path / "missing.md") is None
    runs = [Run(500, 1.0, 1_000.0, 10.0, 990), Run(1_000, 2.0, 1_000.0, 10.0, 1_980)]
    # the larger rebuild: 1,980 records, 12 s wall; the smaller 990 in 11 s: 990/s steady
    text = render((10_000, 1.0), None, runs, (1_980, 10.0, 12.0), 2, None, (990, 9.0, 11.0), c)
    row = next(line for line in text.splitlines() if line.startswith("| (i)"))
    assert "198 events/s (1,980 records in 10 s" in row
    assert "; 990 events/s steady" in row and "≥ (c) = 28,978 events/s | **missed** |" in row
    fast = render((10_000, 1.0), None, runs, (1_980, 10.0, 12.0), 2, None, (990, 9.0, 11.0),
                  900.0)
    assert "≥ (c) = 900 events/s | **met** |" in fast
    noisy = render((10_000, 1.0), None, runs, (1_980, 10.0, 12.0), 2, None, (990, 2.0, 2.0), c)
    assert "steady" not in noisy  # 990 more records in 10 s more: below (i), so not shown
