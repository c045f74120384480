"""RESULTS.md from a run's figures, and the figures' JSON form.

The report states the command, the machine and its load, every figure with its ratio or target
(met or missed), and, when a target is missed, what stands in the way, worked out from the run's
own numbers. Its format is what readers compare between runs, so it changes only on purpose.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from benchmarks.latency import LATENCY_BATCH_TIMEOUT
from benchmarks.limits import loop_consumer_config
from benchmarks.profile import ProfileSummary
from benchmarks.runner import LATENCY_P99_TARGET_S, PUBLISH_TARGET_S, YEAR_TARGET_S, Bench


def _met(value: bool) -> str:
    return "**met**" if value else "**missed**"


def _cores(cores: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cores.items()) or "n/a"


def render(bench: Bench, command: str) -> str:
    """RESULTS.md: the command, the machine, every figure and ratio, each target met or not."""
    f = bench.figures
    m, p = f["machine"], f["produce"]
    a, b, c, c1, d, e, y = f["a"], f["b"], f["c"], f["c1"], f["d"], f["e"], f["f"]
    mem = f["memory"]
    pg = m["postgresql"]
    lines = [
        "# Benchmark results",
        "",
        f"- Command: `{command}`",
        f"- Date: {f['started']:%Y-%m-%d %H:%M} UTC (the run took "
        f"{(f['finished'] - f['started']).total_seconds() / 60:.0f} min)",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']:.1f} GiB memory, "
        f"Linux {m['kernel']}",
        f"- Software: Python {m['python']}, Apache Kafka {m['kafka']} (one broker, KRaft), "
        f"confluent-kafka {m['confluent_kafka']} / librdkafka {m['librdkafka']}, fastavro "
        f"{m['fastavro']}, psycopg {m['psycopg']}, PostgreSQL {pg['server_version']} "
        f"(synchronous_commit {pg['synchronous_commit']}, fsync {pg['fsync']}, shared_buffers "
        f"{pg['shared_buffers']})",
        f"- Load before the run: load average {m['loadavg'][0]:.2f} / {m['loadavg'][1]:.2f} / "
        f"{m['loadavg'][2]:.2f}; {m['busy_cores_before']:.2f} of {m['nproc']} cores busy over "
        "2 s before the benchmark started",
        f"- Data: {', '.join(bench.months)}, {bench.requests:,} requests a month (seed "
        f"{bench.seed}), {p['partitions']} partitions a topic, batches of "
        f"{bench.settings.batch_size:,} records"
        + (f", synchronous_commit={bench.args.synchronous_commit} on the benchmark databases"
           if bench.args.synchronous_commit else ""),
        "",
    ]
    if m["busy_cores_before"] > 0.25 or m["loadavg"][0] > 0.5 * m["nproc"]:
        lines += ["> Other load was present on the machine (other test suites and services): "
                  "absolute rates are lower than on an idle machine; the ratios c/a and c/b "
                  "were taken under the same load. The CPU lines below show, per phase, what "
                  "the rest of the machine used.", ""]
    lines += [
        "## Targets",
        "",
        "| | figure | target | |",
        "|---|---|---|---|",
        f"| (c) projector catch-up, `--processes {c['processes']}` | {c['rate']:,.0f} events/s "
        f"= {c['c_over_a']:.2f} × a, {c['c_over_b']:.2f} × b | ≥ 0.5 × min(a, b) = "
        f"{c['target_rate']:,.0f} events/s | {_met(c['met'])} |",
        f"| (c) the same, one process | {c1['rate']:,.0f} events/s = {c1['c_over_a']:.2f} × a, "
        f"{c1['c_over_b']:.2f} × b | (for comparison) | |",
        f"| (d) aggregation + publication of {d['month']} | {d['seconds']:.2f} s | < "
        f"{PUBLISH_TARGET_S:.0f} s | {_met(d['met'])} |",
    ]
    if "visible_p99" in e:
        lines.append(
            f"| (e) end-to-end latency at {e['rate']:,.0f} events/s | p50 "
            f"{e['visible_p50'] * 1000:,.0f} ms, p99 {e['visible_p99'] * 1000:,.0f} ms | p99 < "
            f"{LATENCY_P99_TARGET_S * 1000:.0f} ms | {_met(e['met'])} |")
    else:
        lines.append(f"| (e) end-to-end latency | {e.get('error')} | p99 < 1 s | **missed** |")
    lines += [
        f"| (f) a year's rebuild ({y['events']:,} events) | {y['seconds']:,.0f} s "
        f"({y['seconds'] / 60:.1f} min){' measured' if y['measured'] else ', extrapolated'} | "
        f"< {YEAR_TARGET_S / 60:.0f} min | {_met(y['met'])} |",
        f"| memory | peak RSS {mem['half']['vmhwm_mib']:.0f} MiB at {mem['half']['events']:,} "
        f"events, {mem['full']['vmhwm_mib']:.0f} MiB at {mem['full']['events']:,} | flat with "
        f"topic size | {_met(mem['full']['vmhwm_mib'] < 1.25 * mem['half']['vmhwm_mib'] + 16)} |",
        "",
        "## Figures",
        "",
        "Rates are steady rates, from the end of the first batch to the end of the last one; "
        "the fixed seconds (group join, first fetch, final lag check) are shown apart.",
        "",
        f"**Produce**: {p['events']:,} events ("
        + ", ".join(f"{name} {count:,}" for name, count in sorted(p["by_event"].items()))
        + f") in {p['seconds']:.1f} s = **{p['rate']:,.0f} events/s** (simulation included: "
        f"{p['generate_seconds']:.1f} s of it), idempotent producer, lz4.",
        "",
        f"**(a) raw consume limit**: {a['events']:,} records read in batches of "
        f"{bench.settings.batch_size:,} and decoded as the projector decodes (Serde without "
        f"logical types) in {a['seconds']:.1f} s, one process: "
        f"**{a['rate']:,.0f} events/s** ({a['overall_rate']:,.0f} over the whole run). "
        f"CPU (cores): {_cores(a['cores'])}.",
        "",
        f"**(b) raw database limit**: {b['rows']:,} rows ("
        + ", ".join(f"{name} {count:,}" for name, count in b["rows_by_table"].items())
        + f") COPYed into the real tables, one transaction per {bench.settings.batch_size:,} "
        f"events, in {b['seconds']:.1f} s: **{b['rows_rate']:,.0f} rows/s = {b['rate']:,.0f} "
        f"events/s**. CPU (cores): {_cores(b['cores'])}.",
        "",
        f"**(c) projector catch-up from zero**, as an operator runs it: `nyc311 run projector "
        f"--until-caught-up --processes {c['processes']}` ({c['processes']} worker processes, "
        f"members of one consumer group; progress read from the offsets they commit with their "
        f"rows, the CPU window from when every worker has committed): "
        f"{c['events']:,} events in {c['seconds']:.1f} s ({c['fixed_seconds']:.1f} s of it "
        f"fixed: start-up, group join, the final lag check): **{c['rate']:,.0f} events/s** "
        f"({c['overall_rate']:,.0f} over the whole run). **c/a = {c['c_over_a']:.2f}, c/b = "
        f"{c['c_over_b']:.2f}**; target c ≥ 0.5 × min(a, b) = {c['target_rate']:,.0f} events/s: "
        f"{_met(c['met'])}. CPU during the steady part (cores): {_cores(c['cores'])}. The "
        f"projection holds the same rows as (b): {c['table_rows'] == b['rows_by_table']}.",
        "",
        f"**(c) in one process** (ConsumeLoop + Projector in the benchmark's process, as "
        f"`nyc311 rebuild` runs it): {c1['events']:,} events in {c1['seconds']:.1f} s "
        f"({c1['fixed_seconds']:.1f} s of it fixed): **{c1['rate']:,.0f} events/s** "
        f"({c1['overall_rate']:,.0f} over the whole run), c/a = {c1['c_over_a']:.2f}, c/b = "
        f"{c1['c_over_b']:.2f}. CPU during the steady part (cores): {_cores(c1['cores'])}. The "
        f"projection holds the same rows as (b): {c1['table_rows'] == b['rows_by_table']}.",
        "",
        f"**(d) publication** of {d['month']}: aggregation into the published schema "
        f"{d['aggregate_seconds']:.2f} s ({d['rows']:,} rows in the four tables), the whole "
        f"site built {d['site_seconds']:.2f} s ({d['files']:,} files, {d['bytes'] / 1e6:.1f} MB)"
        f": **{d['seconds']:.2f} s**.",
        "",
    ]
    if "visible_p99" in e:
        lines += [
            f"**(e) end-to-end latency**: {e['sent']:,} RequestCreated at {e['rate']:,.0f} "
            f"events/s to a live projector subprocess (NYC311_BATCH_TIMEOUT="
            f"{LATENCY_BATCH_TIMEOUT}); from send to visible in PostgreSQL (polled every "
            f"{e['poll_interval'] * 1000:.0f} ms): **p50 {e['visible_p50'] * 1000:,.0f} ms, p99 "
            f"{e['visible_p99'] * 1000:,.0f} ms**, max {e['visible_max'] * 1000:,.0f} ms; "
            f"`projected_at − occurred_at` (the transaction's start, before its commit): p50 "
            f"{e['server_p50'] * 1000:,.0f} ms, p99 {e['server_p99'] * 1000:,.0f} ms. "
            f"{e['visible']:,} of {e['sent']:,} seen.",
            "",
        ]
    lines += [
        f"**(f) a year**: {y['arithmetic']}. Target < 5 min: {_met(y['met'])}"
        + ("" if y["met"] else f"; it needs {y['needed_rate']:,.0f} events/s") + ".",
        "",
        "**Memory** (peak RSS, VmHWM, of `python -m cli run projector "
        "--until-caught-up`):",
        "",
        "| topics | events | peak RSS | wall | CPU | rate (start-up included) |",
        "|---|---|---|---|---|---|",
    ]
    for label, run in (("first half", mem["half"]), ("whole", mem["full"])):
        lines.append(f"| {label} | {run['events']:,} | {run['vmhwm_mib']:.0f} MiB | "
                     f"{run['seconds']:.1f} s | {run['cpu_seconds']:.1f} s | "
                     f"{run['rate']:,.0f} events/s |")
    lines.append("")
    standing = obstacles(bench)
    if standing:
        lines += ["## What stands in the way", "", *standing, ""]
    if bench.profile is not None:
        prof = bench.profile
        lines += [
            "## Profile of the projector",
            "",
            f"pyinstrument over {prof.seconds:.1f} s of a catch-up from zero ({prof.records:,} "
            "records). Time by what it was spent on (the deepest matching frame names the "
            "category; waits on PostgreSQL show as the psycopg call that waits):",
            "",
            "| spent on | seconds | share |",
            "|---|---|---|",
        ]
        for name, seconds in prof.categories:
            lines.append(f"| {name} | {seconds:.2f} | {seconds / prof.seconds:.0%} |")
        lines += ["", "Frames with the most self time:", "", "| frame | seconds | share |",
                  "|---|---|---|"]
        for name, seconds in prof.self_frames:
            lines.append(f"| `{name}` | {seconds:.2f} | {seconds / prof.seconds:.0%} |")
        tree = "\n".join(prof.tree.splitlines()[:80])
        lines += ["", "<details><summary>Call tree (pyinstrument, first 80 lines)</summary>", "",
                  "```", tree, "```", "", "</details>", ""]
    if bench.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in bench.notes] + [""]
    return "\n".join(lines)


def obstacles(bench: Bench) -> list[str]:
    """What stands in the way of a missed target, from this run's own numbers."""
    f = bench.figures
    a, b, c, c1, y, mem = f["a"], f["b"], f["c"], f["c1"], f["f"], f["memory"]
    lines: list[str] = []
    if (not c["met"] or not y["met"]) and c1["cores"] and a["cores"] and c1["rate"] > 0:
        wall = 1e6 / c1["rate"]
        own = c1["cores"]["this process"] * wall
        pg = c1["cores"].get("PostgreSQL backend", 0.0) * wall
        decode = a["cores"]["this process"] * 1e6 / a["rate"]
        pg_raw = b["pg_cpu_seconds"] * 1e6 / b["events"]
        client = (b["seconds"] - b["pg_cpu_seconds"]) * 1e6 / b["events"]
        target = 1e6 / c["target_rate"]
        lines += [
            f"- **A serial loop.** Per event, over one process's steady part: {wall:.1f} µs of "
            "wall time; "
            f"the projector's process used {own:.1f} µs of CPU and its PostgreSQL backend "
            f"{pg:.1f} µs (together {own + pg:.1f} µs). The loop decodes a batch, then writes "
            "it, then decodes the next: the two never overlap, and "
            f"{c1['cores'].get('idle', 0.0):.2f} of {f['machine']['nproc']} cores stayed idle; "
            f"with --processes {c['processes']}: {_cores(c['cores'])}.",
            f"- **The process's Python is the larger part.** Of its {own:.1f} µs, consuming and "
            f"decoding take {decode:.1f} µs (process CPU per event in (a)) and formatting and "
            f"sending rows for COPY about {client:.1f} µs ((b)'s client side); the remaining "
            f"{own - decode - client:.1f} µs are the projector's own: validation, row mapping, "
            "per-record bookkeeping (the profile below splits them). PostgreSQL spends "
            f"{pg:.1f} µs an event against {pg_raw:.1f} µs for (b)'s direct COPY: staging and "
            f"merging add {pg - pg_raw:.1f} µs.",
            f"- **The target** c ≥ {c['target_rate']:,.0f} events/s is {target:.1f} µs an event: "
            f"{wall - target:.1f} µs less than one process takes now.",
        ]
    half, full = mem["half"], mem["full"]
    if full["vmhwm_mib"] >= 1.25 * half["vmhwm_mib"] + 16:
        grown = c1.get("memory", {})
        config = loop_consumer_config(bench.settings)
        lines.append(
            f"- **Memory grows with the topics** ({half['vmhwm_mib']:.0f} MiB at "
            f"{half['events']:,} events, {full['vmhwm_mib']:.0f} MiB at {full['events']:,}). "
            f"During (c) this process's RSS grew by {grown.get('rss_growth_mib', 0.0):.0f} MiB "
            f"while Python's allocated blocks grew by {grown.get('blocks_growth', 0.0):,.0f}: "
            "the growth is native memory, librdkafka's fetched and queued records, which the "
            "consumer's fetch sizes bound (consumers/loop.py: fetch.max.bytes "
            f"{int(config.get('fetch.max.bytes', 0)) // 2**20} MiB, max.partition.fetch.bytes "
            f"{int(config.get('max.partition.fetch.bytes', 0)) // 2**20} MiB).")
    return lines


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ProfileSummary):
        return {"seconds": value.seconds, "records": value.records,
                "categories": value.categories, "self_frames": value.self_frames}
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
