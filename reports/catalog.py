"""data.json: the catalog of the site's data sets in DCAT-US 1.1 (Project Open Data metadata v1.1).

Open-data portals (data.gov, NYC Open Data's own catalog, any CKAN) find a publisher's data by
harvesting its ``data.json``; it lists every data set with who publishes it, whom to ask, under
which terms, what period it covers, when it last changed, and a download link for every file.

Granularity: one data set per published table (every table of reports.model.TABLES, so a table
added there is catalogued with no change here), each with a CSV and a JSON distribution for
every published month, plus the site-level files the site passes in as :class:`SiteEntry`
(files at the site root that cover every month). A data set's identifier is ``nyc311-<name>``
and never changes, so a harvester updates the data set each month instead of adding a new one.
``temporal`` runs from the first instant of the oldest published month to the first instant
after the newest one (New York time, an ISO 8601 interval), ``modified`` is the newest
published revision's ``published_at``, and ``issued`` the first revision's. Months are listed
newest first, as on the site's index.

Links: the site's own links are relative so the tree can be served under any prefix, but
DCAT-US declares downloadURL (and every other URL) a JSON Schema ``uri``, which is an absolute
URL. With ``NYC311_SITE_URL`` set, every URL is that address joined with the file's path and the
catalog carries its own address as ``@id``. Without it the URLs are paths relative to data.json
(which is at the site root, like the paths): a person or a script that fetched data.json can
follow them, but a validator that checks the ``uri`` format, and a harvester, cannot, so a site
that is to be harvested sets ``NYC311_SITE_URL``. No made-up host is ever written in its place.

Licence: the tables are published under the NYC Open Data Terms of Use (:data:`LICENSE`), the
terms the City's open-data portal publishes its data sets under (Local Law 11 of 2012 makes
them available without registration or licence requirement). The contact point is
``NYC311_DATA_CONTACT_EMAIL``.

The same publications always give the same bytes: no clock, keys sorted, lists in a fixed order.
Every distribution points at a file of the site tree; a path that is not in it is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from nyc311.settings import DATA_CONTACT_EMAIL
from reports.files import DATA_DIR, KEYWORDS, LICENSE, _dump, _stamp, history, month_dir
from reports.model import TABLES, Publication, TableSpec

#: The catalog's path, relative to the site root.
CATALOG = "data.json"
CONTEXT = "https://project-open-data.cio.gov/v1.1/schema/catalog.jsonld"
CONFORMS_TO = "https://project-open-data.cio.gov/v1.1/schema"
DESCRIBED_BY = "https://project-open-data.cio.gov/v1.1/schema/catalog.json"
PUBLISHER: dict[str, Any] = {
    "@type": "org:Organization", "name": "NYC 311",
    "subOrganizationOf": {"@type": "org:Organization",
                          "name": "NYC Office of Technology and Innovation"},
}
CONTACT_NAME = "NYC 311 open data"
#: Every table is published again on the 1st of each month (ISO 8601 repeating interval).
MONTHLY = "R/P1M"
LAW = "Local Law 13 of 2025 (Administrative Code §23-306)"
#: Extension -> (mediaType, format) of the files a distribution may point at.
FORMATS = {"csv": ("text/csv", "CSV"), "json": ("application/json", "JSON")}

NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class SiteEntry:
    """A data set of files at the site root that cover every published month (e.g. a trends
    table): catalogued beside the tables, its period and dates those of the whole site."""

    name: str  # the identifier is nyc311-<name>; never change it once published
    title: str
    description: str
    paths: tuple[str, ...]  # relative to the site root, each a .csv or .json file
    keywords: tuple[str, ...] = ()


def _url(base: str, path: str) -> str:
    """``path`` (relative to the site root, which is data.json's folder) under ``base``."""
    return base + path


def _month_start(month: str) -> datetime:
    year, number = (int(part) for part in month.split("-"))
    return datetime(year, number, 1, tzinfo=NEW_YORK)


def _month_end(month: str) -> datetime:
    """The first instant after the month, New York time."""
    year, number = (int(part) for part in month.split("-"))
    return datetime(year + number // 12, number % 12 + 1, 1, tzinfo=NEW_YORK)


def _distribution(base: str, files: Mapping[str, bytes], path: str, title: str,
                  described_by: str | None = None) -> dict[str, Any]:
    if path not in files:
        raise ValueError(f"{CATALOG}: {path} is not a file of the site")
    extension = path.rsplit(".", 1)[-1]
    if extension not in FORMATS:
        raise ValueError(f"{CATALOG}: {path}: no media type for .{extension} files")
    media_type, label = FORMATS[extension]
    distribution = {"@type": "dcat:Distribution", "title": f"{title} ({label})",
                    "downloadURL": _url(base, path), "mediaType": media_type, "format": label}
    if described_by:
        if described_by not in files:
            raise ValueError(f"{CATALOG}: {described_by} is not a file of the site")
        distribution.update(describedBy=_url(base, described_by),
                            describedByType="application/json")
    return distribution


class _Catalog:
    """What every data set of one catalog shares: the months, the dates, the links."""

    def __init__(self, pubs: Sequence[Publication], files: Mapping[str, bytes], base: str,
                 contact_email: str) -> None:
        self.pubs = sorted(pubs, key=lambda pub: pub.month, reverse=True)
        self.files, self.base = files, base
        months = [pub.month for pub in self.pubs]
        if len(set(months)) != len(months):
            raise ValueError(f"{CATALOG}: one publication a month, got months {months}")
        self.temporal = (f"{_month_start(months[-1]).isoformat()}/"
                         f"{_month_end(months[0]).isoformat()}")
        self.modified = _stamp(max(pub.published_at for pub in self.pubs))
        self.issued = _stamp(min(history(pub)[0][1] for pub in self.pubs))
        self.contact = {"@type": "vcard:Contact", "fn": CONTACT_NAME,
                        "hasEmail": f"mailto:{contact_email}"}

    def dataset(self, name: str, title: str, description: str, keywords: Iterable[str],
                described_by: str, distributions: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "@type": "dcat:Dataset",
            "identifier": f"nyc311-{name}",
            "title": title,
            "description": description,
            "keyword": list(dict.fromkeys([*KEYWORDS, *keywords])),
            "modified": self.modified,
            "issued": self.issued,
            "temporal": self.temporal,
            "accrualPeriodicity": MONTHLY,
            "publisher": PUBLISHER,
            "contactPoint": self.contact,
            "accessLevel": "public",
            "license": LICENSE,
            "spatial": "New York City",
            "language": ["en-US"],
            "landingPage": _url(self.base, "index.html"),
            "describedBy": _url(self.base, described_by),
            "describedByType": "text/html",
            "distribution": distributions,
        }

    def table(self, spec: TableSpec) -> dict[str, Any]:
        distributions = []
        for pub in self.pubs:
            folder = month_dir(pub.month)
            label = f"{spec.title}, {pub.month}"
            distributions += [
                _distribution(self.base, self.files, f"{folder}/{spec.name}.csv", label,
                              f"{folder}/datapackage.json"),
                _distribution(self.base, self.files, f"{folder}/{spec.name}.json", label),
            ]
        description = (
            f"{spec.description} Published every month under {LAW}: one CSV file and one JSON "
            f"file per month, {DATA_DIR}/YYYY-MM/{spec.name}.csv and .json, with the same "
            "rows; the month's datapackage.json describes every column, and the methodology "
            "page defines every number.")
        return self.dataset(spec.name, f"NYC 311 monthly service metrics: {spec.title}",
                            description, [spec.name.replace("_", " ")],
                            f"methodology.html#{spec.name}", distributions)

    def site_entry(self, entry: SiteEntry) -> dict[str, Any]:
        distributions = [_distribution(self.base, self.files, path, entry.title)
                         for path in entry.paths]
        # the methodology page has a section of the entry's name (id), which defines it
        return self.dataset(entry.name, entry.title, entry.description, entry.keywords,
                            f"methodology.html#{entry.name}", distributions)



def catalog(pubs: Sequence[Publication], files: Mapping[str, bytes], *, site_url: str = "",
            contact_email: str = DATA_CONTACT_EMAIL,
            entries: Sequence[SiteEntry] = ()) -> dict[str, Any]:
    """The DCAT-US catalog of the site whose files are ``files``.

    ``pubs`` holds the published revision of each month (one per month); ``site_url`` is the
    site's public address ending in "/", or empty for links relative to data.json. With no
    month published yet the catalog lists no data set.
    """
    if site_url and not site_url.endswith("/"):
        raise ValueError(f"site_url must end with '/', got {site_url!r}")
    document: dict[str, Any] = {"@context": CONTEXT, "@type": "dcat:Catalog",
                                "conformsTo": CONFORMS_TO, "describedBy": DESCRIBED_BY,
                                "dataset": []}
    if site_url:
        document["@id"] = _url(site_url, CATALOG)
    if pubs:
        shared = _Catalog(pubs, files, site_url, contact_email)
        names = [spec.name for spec in TABLES] + [entry.name for entry in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"{CATALOG}: two data sets share a name in {names}")
        document["dataset"] = ([shared.table(spec) for spec in TABLES]
                               + [shared.site_entry(entry) for entry in entries])
    return document


def catalog_file(pubs: Sequence[Publication], files: Mapping[str, bytes], *,
                 site_url: str = "", contact_email: str = DATA_CONTACT_EMAIL,
                 entries: Sequence[SiteEntry] = ()) -> bytes:
    """data.json, written like every other JSON file of the site (reports.files._dump)."""
    return _dump(catalog(pubs, files, site_url=site_url, contact_email=contact_email,
                         entries=entries))
