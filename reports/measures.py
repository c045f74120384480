"""Uncertainty and small numbers: each rate's 95% interval and each row's reliability.

Every figure here is a function of a row's counts, so it is computed in Python from the counts
the aggregation produced (reports/aggregate.py), for a new revision and for a month published
before these columns existed alike, and :func:`complete` is the one place that fills them.

- A rate k/n (closure_rate, reopen_rate, share_satisfied, response_rate) gets its 95% **Wilson
  score interval** (Wilson 1927; Brown, Cai and DasGupta 2001 recommend it over the normal
  "Wald" interval, which collapses to a point at 0% and 100% and undercovers for small n):

      centre = (p + z²/2n) / (1 + z²/n)
      half   = z / (1 + z²/n) · sqrt(p(1-p)/n + z²/4n²),   z = 1.959964 (the 97.5% normal quantile)

- mean_score gets mean ± z·s/√n, s the sample standard deviation of the answers' scores
  (0, 25, 50, 75, 100; n - 1 in the denominator), clipped to 0-100: the normal approximation,
  which the rules below keep to n ≥ 10 (for n = 10 Student's t would be 15% wider, for n = 20
  7%, for n = 50 2%).
- ``reliability``, following CDC WONDER's practice for rates: ``suppressed`` when the
  denominator is below 10 (the rate and its interval are left empty; the counts stay),
  ``unreliable`` when it is below 20 (published, flagged), ``reliable`` otherwise.

Bounds are rounded like the rates they go with (4 decimals, 2 for mean_score), half away from
zero, so the files and the publication schema in PostgreSQL carry the same digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from statistics import NormalDist
from typing import Any, NamedTuple

Z = NormalDist().inv_cdf(0.975)  # 1.959963984540054
SUPPRESS_BELOW = 10
UNRELIABLE_BELOW = 20

SUPPRESSED = "suppressed"
UNRELIABLE = "unreliable"
RELIABLE = "reliable"
RELIABILITY = (RELIABLE, UNRELIABLE, SUPPRESSED)

#: The five answers' scores, in the order of the satisfaction table's level columns.
LEVEL_SCORES: tuple[tuple[str, int], ...] = (
    ("strongly_agree", 100), ("agree", 75), ("neutral", 50), ("disagree", 25),
    ("strongly_disagree", 0))


def reliability(n: int) -> str:
    """``suppressed`` below 10, ``unreliable`` below 20, else ``reliable``."""
    if n < SUPPRESS_BELOW:
        return SUPPRESSED
    if n < UNRELIABLE_BELOW:
        return UNRELIABLE
    return RELIABLE


def rounded(value: float, places: int) -> float:
    """``value`` rounded half away from zero on its shortest decimal form (like PostgreSQL's
    round(numeric, n) and reports.files), as the float of that decimal."""
    exact = Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return float(exact)


def wilson(k: int, n: int, z: float = Z) -> tuple[float, float] | None:
    """The Wilson score interval of k successes in n trials, unrounded; None when n = 0."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"{k} of {n} is not a proportion")
    p = k / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(counts: Sequence[int], z: float = Z) -> tuple[float, float, float] | None:
    """(mean, low, high) of the 0-100 scores of answers counted per level (the order of
    :data:`LEVEL_SCORES`), unrounded; None below two answers (no spread to measure)."""
    n = sum(counts)
    if n < 2:
        return None
    scores = [score for _, score in LEVEL_SCORES]
    mean = sum(c * s for c, s in zip(counts, scores, strict=True)) / n
    variance = sum(c * (s - mean) ** 2 for c, s in zip(counts, scores, strict=True)) / (n - 1)
    half = z * math.sqrt(variance / n)
    return mean, max(0.0, mean - half), min(100.0, mean + half)


def _rate_columns(row: dict[str, Any], rate: str, k: int, n: int) -> None:
    """Fill ``rate``'s interval and apply suppression, for k of n."""
    interval = wilson(k, n)
    if interval is None or reliability(n) == SUPPRESSED:
        row[rate] = row[f"{rate}_ci_low"] = row[f"{rate}_ci_high"] = None
        return
    row[f"{rate}_ci_low"], row[f"{rate}_ci_high"] = (rounded(b, 4) for b in interval)


class Rate(NamedTuple):
    """A table's rate: the sum of ``numerators`` over ``denominator``, whose count also
    decides the row's reliability."""

    name: str
    numerators: tuple[str, ...]
    denominator: str


#: table -> its rate (each table with rates has one; satisfaction adds the mean score)
RATES: dict[str, Rate] = {
    "closure_rates": Rate("closure_rate", ("closed",), "received"),
    "reopen_rates": Rate("reopen_rate", ("reopen_requested",), "surveys_answered"),
    "satisfaction": Rate("share_satisfied", ("strongly_agree", "agree"), "responses"),
    "survey_response_rates": Rate("response_rate", ("surveys_answered",), "surveys_sent"),
}


def complete(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its intervals and reliability computed from its counts, and its rates
    suppressed where the denominator is below 10; a table without rates is returned as is.

    Idempotent: derived values already in ``row`` are recomputed, never trusted.
    """
    if table not in RATES:
        return row
    rate = RATES[table]
    out = dict(row)
    n = int(out[rate.denominator] or 0)
    _rate_columns(out, rate.name, sum(int(out[c] or 0) for c in rate.numerators), n)
    if table == "satisfaction":
        counts = [int(out[level] or 0) for level, _ in LEVEL_SCORES]
        interval = mean_interval(counts)
        if interval is None or reliability(n) == SUPPRESSED:
            out["mean_score"] = out["mean_score_ci_low"] = out["mean_score_ci_high"] = None
        else:
            out["mean_score_ci_low"], out["mean_score_ci_high"] = (
                rounded(b, 2) for b in interval[1:])
    out["reliability"] = reliability(n)
    return out
