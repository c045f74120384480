"""The month simulator: deterministic, in proportion to the real export, and valid events."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from producers.data.build_mix import build_mix
from producers.simulate import MIX_PATH, NEW_YORK, month_days, simulate_month
from schemas.serde import Serde

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "nyc311"
DESIGNATED = {"es", "zh", "ru", "bn", "ht", "ko", "ar", "ur", "fr", "pl"}
N = 20_000

Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def march() -> Events:
    return list(simulate_month("2025-03", N, seed=311))  # March has the spring-forward day


@pytest.fixture(scope="module")
def mix() -> dict[str, Any]:
    return json.loads(MIX_PATH.read_text(encoding="utf-8"))


def _created(events: Events) -> list[dict[str, Any]]:
    return [record for name, record in events if name == "request_created"]


def _closed(events: Events) -> list[dict[str, Any]]:
    return [record for name, record in events if name == "request_closed"]


def test_same_seed_same_events() -> None:
    assert list(simulate_month("2025-07", 500, seed=7)) == list(simulate_month("2025-07", 500, 7))


def test_different_seed_different_events() -> None:
    one = list(simulate_month("2025-07", 500, seed=7))
    two = list(simulate_month("2025-07", 500, seed=8))
    assert one != two
    assert {r["event_id"] for _, r in one}.isdisjoint({r["event_id"] for _, r in two})


def test_top_agencies_match_the_mix(march: Events, mix: dict[str, Any]) -> None:
    total = sum(spec["weight"] for spec in mix["agencies"].values())
    counts = Counter(r["agency"] for r in _created(march))
    top = sorted(mix["agencies"], key=lambda a: -mix["agencies"][a]["weight"])[:6]
    assert {a for a, _ in counts.most_common(2)} == set(top[:2])
    for agency in top:
        expected = mix["agencies"][agency]["weight"] / total
        assert counts[agency] / N == pytest.approx(expected, abs=0.015), agency


def test_channels_match_the_mix(march: Events, mix: dict[str, Any]) -> None:
    total = sum(mix["channels"].values())
    counts = Counter(r["channel"] for r in _created(march))
    for channel, weight in mix["channels"].items():
        assert counts[channel] / N == pytest.approx(weight / total, abs=0.015), channel


def test_complaint_types_and_names_come_from_the_agency(
        march: Events, mix: dict[str, Any]) -> None:
    for record in _created(march):
        spec = mix["agencies"][record["agency"]]
        assert record["agency_name"] == spec["name"]
        assert record["complaint_type"] in spec["complaint_types"]


def test_every_record_encodes(march: Events) -> None:
    serde = Serde()
    for name, record in march:
        serde.encode(name, record)


def test_events_are_sorted_and_closures_follow_creation(march: Events) -> None:
    times = [record["occurred_at"] for _, record in march]
    assert times == sorted(times)
    created_at = {r["request_id"]: r["occurred_at"] for r in _created(march)}
    assert len(created_at) == N  # request ids are unique
    closed = _closed(march)
    assert len({r["request_id"] for r in closed}) == len(closed)  # at most one closure each
    for record in closed:
        assert record["occurred_at"] > created_at[record["request_id"]]
        assert record["status"] in {"RESOLVED", "COMPLETE", "CLOSED"}
    assert 0.05 < 1 - len(closed) / N < 0.11  # about 8% never closed


def test_created_inside_the_month_new_york_time(march: Events) -> None:
    start = datetime(2025, 3, 1, tzinfo=NEW_YORK)
    end = datetime(2025, 4, 1, tzinfo=NEW_YORK)
    local_days = Counter(r["occurred_at"].astimezone(NEW_YORK).day for r in _created(march))
    assert all(start <= r["occurred_at"] < end for r in _created(march))
    assert set(local_days) == set(range(1, 32))
    assert any(r["occurred_at"] >= end for r in _closed(march))  # the backlog is still emitted


def test_people_languages_and_contacts(march: Events) -> None:
    created = _created(march)
    languages = Counter(r["language"] for r in created)
    assert languages["en"] / N == pytest.approx(0.75, abs=0.02)
    assert set(languages) >= DESIGNATED
    assert set(languages) - DESIGNATED - {"en"}  # some the survey does not offer
    contacts = [r["contact"] for r in created if r["contact"] is not None]
    assert len(contacts) / N == pytest.approx(0.80, abs=0.02)
    emails = [c["email"] for c in contacts if c["email"]]
    phones = [c["phone"] for c in contacts if c["phone"]]
    assert len(emails) / N == pytest.approx(0.65, abs=0.02)
    assert len(phones) / N == pytest.approx(0.25, abs=0.02)
    assert all(re.fullmatch(r"[a-z]+\.\d{5}@example\.(com|org|net)", e) for e in emails)
    assert all(re.fullmatch(r"\+1\d{3}55501\d{2}", p) for p in phones)


def test_month_days() -> None:
    assert len(month_days("2024-02")) == 29
    assert month_days("2025-12")[-1].isoformat() == "2025-12-31"


@pytest.mark.parametrize("month", ["2025-13", "2025-00", "2025/03", "25-03", "", "March",
                                   "2025-3", "2025-03-01"])
def test_bad_month_is_a_value_error(month: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        simulate_month(month, 10, seed=1)  # raised on the call, not on first iteration


def test_bad_request_count_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="requests"):
        simulate_month("2025-03", -1, seed=1)
    assert list(simulate_month("2025-03", 0, seed=1)) == []


def test_mix_is_reproducible_from_the_exports() -> None:
    paths = [DATA_DIR / "311_Service_Requests.csv", DATA_DIR / "311_sample.csv"]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"NYC 311 sample data not found in {DATA_DIR} "
                    "(expected in shared/data/nyc311 beside the repository)")
    committed = json.loads(MIX_PATH.read_text(encoding="utf-8"))
    assert json.loads(json.dumps(build_mix(paths))) == committed


def test_two_months_with_one_seed_share_no_id():
    october = list(simulate_month("2026-10", 2000, seed=311))
    november = list(simulate_month("2026-11", 2000, seed=311))
    ids = [{(r["event_id"], r["request_id"]) for _, r in events} for events in (october, november)]
    assert not {e for e, _ in ids[0]} & {e for e, _ in ids[1]}
    assert not {r for _, r in ids[0]} & {r for _, r in ids[1]}
    assert all(r["request_id"].startswith("92611") for _, r in november)
