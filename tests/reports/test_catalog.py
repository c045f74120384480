"""data.json (DCAT-US 1.1) and every month's datapackage.json (Data Package v2) against the JSON
Schemas kept in tests/reports/jsonschemas (SOURCE.md there says where each comes from).

The schemas' $refs between files are resolved from those copies through a `referencing`
Registry that has no way to fetch anything, so validation never touches the network. Formats
are checked (`uri`, `date-time`): a relative downloadURL is not a `uri`, which is why a site to
be harvested sets NYC311_SITE_URL.

DCAT-US's dataset.json requires `bureauCode` and `programCode`, federal budget codes (OMB
Circular A-11) that a city has none of. Catalogs of states and cities are validated by data.gov
without those two requirements (its non-federal schema, GSA/ckanext-datajson); the tests do the
same by dropping exactly those two from the kept dataset.json's `required`, and check that they
are the only thing the unmodified federal schema finds missing.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft4Validator, Draft7Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT7

import reports.catalog
import reports.output
from nyc311.settings import load_settings
from reports.catalog import CATALOG, SiteEntry, catalog, catalog_file
from reports.model import TABLES, Column, TableSpec
from reports.site import site_files
from tests.reports.publications import publication

SCHEMAS = Path(__file__).parent / "jsonschemas"
POD = "https://project-open-data.cio.gov/v1.1/schema/"
DATAPACKAGE = "https://datapackage.org/profiles/2.0/"
FEDERAL_ONLY = {"bureauCode", "programCode"}
SITE_URL = "https://data.example.org/311/"  # a documentation domain (RFC 2606)
MONTHS = ("2024-12", "2025-01")


def _schema(folder: str, name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / folder / name).read_text(encoding="utf-8"))


def dcat_registry(*, federal: bool = False) -> Registry:
    """The DCAT-US 1.1 schemas under their own URLs; dataset.json without the federal codes
    unless ``federal``."""
    resources = []
    for name in ("catalog.json", "dataset.json", "distribution.json", "vcard.json",
                 "organization.json"):
        schema = _schema("dcat-us-1.1", name)
        assert schema["id"] == f"{POD}{name}#", name
        if name == "dataset.json" and not federal:
            schema["required"] = [key for key in schema["required"] if key not in FEDERAL_ONLY]
        resources.append((POD + name, Resource.from_contents(schema, DRAFT4)))
    return Registry().with_resources(resources)


def datapackage_registry() -> Registry:
    """The Data Package v2 profiles under the URLs a descriptor's $schema names them by."""
    return Registry().with_resources(
        (DATAPACKAGE + name, Resource.from_contents(_schema("datapackage-2.0", name), DRAFT7))
        for name in ("datapackage.json", "dataresource.json", "tableschema.json",
                     "tabledialect.json"))


def dcat_errors(document: Any, *, federal: bool = False,
                formats: bool = True) -> list[ValidationError]:
    registry = dcat_registry(federal=federal)
    validator = Draft4Validator(registry.contents(POD + "catalog.json"), registry=registry,
                                format_checker=FormatChecker() if formats else None)
    return sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))


def profile_errors(document: Any, profile: str) -> list[ValidationError]:
    registry = datapackage_registry()
    validator = Draft7Validator(registry.contents(profile), registry=registry,
                                format_checker=FormatChecker())
    return list(validator.iter_errors(document))


def package_errors(package: dict[str, Any]) -> list[ValidationError]:
    """The package against the profile its $schema names, and each resource, table schema and
    dialect against its own profile as well."""
    errors = profile_errors(package, package.get("$schema", "(no $schema)"))
    for resource in package.get("resources", []):
        errors += profile_errors(resource, DATAPACKAGE + "dataresource.json")
        errors += profile_errors(resource.get("schema", {}), DATAPACKAGE + "tableschema.json")
        errors += profile_errors(resource.get("dialect", {}), DATAPACKAGE + "tabledialect.json")
    return errors


def messages(errors: list[ValidationError]) -> list[str]:
    """Every error with the path it is at, and the errors of each alternative an anyOf or
    oneOf tried (the schemas nest most checks in those)."""
    out = []
    for error in errors:
        out.append(f"{'/'.join(map(str, error.absolute_path))}: {error.message}")
        out += messages(list(error.context or ()))
    return out


def _causes(error: ValidationError) -> list[ValidationError]:
    return [error, *(cause for e in error.context or () for cause in _causes(e))]


def _keys(document: Any) -> set[str]:
    if isinstance(document, dict):
        return set(document) | {k for v in document.values() for k in _keys(v)}
    if isinstance(document, list):
        return {k for v in document for k in _keys(v)}
    return set()


def publications() -> list:
    return [publication("2024-12", revision=1), publication("2025-01", revision=2)]


@pytest.fixture(scope="module")
def site() -> dict[str, bytes]:
    return site_files(publications(), site_url=SITE_URL)


@pytest.fixture(scope="module")
def relative_site() -> dict[str, bytes]:
    return site_files(publications())


def test_the_kept_schemas_are_valid_schemas_and_resolve_locally():
    for name in ("catalog.json", "dataset.json", "distribution.json", "vcard.json",
                 "organization.json"):
        Draft4Validator.check_schema(_schema("dcat-us-1.1", name))
    for name in ("datapackage.json", "dataresource.json", "tableschema.json",
                 "tabledialect.json"):
        Draft7Validator.check_schema(_schema("datapackage-2.0", name))
    # the formats these tests rely on are checked, not skipped for want of a library
    assert not FormatChecker().conforms("data/2025-01/satisfaction.csv", "uri")
    assert FormatChecker().conforms(SITE_URL + "data.json", "uri")
    assert not FormatChecker().conforms("2025-01-01 12:00", "date-time")
    resolver = dcat_registry().resolver(POD + "catalog.json")
    assert resolver.lookup("dataset.json").contents["title"] == "Project Open Data Dataset"


def test_data_json_is_a_dcat_us_catalog(site):
    document = json.loads(site[CATALOG])
    assert messages(dcat_errors(document)) == []
    assert document["@context"] == POD + "catalog.jsonld"
    assert document["@type"] == "dcat:Catalog"
    assert document["conformsTo"] == "https://project-open-data.cio.gov/v1.1/schema"
    assert document["describedBy"] == POD + "catalog.json"
    assert document["@id"] == SITE_URL + "data.json"


def test_the_federal_schema_misses_only_the_federal_budget_codes(site):
    errors = dcat_errors(json.loads(site[CATALOG]), federal=True)
    assert errors
    assert {e.message for e in errors} == {f"{key!r} is a required property"
                                          for key in FEDERAL_ONLY}
    assert {tuple(e.absolute_path)[:1] for e in errors} == {("dataset",)}


def test_every_table_is_a_dataset_with_every_month_as_csv_and_json(site):
    datasets = {d["identifier"]: d for d in json.loads(site[CATALOG])["dataset"]}
    assert list(datasets) == [f"nyc311-{spec.name}" for spec in TABLES] + ["nyc311-trends"]
    assert [d["downloadURL"] for d in datasets["nyc311-trends"]["distribution"]] == [
        f"{SITE_URL}trends.csv", f"{SITE_URL}trends.json"]
    for spec in TABLES:
        dataset = datasets[f"nyc311-{spec.name}"]
        assert dataset["accessLevel"] == "public"
        assert dataset["contactPoint"] == {"@type": "vcard:Contact", "fn": "NYC 311 open data",
                                           "hasEmail": "mailto:opendata@311.nyc.gov"}
        assert dataset["license"] == "https://opendata.cityofnewyork.us/overview/#termsofuse"
        assert dataset["publisher"]["name"] == "NYC 311"
        assert dataset["keyword"] and spec.title in dataset["title"]
        assert spec.description in dataset["description"]
        # the first instant of December 2024 to the first instant after January 2025, New York
        assert dataset["temporal"] == "2024-12-01T00:00:00-05:00/2025-02-01T00:00:00-05:00"
        assert dataset["modified"] == "2025-02-20T19:00:00+00:00"  # January's revision 2
        assert dataset["issued"] == "2025-01-02T14:00:00+00:00"  # December's revision 1
        assert dataset["describedBy"] == f"{SITE_URL}methodology.html#{spec.name}"

        downloads = [(d["downloadURL"], d["mediaType"], d["format"])
                     for d in dataset["distribution"]]
        assert downloads == [
            (f"{SITE_URL}data/{month}/{spec.name}.{ext}", media, ext.upper())
            for month in sorted(MONTHS, reverse=True)
            for ext, media in (("csv", "text/csv"), ("json", "application/json"))]


def _site_path(url: str, base: str) -> str:
    """The path in the site tree a catalog URL points at (base "" for relative URLs)."""
    assert url.startswith(base), url
    relative = urlsplit(url[len(base):])
    assert not relative.scheme and not relative.netloc, url
    return str(PurePosixPath(os.path.normpath(relative.path)))


@pytest.mark.parametrize(("fixture", "base"), [("site", SITE_URL), ("relative_site", "")])
def test_every_url_points_at_a_file_of_the_site(request, fixture, base):
    tree = request.getfixturevalue(fixture)
    document = json.loads(tree[CATALOG])
    for dataset in document["dataset"]:
        for key in ("landingPage", "describedBy"):
            path = _site_path(dataset[key], base)
            assert path in tree, (dataset["identifier"], key, path)
        for distribution in dataset["distribution"]:
            for key in ("downloadURL", "describedBy"):
                if key in distribution:
                    path = _site_path(distribution[key], base)
                    assert path in tree, (dataset["identifier"], key, path)
                    if key == "downloadURL":
                        assert path.rsplit(".", 1)[-1] == distribution["format"].lower()
    fragments = {urlsplit(d["describedBy"]).fragment for d in document["dataset"]}
    methodology = tree["methodology.html"].decode()
    assert all(f'id="{fragment}"' in methodology for fragment in fragments)


def test_without_a_site_url_the_links_are_relative_and_only_the_uri_format_objects(
        relative_site):
    """Relative links validate against the schemas' structure (JSON Schema leaves formats
    optional), and a validator that checks the uri format rejects exactly those links."""
    document = json.loads(relative_site[CATALOG])
    assert "@id" not in document
    assert messages(dcat_errors(document, formats=False)) == []
    errors = dcat_errors(document)
    assert errors
    failing = set()
    for error in errors:  # a format error itself, or an anyOf that failed on one
        uris = [e for e in _causes(error) if e.validator == "format" and e.validator_value == "uri"]
        assert uris, error.message
        failing |= {e.absolute_path[-1] for e in uris}
    assert failing == {"downloadURL", "describedBy", "landingPage"}
    first = document["dataset"][0]["distribution"][0]
    assert first["downloadURL"] == f"data/2025-01/{TABLES[0].name}.csv"


def test_each_months_datapackage_is_a_data_package_v2(site):
    for month in MONTHS:
        package = json.loads(site[f"data/{month}/datapackage.json"])
        assert package["$schema"] == DATAPACKAGE + "datapackage.json"
        assert messages(package_errors(package)) == []
        assert [r["type"] for r in package["resources"]] == ["table"] * len(TABLES)
        assert "profile" not in _keys(package)  # v1's key, replaced by $schema and type
        assert package["licenses"] == [{"path": "https://opendata.cityofnewyork.us/overview/"
                                                "#termsofuse",
                                        "title": "NYC Open Data Terms of Use"}]


def _dataset(document: dict[str, Any]) -> dict[str, Any]:
    dataset: dict[str, Any] = document["dataset"][0]
    return dataset


@pytest.mark.parametrize(("break_it", "expected"), [
    (lambda d: d.pop("conformsTo"), "'conformsTo' is a required property"),
    (lambda d: d.update({"conformsTo": "https://project-open-data.cio.gov/v1.0/schema"}),
     "is not one of"),
    (lambda d: _dataset(d).pop("contactPoint"), "'contactPoint' is a required property"),
    (lambda d: _dataset(d).pop("identifier"), "'identifier' is a required property"),
    (lambda d: _dataset(d)["contactPoint"].update(hasEmail="opendata@311.nyc.gov"),
     "does not match"),
    (lambda d: _dataset(d).update(accessLevel="open"), "is not one of"),
    (lambda d: _dataset(d).update(temporal="December 2024"), "is not valid under any"),
    (lambda d: _dataset(d)["distribution"][0].pop("mediaType"),
     "'mediaType' is a required property"),
    (lambda d: _dataset(d)["distribution"][0].update(downloadURL="data/2025-01/x.csv"),
     "is not a 'uri'"),
    (lambda d: _dataset(d)["publisher"]["subOrganizationOf"].pop("name"),
     "'name' is a required property"),
])
def test_a_broken_catalog_fails(site, break_it, expected):
    document = json.loads(site[CATALOG])
    break_it(document)
    found = messages(dcat_errors(document))
    assert any(expected in message for message in found), found


@pytest.mark.parametrize(("break_it", "expected"), [
    (lambda p: p.pop("resources"), "'resources' is a required property"),
    (lambda p: p["resources"][0].pop("name"), "is not valid under any"),
    (lambda p: p["resources"][0].update(type="tabular"), "is not one of ['table']"),
    (lambda p: p["resources"][0]["schema"]["fields"][0].update(type="text"), "is not valid"),
    (lambda p: p["resources"][0].update(hash="sha256:not-hex"), "does not match"),
    (lambda p: p.update(created="February 20, 2025"), "is not a 'date-time'"),
])
def test_a_broken_datapackage_fails(site, break_it, expected):
    package = json.loads(site["data/2025-01/datapackage.json"])
    break_it(package)
    found = messages(package_errors(package))
    assert any(expected in message for message in found), found


def test_the_catalog_is_the_same_bytes_for_the_same_publications(site):
    again = site_files(list(reversed(publications())), site_url=SITE_URL)
    assert again[CATALOG] == site[CATALOG]
    two = publication("2025-01", revision=2)
    older = replace(two, revision=1, changes=[], history=[])
    assert site_files([*publications(), older], site_url=SITE_URL)[CATALOG] == site[CATALOG]
    assert site[CATALOG].endswith(b"\n") and site[CATALOG].decode("utf-8")


def test_a_site_with_no_month_has_a_valid_empty_catalog():
    document = json.loads(site_files([], site_url=SITE_URL)[CATALOG])
    assert document["dataset"] == []
    assert messages(dcat_errors(document)) == []


def test_the_contact_is_the_setting():
    document = json.loads(site_files(publications(), site_url=SITE_URL,
                                     contact_email="data-team@example.org")[CATALOG])
    assert {d["contactPoint"]["hasEmail"] for d in document["dataset"]} == {
        "mailto:data-team@example.org"}
    assert messages(dcat_errors(document)) == []


def test_a_table_added_to_the_model_is_catalogued(monkeypatch, site):
    """The datasets come from reports.model.TABLES: a new table needs no change here."""
    extra = TableSpec("complaint_counts", "Complaint counts", "Complaints counted.",
                      (Column("month", "string", "Month."),), ())
    monkeypatch.setattr(reports.catalog, "TABLES", (*TABLES, extra))
    files = dict(site)
    for month in MONTHS:
        for ext in ("csv", "json"):
            files[f"data/{month}/complaint_counts.{ext}"] = b"month\n"
    document = catalog(publications(), files, site_url=SITE_URL)
    assert [d["identifier"] for d in document["dataset"]][-1] == "nyc311-complaint_counts"
    assert len(document["dataset"][-1]["distribution"]) == 2 * len(MONTHS)
    assert messages(dcat_errors(document)) == []
    with pytest.raises(ValueError, match=r"complaint_counts\.json is not a file of the site"):
        catalog(publications(), {k: v for k, v in files.items()
                                 if k != "data/2025-01/complaint_counts.json"})


def test_site_level_entries_are_datasets_of_the_whole_period(site):
    trends = SiteEntry("trends", "NYC 311 service metrics: trends",
                       "Every published month's headline numbers, one row a month.",
                       ("trends.csv",), ("trends",))
    files = {**site, "trends.csv": b"month\n2024-12\n2025-01\n"}
    document = catalog(publications(), files, site_url=SITE_URL, entries=[trends])
    assert messages(dcat_errors(document)) == []
    dataset = document["dataset"][-1]
    assert dataset["identifier"] == "nyc311-trends"
    assert dataset["temporal"] == "2024-12-01T00:00:00-05:00/2025-02-01T00:00:00-05:00"
    assert [(d["downloadURL"], d["mediaType"]) for d in dataset["distribution"]] == [
        (SITE_URL + "trends.csv", "text/csv")]
    assert "trends" in dataset["keyword"]

    with pytest.raises(ValueError, match=r"trends\.csv is not a file of the site"):
        catalog(publications(), {k: v for k, v in site.items() if k != "trends.csv"},
                entries=[trends])
    with pytest.raises(ValueError, match="share a name"):
        catalog(publications(), files, entries=[trends, trends])
    with pytest.raises(ValueError, match=r"no media type for \.xlsx"):
        catalog(publications(), {**files, "trends.xlsx": b""},
                entries=[replace(trends, paths=("trends.xlsx",))])
    assert catalog_file(publications(), files, entries=[trends]) == catalog_file(
        publications(), copy.deepcopy(files), entries=[trends])


def test_a_site_url_without_its_final_slash_or_two_revisions_of_a_month_are_refused(site):
    with pytest.raises(ValueError, match="must end with '/'"):
        catalog(publications(), site, site_url="https://data.example.org/311")
    with pytest.raises(ValueError, match="one publication a month"):
        catalog([*publications(), publication("2025-01", revision=1)], site)


def test_the_published_site_takes_the_address_and_contact_from_the_settings(monkeypatch):
    """build_site (what `nyc311 publish` and the aggregator write) threads NYC311_SITE_URL and
    NYC311_DATA_CONTACT_EMAIL through to data.json; without settings it keeps the defaults."""
    pubs = {pub.month: pub for pub in publications()}
    monkeypatch.setattr(reports.output, "published_months", lambda conn, schema: sorted(pubs))
    monkeypatch.setattr(reports.output, "load_publication",
                        lambda conn, month, schema: pubs[month])
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "k:9092",
                              "DATABASE_URL": "postgresql://u@h/d",
                              "NYC311_SITE_URL": "https://data.example.org/311",
                              "NYC311_DATA_CONTACT_EMAIL": "data-team@example.org"})
    published = reports.output.build_site(None, settings=settings)  # type: ignore[arg-type]
    assert published == site_files(list(pubs.values()), site_url=SITE_URL,
                                   contact_email="data-team@example.org")
    document = json.loads(published[CATALOG])
    assert document["@id"] == SITE_URL + "data.json"
    assert messages(dcat_errors(document)) == []
    assert reports.output.build_site(None) == site_files(list(pubs.values()))  # type: ignore[arg-type]
