"""Write the whole site (every published month's files and pages) to a folder or to S3.

Every month's data files are regenerated from the projection's publication schema each time:
they are deterministic, so unchanged months produce the same bytes (and S3 uploads skip them).

A site holds one projection's publication. Two projections (two ``NYC311_DB_SCHEMA`` in one
database, or two databases) publishing to the same folder or S3 prefix would overwrite each
other's files, each publication rewriting the index and the months of the other. So the first
publication to a target claims it with a marker file, ``.nyc311-publication.json``, naming the
database, the projection schema and its publication schema; a publication from anything else
to a target whose marker names another is refused before a file is written, with a clear error.
The marker is created only where none exists (``O_EXCL`` in a folder, ``If-None-Match: *`` on
S3), so two first publications at once cannot both claim a target. A site published before
markers existed is claimed by the first publication after them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from nyc311.settings import Settings
from reports.publish import PublicationError, check_owner, load_publication, published_months
from reports.s3 import create_object, is_s3_target, publish_tree, read_object
from reports.site import site_files, write_tree

MARKER = ".nyc311-publication.json"
#: What a publication without NYC311_SITE_URL logs: its data.json still works from the site,
#: but a harvester (data.gov, a CKAN portal) and a DCAT-US validator need absolute URLs.
RELATIVE_CATALOG = ("NYC311_SITE_URL is not set: data.json's URLs (downloadURL, describedBy, "
                    "landingPage) are relative to it, which DCAT-US harvesters and validators "
                    "reject; set NYC311_SITE_URL to the site's public address for the site to be "
                    "harvested")

log = logging.getLogger(__name__)


class PublicationTargetError(PublicationError):
    """The folder or S3 prefix holds another projection's publication."""


@dataclass(frozen=True)
class SiteOwner:
    """The publication a site belongs to."""

    database: str
    projection: str
    published_schema: str

    @classmethod
    def of(cls, settings: Settings, conn: psycopg.Connection) -> SiteOwner:
        row = conn.execute("SELECT current_database()").fetchone()
        return cls(str(row[0]) if row else "", settings.db_schema, settings.published_schema)

    def marker(self) -> bytes:
        document = {"about": "This site is the monthly publication of one nyc311 projection; "
                             "`nyc311 publish` writes no other projection's files here.",
                    **asdict(self)}
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    def describe(self) -> str:
        return (f"projection {self.projection!r} (publication schema "
                f"{self.published_schema!r}) of database {self.database!r}")

    def check(self, target: str, found: bytes) -> None:
        """PublicationTargetError unless the marker ``found`` at ``target`` names this one."""
        try:
            document: Any = json.loads(found)
            other = SiteOwner(str(document["database"]), str(document["projection"]),
                              str(document["published_schema"]))
        except (ValueError, KeyError, TypeError):
            raise PublicationTargetError(
                f"{target} has a {MARKER} that cannot be read; if the site there is "
                f"{self.describe()}, delete the marker and publish again") from None
        if other != self:
            raise PublicationTargetError(
                f"{target} holds the publication of {other.describe()}; this is "
                f"{self.describe()}: publish it to another folder or S3 prefix (--out, "
                "NYC311_PUBLISH_TARGET)")


def claim_target(settings: Settings, owner: SiteOwner, target: str) -> None:
    """Make sure ``target`` is this publication's, claiming it when nobody has."""
    if is_s3_target(target):
        where = dict(endpoint_url=settings.s3_endpoint_url or None, region=settings.aws_region)
        found = read_object(target, MARKER, **where)
        if found is None:
            if create_object(target, MARKER, owner.marker(), **where):
                return
            found = read_object(target, MARKER, **where) or b""  # claimed meanwhile
        owner.check(target, found)
        return
    folder = Path(target)
    marker = folder / MARKER
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        if not folder.is_dir():
            raise PublicationTargetError(f"cannot publish to {folder}: it is a file") from None
        owner.check(str(folder), marker.read_bytes())
        return
    except OSError as exc:
        raise PublicationTargetError(f"cannot publish to {folder}: "
                                     f"{exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(owner.marker())
        handle.flush()
        os.fsync(handle.fileno())


def claim_site(settings: Settings, conn: psycopg.Connection, target: str) -> None:
    """Check, before anything is published, that the publication schema is this projection's
    and ``target`` is (or now becomes) this publication's site; PublicationError if not."""
    check_owner(conn, settings.published_schema)
    claim_target(settings, SiteOwner.of(settings, conn), target)


def build_site(conn: psycopg.Connection, schema: str = "published", *,
               settings: Settings | None = None) -> dict[str, bytes]:
    """Every published month's pages and data files (``site_files`` includes the data), from
    the publication schema ``schema``; ``settings`` gives data.json the site's public address
    (``NYC311_SITE_URL``) and contact (``NYC311_DATA_CONTACT_EMAIL``), the defaults without."""
    catalog: dict[str, Any] = ({} if settings is None else
                               {"site_url": settings.site_url,
                                "contact_email": settings.data_contact_email})
    return site_files([load_publication(conn, month, schema=schema)
                       for month in published_months(conn, schema=schema)], **catalog)


def write_site(settings: Settings, conn: psycopg.Connection, target: str) -> str:
    """Publish the projection's site to ``target``; return a one-line summary. Without
    ``NYC311_SITE_URL`` the site is published as before, with data.json's URLs relative, and
    one warning line says so.

    Refused (:class:`~reports.publish.PublicationError`) when the publication schema is not
    this projection's or ``target`` holds another projection's site.
    """
    claim_site(settings, conn, target)
    if not settings.site_url:
        log.warning(RELATIVE_CATALOG, extra={"target": target})
    files = build_site(conn, settings.published_schema, settings=settings)
    if is_s3_target(target):
        summary = publish_tree(files, target, endpoint_url=settings.s3_endpoint_url or None,
                               region=settings.aws_region)
        return str(summary)
    out = Path(target)
    write_tree(files, out)
    return f"wrote {len(files)} files to {out}/ (open {out / 'index.html'})"
