"""Burrow's lag evaluation rules over a window of samples, with plain numbers (no broker)."""

from __future__ import annotations

import pytest

from operations.lag.monitor import GroupLag, PartitionLag
from operations.lag.report import render_text
from operations.lag.window import Sample, Status, Window, evaluate


def samples(*points: tuple[int | None, int | None], owned: bool = True,
            every: float = 10.0) -> list[Sample]:
    """(committed, log_end) pairs, ``every`` seconds apart."""
    return [Sample(1000.0 + i * every, c, e, owned) for i, (c, e) in enumerate(points)]


def status(*points: tuple[int | None, int | None], owned: bool = True) -> Status:
    return evaluate(samples(*points, owned=owned)).status


def test_idle_partition_with_no_lag_is_ok_whoever_owns_it():
    assert status((50, 50), (50, 50), (50, 50), owned=False) is Status.OK
    assert status((50, 50), (50, 50), (50, 50), owned=True) is Status.OK


def test_zero_lag_at_any_sample_of_the_window_is_ok():
    # new records just arrived on a quiet partition: lag > 0 now, the consumer has not polled yet
    assert status((50, 50), (50, 50), (50, 53), owned=False) is Status.OK
    assert status((50, 50), (50, 53), (50, 53)) is Status.OK
    # but once the zero has left the window, a consumer that does not move is judged
    assert status((50, 53), (50, 53), (50, 53)) is Status.STALL


def test_catching_up_is_ok():
    assert status((10, 100), (40, 110), (80, 120)) is Status.OK


def test_lag_growing_while_offsets_move_is_warn():
    verdict = evaluate(samples((10, 100), (20, 120), (30, 140)))
    assert verdict.status is Status.WARN
    assert "lag not decreasing (90 → 110)" in verdict.reason


def test_lag_that_never_shrinks_while_offsets_move_is_warn_even_when_flat():
    assert status((10, 100), (20, 110), (30, 120)) is Status.WARN


def test_one_decrease_anywhere_in_the_window_is_enough_to_be_ok():
    assert status((10, 100), (20, 130), (60, 150), (70, 170)) is Status.OK


def test_offsets_stuck_with_lag_and_a_live_owner_is_stall():
    verdict = evaluate(samples((10, 100), (10, 120), (10, 140), owned=True))
    assert verdict.status is Status.STALL
    assert "offset 10 not moving over 20.0 s" in verdict.reason


def test_offsets_stuck_with_lag_and_nobody_owning_the_partition_is_stop():
    verdict = evaluate(samples((10, 100), (10, 100), (10, 100), owned=False))
    assert verdict.status is Status.STOP
    assert verdict.reason.startswith("no consumer")


def test_an_owner_at_any_sample_of_the_window_makes_it_stall_not_stop():
    window = [Sample(0, 10, 100, True), Sample(5, 10, 100, False), Sample(10, 10, 100, False)]
    assert evaluate(window).status is Status.STALL


def test_one_sample_judges_only_what_needs_no_movement():
    assert status((10, 100), owned=False) is Status.STOP
    assert status((10, 100), owned=True) is Status.OK
    assert status((100, 100), owned=False) is Status.OK
    assert status((101, 100)) is Status.ERR


def test_committed_beyond_the_log_end_is_err():
    verdict = evaluate(samples((50, 50), (120, 40)))
    assert verdict.status is Status.ERR
    assert "beyond the log end" in verdict.reason


def test_log_end_unreadable_is_err():
    assert status((50, 60), (50, None)) is Status.ERR


def test_committed_offset_moving_backwards_is_err():
    verdict = evaluate(samples((80, 100), (20, 100), (30, 110)))
    assert verdict.status is Status.ERR
    assert "rewind" in verdict.reason


def test_no_committed_offset_is_not_judged():
    verdict = evaluate(samples((None, 100), (None, 120)))
    assert verdict.status is Status.OK
    assert verdict.reason == "no committed offset"
    assert evaluate([]).reason == "no committed offset"


def test_samples_before_a_gap_in_the_committed_offset_are_ignored():
    # offsets deleted and committed again: only the run since then counts
    assert status((10, 100), (None, 100), (5, 100), (5, 100), owned=False) is Status.STOP
    assert status((0, 0), (None, 100), (5, 100), (5, 100)) is Status.STALL


def test_the_window_slides_and_forgets_the_oldest_sample():
    window = Window(3)
    for committed, log_end in [(10, 10), (10, 20), (10, 30)]:
        window.add(Sample(len(window.samples), committed, log_end, owned=True))
    assert window.evaluate().status is Status.OK  # the zero lag is still in the window
    window.add(Sample(3, 10, 40, owned=True))
    assert [s.log_end for s in window.samples] == [20, 30, 40]
    assert window.evaluate().status is Status.STALL
    window.add(Sample(4, 40, 40, owned=True))
    assert window.evaluate().status is Status.OK


def test_a_window_holds_at_least_one_sample():
    with pytest.raises(ValueError):
        Window(0)


def test_statuses_order_from_ok_to_err():
    assert [s.name for s in sorted(Status)] == ["OK", "WARN", "STALL", "STOP", "ERR"]
    assert [int(s) for s in sorted(Status)] == [0, 1, 2, 3, 4]


def test_the_table_shows_dashes_where_kafka_does_and_a_status_line_per_group():
    parts = [PartitionLag("t", 0, 5, 0, 12, 7, 3.25, Status.STOP, "no consumer", None),
             PartitionLag("t", 1, None, 0, 4, None, None, Status.OK, "no committed offset",
                          None)]
    group = GroupLag("g", True, "Empty", False, 0, Status.STOP, "t[0]: no consumer", 3, 2.0,
                     parts)
    text = render_text([group, GroupLag("h", False, "Dead", True, 0, Status.ERR,
                                        "group not found", 0, 0.0)])
    lines = text.splitlines()
    assert lines[0] == "2 consumer group(s): 1 STOP, 1 ERR"
    assert "GROUP g: STOP - t[0]: no consumer" in lines
    assert "GROUP h: ERR - group not found" in lines
    header = next(line for line in lines if "CURRENT-OFFSET" in line).split()
    row0 = next(line for line in lines if line.split()[:2] == ["t", "0"]).split()
    row1 = next(line for line in lines if line.split()[:2] == ["t", "1"]).split()
    assert dict(zip(header, row0, strict=True)) == {
        "TOPIC": "t", "PARTITION": "0", "CURRENT-OFFSET": "5", "LOG-END-OFFSET": "12",
        "LAG": "7", "LAG-SECONDS": "3.2", "STATUS": "STOP", "CONSUMER-ID": "-", "HOST": "-",
        "CLIENT-ID": "-"}
    assert row1[2:7] == ["-", "4", "-", "-", "-"]
