"""Write the whole site (every published month's files and pages) to a folder or to S3.

Every month's data files are regenerated from the ``published`` schema each time: they are
deterministic, so unchanged months produce the same bytes (and S3 uploads skip them).
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from nyc311.settings import Settings
from reports.publish import load_publication, published_months
from reports.s3 import is_s3_target, publish_tree
from reports.site import site_files, write_tree


def build_site(conn: psycopg.Connection) -> dict[str, bytes]:
    """Every published month's pages and data files (``site_files`` includes the data)."""
    return site_files([load_publication(conn, month) for month in published_months(conn)])


def write_site(settings: Settings, conn: psycopg.Connection, target: str) -> str:
    """Publish the site to ``target``; return a one-line summary."""
    files = build_site(conn)
    if is_s3_target(target):
        summary = publish_tree(files, target, endpoint_url=settings.s3_endpoint_url or None,
                               region=settings.aws_region)
        return str(summary)
    out = Path(target)
    write_tree(files, out)
    return f"wrote {len(files)} files to {out}/ (open {out / 'index.html'})"
