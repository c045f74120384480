"""The pyinstrument profile of the projector, folded into what its time was spent on.

RESULTS.md shows a profile of one projector process catching up (``--profile``): the time by
category (decode, validation, COPY, merge, commit, Kafka…), the frames with the most self time
and the top of the call tree. The categories come from :data:`PROFILE_RULES`, which name the
project's and libraries' source files by path: a file moved or renamed must be renamed there,
or its time falls under "other". pyinstrument is optional; without it there is no profile.
"""

from __future__ import annotations

import site
import sys
import sysconfig
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import REPO

#: (path fragment, function or "" for any, category). Every sample goes to the category of the
#: deepest frame on its stack that matches, so "validation" wins over "decode" under it.
PROFILE_RULES: tuple[tuple[str, str, str], ...] = (
    ("consumers/loop.py", "", "loop bookkeeping (Item per record, offsets, stats)"),
    ("consumers/loop.py", "_on_assign", "start-up (assignment, stored offsets)"),
    ("consumers/loop.py", "_caught_up", "lag check"),
    ("consumers/loop.py", "_commit_kafka", "Kafka offset commit"),
    ("consumers/loop.py", "_close", "close"),
    ("<built-in>", "Consumer.consume", "Kafka consume() (librdkafka: fetch, Message objects)"),
    ("consumers/projector.py", "decode", "decode: topic lookup, key check"),
    ("schemas/serde.py", "", "decode: Avro (fastavro)"),
    ("uuid.py", "", "decode: Avro (fastavro)"),
    ("schemas/validate.py", "", "decode: validation rules"),
    ("consumers/projector.py", "event_rows", "decode: row mapping"),
    ("consumers/projector.py", "write", "write: grouping rows by table"),
    ("psycopg/_copy", "", "write: COPY to staging (formatting rows, sending)"),
    ("psycopg/cursor.py", "execute", "write: merge INSERT … ON CONFLICT (server)"),
    ("storage/offsets.py", "", "write: offsets upsert"),
    ("psycopg/transaction.py", "", "write: BEGIN / COMMIT (WAL flush)"),
    ("nyc311/metrics.py", "", "metrics"),
    ("prometheus_client", "", "metrics"),
)


@dataclass
class ProfileSummary:
    seconds: float
    records: int
    categories: list[tuple[str, float]]
    self_frames: list[tuple[str, float]]
    tree: str


def clean_paths(text: str) -> str:
    """``text`` with the repository's, the interpreter's and the home folder's paths cut off,
    so the report names files as the reader's checkout does and no machine path."""
    prefixes = {str(REPO), sys.prefix, sys.base_prefix, str(Path.home()),
                *site.getsitepackages(), sysconfig.get_paths()["stdlib"]}
    for prefix in sorted(prefixes, key=len, reverse=True):
        text = text.replace(prefix.rstrip("/") + "/", "")
    return text


def _frame_label(frame: Any) -> str:
    return clean_paths(f"{frame.function} ({frame.file_path_short}:{frame.line_no})")


def summarise_profile(root: Any, records: int, tree: str) -> ProfileSummary:
    """Fold pyinstrument's call tree into categories and the frames with the most self time."""
    categories: dict[str, float] = defaultdict(float)
    self_time: dict[str, float] = defaultdict(float)

    def walk(frame: Any, category: str, owner: str) -> None:
        if not frame.is_synthetic:
            path = str(frame.file_path or "")
            for fragment, function, name in PROFILE_RULES:
                if fragment in path and function in ("", frame.function):
                    category = name
            owner = _frame_label(frame)
        children = list(frame.children)
        own = frame.time - sum(child.time for child in children)
        if own > 0 or (frame.is_synthetic and not children):
            spent = own if own > 0 else frame.time
            categories[category] += spent
            self_time[owner] += spent
        for child in children:
            walk(child, category, owner)

    walk(root, "other", "other")
    return ProfileSummary(seconds=float(root.time), records=records,
                          categories=_largest(categories),
                          self_frames=_largest(self_time)[:15], tree=tree)


def _largest(values: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda item: -item[1])


def new_profiler() -> Any | None:
    """A pyinstrument profiler sampling every millisecond, or None without pyinstrument."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return None
    return Profiler(interval=0.001)


def summarise_run(profiler: Any, records: int) -> ProfileSummary | None:
    """The summary of ``profiler``'s last run over ``records`` records, or None if it recorded
    nothing."""
    session = profiler.last_session
    if session is None:
        return None
    root = session.root_frame()
    if root is None:
        return None
    # the call tree without pyinstrument's banner, which names the machine's paths
    lines = profiler.output_text(unicode=False, color=False).splitlines()
    start = next((n for n, line in enumerate(lines) if line[:1].isdigit()), 0)
    return summarise_profile(root, records, clean_paths("\n".join(lines[start:])))
