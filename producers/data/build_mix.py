"""Derive the simulator's proportions table (``nyc_mix.json``) from real NYC Open Data exports.

Why a script: the simulator should look like the real 311 traffic, and a table typed by hand
could neither be checked nor refreshed. Running this on the same CSVs always writes the same
file (weights are raw row counts, ties broken by name), so the committed JSON is reproducible::

    python -m producers.data.build_mix CSV [CSV ...] OUT

Weights are counts over all given files: agencies (with their most common Agency Name), the
most common complaint types per agency with their most common descriptors, the most common
resolution texts of Closed rows per agency, channels, boroughs with their most common ZIP codes,
and the New York local hour of creation.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from producers.nyc_time import NEW_YORK, parse_nyc_time

TYPES_PER_AGENCY = 12
DESCRIPTORS_PER_TYPE = 5
RESOLUTIONS_PER_AGENCY = 3
ZIPS_PER_BOROUGH = 25
CHANNELS = ("PHONE", "ONLINE", "MOBILE", "OTHER", "UNKNOWN")


def _rows(paths: Iterable[Path]) -> Iterator[dict[str, str]]:
    for path in paths:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                yield {k.strip(): (v or "").strip() for k, v in row.items() if k}


def _top(counter: Counter[str], n: int | None = None) -> dict[str, int]:
    """The n largest entries, by count then name, as an ordered dict."""
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return dict(ranked[:n])


class _Counts:
    """Everything counted in one pass over the rows."""

    def __init__(self) -> None:
        self.agencies: Counter[str] = Counter()
        self.names: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.types: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.descriptors: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.resolutions: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.channels: Counter[str] = Counter()
        self.boroughs: Counter[str] = Counter()
        self.zips: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.hours: Counter[int] = Counter()
        self.rows = 0

    def add(self, row: dict[str, str]) -> None:
        agency, ctype = row.get("Agency", ""), row.get("Complaint Type", "")
        if not agency or not ctype:
            return
        self.rows += 1
        self.agencies[agency] += 1
        self.names[agency][row.get("Agency Name") or agency] += 1
        self.types[agency][ctype] += 1
        if row.get("Descriptor"):
            self.descriptors[agency, ctype][row["Descriptor"]] += 1
        if row.get("Status", "").upper() == "CLOSED" and row.get("Resolution Description"):
            self.resolutions[agency][row["Resolution Description"]] += 1
        channel = row.get("Open Data Channel Type", "").upper()
        self.channels[channel if channel in CHANNELS else "UNKNOWN"] += 1
        self._add_place(row.get("Borough", "").upper(), row.get("Incident Zip", ""))
        with contextlib.suppress(ValueError):
            created = parse_nyc_time(row.get("Created Date", "")).utc
            self.hours[created.astimezone(NEW_YORK).hour] += 1

    def _add_place(self, borough: str, zip_code: str) -> None:
        borough = borough if borough and borough != "UNSPECIFIED" else "Unspecified"
        self.boroughs[borough] += 1
        if borough != "Unspecified" and len(zip_code) == 5 and zip_code.isdigit():
            self.zips[borough][zip_code] += 1


def build_mix(paths: Sequence[Path]) -> dict[str, Any]:
    """The proportions table for the given exports (see the module docstring)."""
    counts = _Counts()
    for row in _rows(paths):
        counts.add(row)
    agencies = {
        agency: {
            "name": next(iter(_top(counts.names[agency]))),
            "weight": weight,
            "complaint_types": {
                ctype: {"weight": n, "descriptors": _top(counts.descriptors[agency, ctype],
                                                         DESCRIPTORS_PER_TYPE)}
                for ctype, n in _top(counts.types[agency], TYPES_PER_AGENCY).items()
            },
            "resolutions": _top(counts.resolutions[agency], RESOLUTIONS_PER_AGENCY),
        }
        for agency, weight in _top(counts.agencies).items()
    }
    return {
        "about": "Proportions of NYC 311 traffic, as row counts of NYC Open Data exports "
                 "(dataset erm2-nwe9). Regenerate with: python -m producers.data.build_mix "
                 "CSV [CSV ...] OUT",
        "sources": [path.name for path in paths],
        "rows": counts.rows,
        "agencies": agencies,
        "channels": _top(counts.channels),
        "boroughs": {b: {"weight": n, "zips": _top(counts.zips[b], ZIPS_PER_BOROUGH)}
                     for b, n in _top(counts.boroughs).items()},
        "hours": [counts.hours[h] for h in range(24)],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m producers.data.build_mix",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("csv", nargs="+", type=Path, help="NYC Open Data 311 CSV export(s)")
    parser.add_argument("out", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    mix = build_mix(args.csv)
    args.out.write_text(json.dumps(mix, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{args.out}: {mix['rows']:,} rows, {len(mix['agencies'])} agencies", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
