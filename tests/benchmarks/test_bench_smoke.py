"""The benchmark harness end to end in --smoke mode, so ``make bench`` keeps working.

Runs ``python -m benchmarks --smoke`` against the real services, as a user would, and
checks that the report and its figures come out and that the run cleaned up after itself. It
never asserts a speed: timings on a shared machine say nothing about the harness.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
from confluent_kafka.admin import AdminClient

from tests.backends import Services

REPO = Path(__file__).resolve().parents[2]


def _env(services: Services) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "NYC311_"))}
    env.update(KAFKA_BOOTSTRAP_SERVERS=services.kafka_bootstrap_servers,
               DATABASE_URL=services.database_url, PYTHONUNBUFFERED="1")
    return env


def _positive(figures: dict, *path: str) -> float:
    value = figures
    for key in path:
        value = value[key]
    assert isinstance(value, int | float), (path, value)
    assert value > 0, (path, value)
    return float(value)


def test_bench_smoke(services: Services, tmp_path: Path) -> None:
    out, figures_path = tmp_path / "RESULTS.md", tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--profile", "always",
         "--out", str(out), "--json", str(figures_path)],
        cwd=REPO, env=_env(services), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = out.read_text(encoding="utf-8")
    for heading in ("# Benchmark results", "## Targets", "## Figures", "(a) raw consume limit",
                    "(b) raw database limit", "(c) projector catch-up", "(d) publication",
                    "(e) end-to-end latency", "(f) a year", "**Memory**"):
        assert heading in report, heading
    assert "c/a =" in report and "c/b =" in report
    assert str(REPO) not in report  # no machine paths in a file meant to be committed

    figures = json.loads(figures_path.read_text(encoding="utf-8"))
    produced = figures["produce"]["events"]
    assert produced > 1_000
    assert figures["produce"]["by_event"]["survey_sent"] > 0
    assert figures["produce"]["by_event"]["survey_answered"] > 0
    for phase in ("a", "b", "c", "c1"):
        assert figures[phase]["events"] == produced, phase
        _positive(figures, phase, "rate")
    _positive(figures, "b", "rows_rate")
    for phase in ("c", "c1"):  # --processes N, and one process
        assert figures[phase]["table_rows"] == figures["b"]["rows_by_table"], phase
        _positive(figures, phase, "c_over_a")
        _positive(figures, phase, "c_over_b")
    assert figures["c"]["processes"] >= 1
    _positive(figures, "d", "seconds")
    assert figures["d"]["files"] > 0
    assert figures["e"]["visible"] == figures["e"]["sent"] > 0
    _positive(figures, "e", "visible_p50")
    _positive(figures, "e", "visible_p99")
    for size in ("half", "full"):
        _positive(figures, "memory", size, "vmhwm_mib")
    assert figures["memory"]["half"]["events"] < figures["memory"]["full"]["events"] == produced
    _positive(figures, "f", "events")
    _positive(figures, "f", "seconds")
    for key in ("c", "d", "e", "f"):
        assert isinstance(figures[key]["met"], bool), key
    if figures["profile"] is not None:  # pyinstrument installed
        assert figures["profile"]["categories"]

    # the run removed its databases, topics and consumer group
    assert_removed(services, figures["tag"])


def assert_removed(services: Services, tag: str) -> None:
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                            (f"nyc311_bench_{tag}%",)).fetchall()
    assert left == []
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap_servers})
    assert [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"bench{tag}.")] == []


def test_bench_stopped_with_sigterm_cleans_up(services: Services) -> None:
    """A benchmark stopped by SIGTERM (a CI timeout, `kill`) removes what it made, as on Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "--smoke", "--profile", "never"],
        cwd=REPO, env=_env(services), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # stop it once it is working: databases and topics exist
            lines.append(line)
            if "(a) raw consume" in line:
                break
        found = re.search(r"benchmark (\w+):", "".join(lines))
        assert found, "".join(lines)
        proc.send_signal(signal.SIGTERM)
        out = "".join(lines) + proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "cleaning up" in out and "not removed" not in out, out
    assert_removed(services, found[1])
