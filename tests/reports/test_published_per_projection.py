"""Two projections in one database publish apart: their own revisions, their own sites.

``nyc311`` publishes into ``published`` (the name it always had) and ``nyc311_b`` into
``nyc311_b_published``; neither ever overwrites the other's revisions or site files, and a
rebuild keeps publishing into the live projection's schema.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import boto3
import psycopg
import pytest

from nyc311.settings import Settings, load_settings
from reports.output import MARKER, PublicationTargetError, write_site
from reports.publish import PublicationError, load_publication, publish_month
from storage.db import connect
from storage.migrate import upgrade
from tests.helpers import run_cli
from tests.reports.test_publish import closure, request, t

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, tzinfo=UTC)
MONTH = "2026-10"


def second_projection(settings: Settings, name: str = "nyc311_b") -> Settings:
    """The settings `NYC311_DB_SCHEMA=<name>` gives, in the test's database, migrated."""
    other = replace(settings, db_schema=name)
    assert other.published_schema == f"{name}_published"
    upgrade(other)
    return other


def fill(conn: psycopg.Connection, requests: int, closed: int) -> None:
    for i in range(requests):
        request(conn, f"{conn.info.dbname}-{requests}-{i}", t(3 + i % 20))
        if i < closed:
            closure(conn, f"{conn.info.dbname}-{requests}-{i}", t(25))


def received(pub) -> int:
    return sum(row["received"] for row in pub.tables["requests_received"])


def test_two_projections_publish_their_own_numbers(settings, db, tmp_path):
    b = second_projection(settings)
    fill(db, requests=3, closed=1)
    with connect(b, autocommit=True) as conn_b:
        fill(conn_b, requests=5, closed=4)
        pub_a, new_a = publish_month(db, MONTH, now=NOW, schema=settings.published_schema)
        pub_b, new_b = publish_month(conn_b, MONTH, now=NOW, schema=b.published_schema)
        assert new_a and new_b and pub_a.revision == pub_b.revision == 1
        assert (received(pub_a), received(pub_b)) == (3, 5)

        # publishing one again changes nothing of the other, and the other way round
        again, new = publish_month(db, MONTH, now=NOW, schema=settings.published_schema)
        assert not new and again.revision == 1 and received(again) == 3
        assert load_publication(conn_b, MONTH, schema=b.published_schema).revision == 1
        assert received(load_publication(conn_b, MONTH, schema=b.published_schema)) == 5
        assert received(load_publication(db, MONTH, schema="published")) == 3

        # a projection cannot publish into the other's schema
        with pytest.raises(PublicationError, match="holds the publication of projection "
                                                   "'nyc311', not of 'nyc311_b'"):
            publish_month(conn_b, MONTH, now=NOW, schema="published")
        assert received(load_publication(db, MONTH, schema="published")) == 3

        # sites: each its own; one refuses to write over the other's
        site_a, site_b = tmp_path / "site-a", tmp_path / "site-b"
        write_site(settings, db, str(site_a))
        write_site(b, conn_b, str(site_b))
        csv_a = (site_a / "data" / MONTH / "requests_received.csv").read_bytes()
        csv_b = (site_b / "data" / MONTH / "requests_received.csv").read_bytes()
        assert csv_a.endswith(b",3\n") and csv_b.endswith(b",5\n")
        before = {p: p.read_bytes() for p in site_a.rglob("*") if p.is_file()}
        with pytest.raises(PublicationTargetError, match=r"holds the publication of projection "
                                                         r"'nyc311' \(publication schema "
                                                         r"'published'\)"):
            write_site(b, conn_b, str(site_a))
        assert {p: p.read_bytes() for p in site_a.rglob("*") if p.is_file()} == before
        write_site(settings, db, str(site_a))  # its own site: published again as before
        assert (site_a / MARKER).is_file()


def test_the_command_line_derives_the_schema_and_refuses_a_shared_site(settings, db, tmp_path):
    b = second_projection(settings)
    with connect(b, autocommit=True) as conn_b:
        fill(conn_b, requests=2, closed=2)
    fill(db, requests=4, closed=0)
    site = tmp_path / "site"
    done = run_cli(b, "publish", "--month", MONTH, "--out", str(site))
    assert done.returncode == 0, done.stderr
    assert db.execute("SELECT count(*) FROM nyc311_b_published.revisions").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM published.revisions").fetchone() == (0,)

    refused = run_cli(settings, "publish", "--month", MONTH, "--out", str(site))
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert lines[-1].startswith(f"Error: {site} holds the publication of projection "
                                "'nyc311_b'")
    # refused before anything was published, and the site still shows nyc311_b's numbers
    assert db.execute("SELECT count(*) FROM published.revisions").fetchone() == (0,)
    assert (site / "data" / MONTH / "requests_received.csv").read_bytes().endswith(b",2\n")


def test_the_analyst_reads_every_publication_schema(settings, db):
    b = second_projection(settings)
    with connect(b, autocommit=True) as conn_b:
        fill(conn_b, requests=2, closed=1)
        publish_month(conn_b, MONTH, now=NOW, schema=b.published_schema)
    publish_month(db, MONTH, now=NOW, schema="published")
    login = f"analyst_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {login} LOGIN PASSWORD 'pw' IN ROLE nyc311_analyst")
    try:
        url = settings.libpq_url.replace("nyc311:nyc311@", f"{login}:pw@")
        with psycopg.connect(url, autocommit=True) as analyst:
            for schema, projection in (("published", "nyc311"),
                                       ("nyc311_b_published", "nyc311_b")):
                assert analyst.execute(f"SELECT count(*) FROM {schema}.revisions").fetchone() \
                    == (1,)
                assert analyst.execute(f"SELECT projection FROM {schema}.publication_owner"
                                       ).fetchone() == (projection,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                analyst.execute("SELECT 1 FROM nyc311_b.requests LIMIT 1")
    finally:
        db.execute(f"DROP ROLE {login}")


def test_a_publication_schema_cannot_be_shared(settings):
    with pytest.raises(Exception, match="holds the publication of projection 'nyc311'"):
        upgrade(replace(settings, db_schema="nyc311_c", published_schema_override="published"))
    env = {"KAFKA_BOOTSTRAP_SERVERS": "x:1", "DATABASE_URL": "postgresql://u@h/d"}
    assert load_settings(env).published_schema == "published"
    assert load_settings({**env, "NYC311_DB_SCHEMA": "b"}).published_schema == "b_published"
    assert load_settings({**env, "NYC311_DB_SCHEMA": "b", "NYC311_PUBLISHED_SCHEMA": "pub_b"}
                         ).published_schema == "pub_b"


def test_a_projection_migrated_with_the_shared_schema_gets_its_own(settings, db):
    """Before 0006 every projection of a database migrated into `published`: a projection
    migrated then gets a schema of its own, with the same tables and the analyst's access."""
    legacy = replace(settings, db_schema="nyc311_legacy")
    upgrade(replace(legacy, published_schema_override="published"), "0005")  # as 0003 was
    assert db.execute("SELECT to_regclass('nyc311_legacy_published.revisions')").fetchone() \
        == (None,)
    upgrade(legacy)
    tables = {name for (name,) in db.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'nyc311_legacy_published'")}
    assert tables == {"revisions", "requests_received", "closure_rates", "reopen_rates",
                      "satisfaction", "publication_owner", "survey_responses",
                      "survey_response_rates", "publication_key"}
    assert db.execute("SELECT has_table_privilege('nyc311_analyst', "
                      "'nyc311_legacy_published.publication_key', 'SELECT')").fetchone() == (
        False,)
    assert db.execute("SELECT has_table_privilege('nyc311_analyst', "
                      "'nyc311_legacy_published.satisfaction', 'SELECT')").fetchone() == (True,)
    with connect(legacy, autocommit=True) as conn:
        fill(conn, requests=2, closed=1)
        pub, _ = publish_month(conn, MONTH, now=NOW, schema=legacy.published_schema)
    assert received(pub) == 2
    assert db.execute("SELECT projection FROM published.publication_owner").fetchone() == (
        "nyc311",)


@pytest.mark.usefixtures("aws_env")
def test_an_s3_prefix_holds_one_projection(settings, db, moto_server):
    s3 = boto3.session.Session().client("s3", region_name="us-east-1",
                                        endpoint_url=moto_server.url)
    bucket = f"nyc311-site-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    a = replace(settings, s3_endpoint_url=moto_server.url)
    b = replace(second_projection(settings), s3_endpoint_url=moto_server.url)
    fill(db, requests=1, closed=1)
    publish_month(db, MONTH, now=NOW)
    write_site(a, db, f"s3://{bucket}/metrics")
    marker = s3.get_object(Bucket=bucket, Key=f"metrics/{MARKER}")["Body"].read()
    assert b'"projection": "nyc311"' in marker
    with connect(b, autocommit=True) as conn_b, pytest.raises(PublicationTargetError):
        write_site(b, conn_b, f"s3://{bucket}/metrics")
    with connect(b, autocommit=True) as conn_b:
        write_site(b, conn_b, f"s3://{bucket}/metrics-b")
    assert b'"projection": "nyc311_b"' in s3.get_object(
        Bucket=bucket, Key=f"metrics-b/{MARKER}")["Body"].read()
    write_site(a, db, f"s3://{bucket}/metrics")  # its own prefix: fine again


@pytest.mark.parametrize("projection", ["nyc311", "nyc311_b"])
def test_a_rebuild_keeps_publishing_into_the_live_projections_schema(settings, topics, db,
                                                                     tmp_path, projection):
    from operations.rebuild import rebuild
    from tests.helpers import produce, project

    b = settings if projection == "nyc311" else second_projection(settings, projection)
    events = []
    for i in range(6):
        rid = f"rb{i}"
        events.append(("request_created", {
            "event_id": str(uuid.uuid4()), "occurred_at": t(4 + i), "request_id": rid,
            "agency": "DSNY", "agency_name": "Department of Sanitation",
            "complaint_type": "Missed Collection", "descriptor": None, "channel": "PHONE",
            "borough": "BROOKLYN", "incident_zip": "11201", "language": None, "contact": None}))
        if i % 2 == 0:
            events.append(("request_closed", {
                "event_id": str(uuid.uuid4()), "occurred_at": t(20), "request_id": rid,
                "status": "CLOSED", "resolution_description": None}))
    produce(b, events)
    project(b)
    with connect(b, autocommit=True) as conn:
        first, _ = publish_month(conn, MONTH, now=NOW, schema=b.published_schema)
    assert received(first) == 6

    schemas_before = {name for (name,) in db.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", ("%published",))}
    assert b.published_schema in schemas_before
    result = rebuild(b, progress=False, wait_seconds=60)
    assert result.live == projection and result.records == len(events)
    assert {name for (name,) in db.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", ("%published",))} \
        == schemas_before  # no publication schema of its own for the rebuilt schema
    with connect(b, autocommit=True) as conn:
        again, new = publish_month(conn, MONTH, now=NOW, schema=b.published_schema)
        assert not new and again.revision == 1 and again.published_at == first.published_at
        assert again.tables == first.tables
        write_site(b, conn, str(tmp_path / "site"))
    db.execute(f'DROP SCHEMA "{result.old}" CASCADE')
