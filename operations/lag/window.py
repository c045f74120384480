"""Burrow's consumer lag evaluation rules over a sliding window of samples, with no I/O.

Why a window and not a threshold: a busy topic is always some thousands of records behind and a
quiet one can be stuck at 3, so how big the lag is says little. What the committed offset and
the lag *did* over the last few samples says whether the consumer keeps up (LinkedIn Burrow's
"Consumer Lag Evaluation Rules"). Kept apart from the Kafka code so every rule is tested with
plain numbers.

Two departures from Burrow:

- it tells STOP (the consumer no longer commits) from STALL (it commits the same offset again
  and again) by the commit timestamps it reads from ``__consumer_offsets``. The OffsetFetch API
  returns no timestamp, so group membership is the signal used instead: a live member that owns
  the partition is a consumer still polling (STALL); no owner during the whole window is a
  consumer that stopped (STOP). A consumer stuck on its batch keeps polling and heartbeating,
  so it keeps its partitions: its offsets do not move while the batch it holds keeps the lag
  above zero, and it shows as STALL.
- a partition the group never committed is judged from its earliest offset (the log start),
  where the group will start reading (``auto.offset.reset=earliest``): its lag is its whole
  backlog, not "unknown", so a consumer stuck on its very first batch is STALL and a stopped one
  STOP, instead of "nothing to judge".
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum


class Status(IntEnum):
    """Partition and group status, worst last (the value is the exporter's gauge)."""

    OK = 0
    WARN = 1  # offsets move but the lag does not shrink: the consumer is slower than producers
    STALL = 2  # a live consumer owns the partition, its offset does not move, lag > 0
    STOP = 3  # nobody owns the partition, its offset does not move, lag > 0
    ERR = 4  # committed beyond the log end, offset moved backwards, group or topic missing


@dataclass(frozen=True)
class Sample:
    """One observation of a partition for a group: time (Unix seconds), offsets, ownership."""

    at: float
    committed: int | None  # Kafka's committed offset for the group; None: never committed
    log_end: int | None  # high watermark; None: the partition could not be read
    owned: bool = False  # a live member of the group has the partition assigned
    log_start: int | None = None  # earliest offset; where a group that never committed starts

    @property
    def position(self) -> int | None:
        """Where the group reads next: its committed offset, else the log start."""
        return self.committed if self.committed is not None else self.log_start

    @property
    def lag(self) -> int | None:
        position = self.position
        if position is None or self.log_end is None:
            return None
        return self.log_end - position


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str


def evaluate(samples: Sequence[Sample]) -> Verdict:
    """Burrow's rules over a window of samples of one partition, oldest first.

    The position judged is the committed offset, or the log start where the group never
    committed. In order: no position known (never committed, log start unknown) → OK (nothing
    to judge, as Burrow); the log end cannot be read, or the committed offset is beyond it →
    ERR; lag zero now or at any sample of the window → OK (an idle partition is never an
    alarm); committed offset moved backwards → ERR (Burrow's REWIND); position unchanged over
    the window with lag → STOP if no live member owned the partition during the window, else
    STALL; positions moving while the lag never shrinks → WARN; otherwise OK.
    """
    window = list(samples)
    for i in range(len(window) - 1, -1, -1):  # only the run of samples since the last gap
        if window[i].position is None:
            window = window[i + 1:]
            break
    if not window:
        return Verdict(Status.OK, "no committed offset")
    last = window[-1]
    lag = last.lag
    if lag is None:
        return Verdict(Status.ERR, "log-end offset unavailable (topic or partition missing?)")
    if lag < 0:
        return Verdict(Status.ERR, f"committed offset {last.committed} is beyond the log end "
                                   f"{last.log_end} (topic truncated or recreated?)")
    lags = [s.lag for s in window]
    if any(x is not None and x <= 0 for x in lags):
        return Verdict(Status.OK, "caught up" if lag == 0 else "lag was zero within the window")
    offsets = [s.position or 0 for s in window]
    pairs = list(itertools.pairwise(offsets))
    if any(b < a for a, b in pairs):
        return Verdict(Status.ERR, "committed offset moved backwards (rewind)")
    span = last.at - window[0].at
    if all(b == a for a, b in pairs):
        where = (f"offset {last.committed}" if last.committed is not None else
                 f"never committed, {lag} record(s) waiting from offset {last.log_start},")
        if not any(s.owned for s in window):
            return Verdict(Status.STOP, f"no consumer: {where} not moving "
                                        f"(over {span:.1f} s), nobody owns the partition")
        if len(window) >= 2:
            return Verdict(Status.STALL, f"{where} not moving over {span:.1f} s "
                                         "though a consumer owns the partition")
        return Verdict(Status.OK, "one sample: movement not judged yet")
    lag_values = [x or 0 for x in lags]
    if all(b >= a for a, b in itertools.pairwise(lag_values)):
        return Verdict(Status.WARN, f"lag not decreasing ({lag_values[0]} → {lag}) "
                                    f"while offsets move, over {span:.1f} s")
    return Verdict(Status.OK, "catching up")


class Window:
    """The last ``size`` samples of one partition for one group (Burrow's sliding window)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a window holds at least one sample")
        self._samples: deque[Sample] = deque(maxlen=size)

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)

    @property
    def samples(self) -> list[Sample]:
        return list(self._samples)

    @property
    def latest(self) -> Sample:
        return self._samples[-1]

    def evaluate(self) -> Verdict:
        return evaluate(self._samples)
