"""What is in the projection, at a glance (``nyc311 db summary``, the end of ``make demo``)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from storage.vault import held as vault_held


@dataclass(frozen=True)
class Summary:
    requests: int
    with_contact: int
    closures: int
    closed_requests: int
    closures_without_request: int
    surveys: int
    answers: int
    first_created: str | None
    last_created: str | None
    top_agencies: list[tuple[str, int]]
    offsets: list[tuple[str, str, int, int]]
    dispatch: list[tuple[str, str | None, int]]
    satisfaction: list[tuple[str | None, int]]
    reopens: list[tuple[str, int]]
    contacts_held: int = 0
    oldest_contact_days: float | None = None
    contacts_erased: int = 0

    def render(self) -> str:
        lines = [
            f"requests            {self.requests:>10,}  ({self.with_contact:,} with a contact)",
            f"closures            {self.closures:>10,}  ({self.closed_requests:,} requests closed,"
            f" {self.closures_without_request:,} waiting for their created event)",
            f"surveys sent        {self.surveys:>10,}",
            f"surveys answered    {self.answers:>10,}",
            f"created between     {self.first_created or '-'} and {self.last_created or '-'}",
            "top agencies        " + ", ".join(f"{a} {n:,}" for a, n in self.top_agencies),
            "survey dispatch     " + (", ".join(
                f"{status}{f' by {channel}' if channel else ''} {n:,}"
                for status, channel, n in self.dispatch) or "-"),
            "answers             " + (", ".join(
                f"{(level or 'no rating').lower().replace('_', ' ')} {n:,}"
                for level, n in self.satisfaction) or "-"),
            "reopen requests     " + (", ".join(f"{s} {n:,}" for s, n in self.reopens) or "-"),
            f"contacts held       {self.contacts_held:>10,}  (oldest "
            + ("-" if self.oldest_contact_days is None else f"{self.oldest_contact_days:.1f} days")
            + f"; {self.contacts_erased:,} erased)",
            "consumer offsets:",
        ]
        totals: dict[tuple[str, str], tuple[int, int]] = {}
        for group, topic, _partition, offset in self.offsets:
            parts, total = totals.get((group, topic), (0, 0))
            totals[(group, topic)] = (parts + 1, total + offset)
        lines += [f"  {g:<26} {t:<28} {n} partitions, {o:>10,} records consumed"
                  for (g, t), (n, o) in sorted(totals.items())]
        return "\n".join(lines)


def summarize(conn: psycopg.Connection, vault_schema: str) -> Summary:
    one = conn.execute("""
        SELECT (SELECT count(*) FROM requests),
               (SELECT count(*) FROM requests WHERE has_contact),
               (SELECT count(*) FROM closures),
               (SELECT count(DISTINCT c.request_id) FROM closures c
                  JOIN requests r USING (request_id)),
               (SELECT count(*) FROM closures c
                  WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.request_id = c.request_id)),
               (SELECT count(*) FROM surveys),
               (SELECT count(*) FROM survey_answers),
               (SELECT min(created_at)::text FROM requests),
               (SELECT max(created_at)::text FROM requests)
    """).fetchone()
    assert one is not None
    agencies = conn.execute(
        "SELECT agency, count(*) FROM requests GROUP BY agency ORDER BY 2 DESC, 1 LIMIT 5"
    ).fetchall()
    offsets = conn.execute(
        "SELECT group_id, topic, partition, next_offset FROM consumer_offsets "
        "ORDER BY 1, 2, 3"
    ).fetchall()
    dispatch = conn.execute(
        "SELECT status, CASE WHEN status = 'sent' THEN channel END, count(*) "
        "FROM survey_dispatch GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    satisfaction = conn.execute(
        "SELECT satisfaction, count(*) FROM survey_answers GROUP BY 1 ORDER BY 2 DESC").fetchall()
    reopens = conn.execute(
        "SELECT status, count(*) FROM reopen_forwards GROUP BY 1 ORDER BY 1").fetchall()
    requests, with_contact, closures, closed, orphans, surveys, answers, first, last = one
    held = vault_held(conn, vault_schema)
    return Summary(requests=requests, with_contact=with_contact, closures=closures,
                   closed_requests=closed, closures_without_request=orphans, surveys=surveys,
                   answers=answers, first_created=first, last_created=last,
                   top_agencies=[(a, n) for a, n in agencies],
                   offsets=[(g, t, p, o) for g, t, p, o in offsets],
                   dispatch=[(s, c, n) for s, c, n in dispatch],
                   satisfaction=[(s, n) for s, n in satisfaction],
                   reopens=[(s, n) for s, n in reopens],
                   contacts_held=held[0],
                   oldest_contact_days=None if held[1] is None else float(held[1]),
                   contacts_erased=held[2])
