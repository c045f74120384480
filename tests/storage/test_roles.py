"""Least privilege: each service's role is refused what it must not do, and every service
still does its whole job connected as its own role (real PostgreSQL, Kafka, SMTP)."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

import psycopg
import pytest

from nyc311.settings import Settings
from storage import roles

pytestmark = pytest.mark.integration


def as_role(settings: Settings, role: str) -> Settings:
    """``settings`` whose connections act as ``role`` (the test's login is made a member)."""
    with psycopg.connect(settings.libpq_url, autocommit=True) as admin:
        admin.execute(f"GRANT {role} TO CURRENT_USER")
    sep = "&" if "?" in settings.database_url else "?"
    return replace(settings, database_url=f"{settings.database_url}{sep}options="
                                          + quote(f"-c role={role}"))


def allowed(settings: Settings, statement: str) -> bool:
    from storage.db import connect

    with connect(settings) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return False
        finally:
            conn.rollback()
    return True


V = "nyc311_vault"
READ_CONTACTS = ("SELECT sealed FROM contacts", f"SELECT key FROM {V}.contact_keys")
# role -> statements it must be refused
REFUSED = {
    roles.PROJECTOR: [f"SELECT key FROM {V}.contact_keys", "DELETE FROM contacts",
                      f"DELETE FROM {V}.contact_keys", "SELECT * FROM survey_dispatch",
                      "DELETE FROM requests", "INSERT INTO published.revisions VALUES "
                      "('2026-01', 1, now(), now(), 'x', '[]')", "CREATE TABLE t (x int)"],
    roles.DISPATCHER: ["DELETE FROM contacts", f"DELETE FROM {V}.contact_keys",
                       "UPDATE contacts SET sealed = ''", "INSERT INTO requests (request_id) "
                       "VALUES ('x')", "SELECT * FROM survey_submissions",
                       "SELECT * FROM published.revisions"],
    roles.SURVEY_WEB: [*READ_CONTACTS, "SELECT * FROM requests", "SELECT * FROM survey_answers",
                       "SELECT * FROM survey_dispatch", "DELETE FROM survey_submissions",
                       "SELECT * FROM consumer_offsets"],
    roles.FORWARDER: [*READ_CONTACTS, "SELECT * FROM survey_dispatch",
                      "UPDATE requests SET agency = 'x'"],
    roles.AGGREGATOR: [*READ_CONTACTS, "INSERT INTO requests (request_id) VALUES ('x')",
                       "SELECT * FROM survey_dispatch", "DELETE FROM closures"],
    roles.PURGE: ["INSERT INTO requests (request_id) VALUES ('x')", "UPDATE contacts SET "
                  "sealed = ''", f"DELETE FROM {V}.contact_erasures",
                  "SELECT * FROM survey_answers"],
    # no grant on the projection schema at all, so its tables are named with their schema
    roles.PRODUCER: ["SELECT sealed FROM nyc311.contacts", f"SELECT key FROM {V}.contact_keys",
                     "SELECT * FROM nyc311.requests", f"DELETE FROM {V}.contact_keys",
                     f"INSERT INTO {V}.contact_erasures (request_id, reason) VALUES ('x', 'x')",
                     "INSERT INTO nyc311.requests (request_id) VALUES ('x')"],
    roles.ANALYST: ["SELECT sealed FROM nyc311.contacts", f"SELECT key FROM {V}.contact_keys",
                    "SELECT * FROM nyc311.requests", "DELETE FROM published.revisions"],
}
# role -> statements its service runs (a sample: the whole loop below runs the rest)
GRANTED = {
    roles.PROJECTOR: ["SELECT request_id, event_id, created_at FROM contacts",
                      f"SELECT 1 FROM {V}.contact_erasures"],
    roles.DISPATCHER: [*READ_CONTACTS],
    roles.SURVEY_WEB: ["SELECT * FROM survey_links", "SELECT * FROM survey_submissions"],
    roles.PURGE: [*READ_CONTACTS, "DELETE FROM contacts", f"DELETE FROM {V}.contact_keys"],
    roles.PRODUCER: [f"SELECT request_id FROM {V}.contact_erasures"],
    roles.ANALYST: ["SELECT * FROM published.satisfaction"],
}


@pytest.mark.parametrize("role", sorted(REFUSED))
def test_each_role_is_refused_what_it_must_not_do(settings, role):
    mine = as_role(settings, role)
    refused = [s for s in REFUSED[role] if allowed(mine, s)]
    assert refused == [], f"{role} may run what it must not"
    granted = [s for s in GRANTED.get(role, []) if not allowed(mine, s)]
    assert granted == [], f"{role} is refused what it needs"


def test_every_service_does_its_job_as_its_own_role(settings, topics, db, plain_smtp):
    """The survey loop and the publication, each step connected as its service's role (the
    producer's too: it seals a contact at the edge)."""
    import httpx

    from producers.sealer import ContactSealer
    from producers.survey_web import create_app
    from reports.publish import publish_month
    from storage.db import connect
    from storage.vault import purge
    from tests.consumers.test_dispatcher import SECRET, closed, created, dispatch
    from tests.e2e.test_survey_loop import LINK, forward
    from tests.helpers import produce, project
    from tests.servers import received, serve_app

    smtp = plain_smtp()
    base = replace(settings, survey_secret=SECRET, smtp_host="127.0.0.1", smtp_port=smtp.port,
                   smtp_starttls=False, sms_provider="none")
    # one contact sent in the clear (the projector seals it), one sealed at the edge
    with ContactSealer(as_role(base, roles.PRODUCER)) as sealer:
        edge = list(sealer.sealed([created("7002", email="ana@example.com"), closed("7002")]))
    assert edge[0][1]["sealed_contact"] and edge[0][1]["contact"] is None
    produce(base, [created("7001", email="rosa@example.com"), closed("7001"), *edge])
    project(as_role(base, roles.PROJECTOR))
    web = as_role(base, roles.SURVEY_WEB)
    with serve_app(create_app(web)) as base_url:
        mailer = replace(as_role(base, roles.DISPATCHER), survey_base_url=base_url)
        assert dispatch(mailer).stats.sent == 2
        link = LINK.search(received(smtp.maildir)[0].get_body(("plain",)).get_content()).group(0)
        with httpx.Client(timeout=10) as client:
            answer = client.post(link, data={"satisfaction": "DISAGREE", "reopen": "yes"})
        assert answer.status_code == 200, answer.text
        for _ in range(100):  # the answer reaches Kafka from the page's outbox
            if db.execute("SELECT count(*) FROM survey_answer_outbox WHERE sent_at IS NULL"
                          ).fetchone()[0] == 0:
                break
            import time

            time.sleep(0.2)
    project(as_role(base, roles.PROJECTOR))
    assert db.execute("SELECT count(*) FROM survey_answers").fetchone()[0] == 1
    assert forward(as_role(base, roles.FORWARDER)).stats.forwarded == 1

    month = db.execute("SELECT to_char(created_at AT TIME ZONE 'America/New_York', 'YYYY-MM') "
                       "FROM requests").fetchone()[0]
    with connect(as_role(base, roles.AGGREGATOR), autocommit=True) as conn:
        _publication, new = publish_month(conn, month)
    assert new
    purger = replace(as_role(base, roles.PURGE), contact_retention_days=0)
    with connect(purger, autocommit=True) as conn:
        report = purge(conn, purger)
    assert report.requests == 2 and report.held == 0


def test_a_service_login_made_by_db_login_has_its_roles_grants_only(settings):
    import uuid

    from tests.helpers import run_cli

    user = f"survey_web_{uuid.uuid4().hex[:8]}"
    password = "a-long-enough-password"
    result = run_cli(settings, "db", "login", roles.SURVEY_WEB, user,
                     env={"NYC311_LOGIN_PASSWORD": password})
    try:
        assert result.returncode == 0, result.stderr
        assert password not in result.stdout + result.stderr
        url = settings.database_url.replace("nyc311:nyc311@", f"{user}:{password}@")
        login = replace(settings, database_url=url)
        assert allowed(login, "SELECT * FROM survey_links")
        assert not allowed(login, "SELECT * FROM contacts")
    finally:
        with psycopg.connect(settings.libpq_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{user}"')
