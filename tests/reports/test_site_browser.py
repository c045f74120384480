"""The website in a real browser: headless Chromium against the written tree, served over HTTP.

What only a browser shows: every page loads under its own Content Security Policy with nothing
blocked (a blocked script, style or request is a console error), the script really sorts and
filters the tables, and with JavaScript off the full tables are still there.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from reports.site import site_files, write_tree
from tests.reports.publications import publication
from tests.servers import free_port, needs_chromium

ROWS = {"requests_received": 4, "closure_rates": 4, "reopen_rates": 3, "satisfaction": 3,
        "survey_response_rates": 3}

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The site written to a folder and served by `python -m http.server` on a free port."""
    root = tmp_path_factory.mktemp("site")
    write_tree(site_files([publication("2024-12", revision=1), publication("2025-01")]), root)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "http.server exited"
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def open_page(browser, base_url):
    """Open a page of the site; afterwards, assert the browser reported no problem at all."""
    contexts = []
    problems: list[str] = []

    def _open(path: str, javascript: bool = True):
        context = browser.new_context(java_script_enabled=javascript)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
                if r.status >= 400 else None)
        response = page.goto(f"{base_url}/{path}")
        assert response is not None and response.status == 200
        page.wait_for_load_state("networkidle")
        return page

    yield _open
    for context in contexts:
        context.close()
    assert problems == []


def column(page, table: str, n: int) -> list[str]:
    """The visible texts of the n-th column (1-based) of a table, top to bottom."""
    cells = page.locator(f"#table-{table} tbody tr:not([hidden]) td:nth-child({n})")
    return cells.all_inner_texts()


@pytest.mark.parametrize("path", ["index.html", "methodology.html", "2024-12/index.html",
                                  "trends/index.html", "trends/hpd.html"])
def test_other_pages_load_cleanly_under_their_csp(open_page, path):
    page = open_page(path)
    assert page.get_by_role("heading", level=1).count() == 1
    assert page.locator("link[rel=stylesheet]").count() == 1
    # The style sheet applied: the masthead has its colour, not the browser default.
    assert page.evaluate("getComputedStyle(document.querySelector('.masthead'))"
                         ".backgroundColor") == "rgb(11, 61, 145)"


def test_month_page_shows_four_tables_and_two_charts(open_page):
    page = open_page("2025-01/index.html")
    assert page.get_by_role("heading", level=1).inner_text() == "311 service metrics: January 2025"
    for table, rows in ROWS.items():
        locator = page.locator(f"#table-{table}")
        assert locator.is_visible()
        assert locator.locator("tbody tr").count() == rows
        assert all(row.is_visible() for row in locator.locator("tbody tr").all())
    assert page.get_by_role("table", name="Closure rates, January 2025").is_visible()

    charts = page.locator("svg[role=img]")
    assert charts.count() == 2
    for chart in charts.all():
        assert chart.is_visible()
        assert chart.bounding_box()["height"] > 50
    assert page.get_by_role("img", name="Closure rate by agency, January 2025").count() == 1
    assert page.locator("#satisfaction-chart g.bar rect[fill='#0571b0']").count() == 2  # DOT, HPD

    # The script ran: the filter form is shown and the headings became sort buttons.
    assert page.locator("#filters").is_visible()
    # agency, type, received, closed, rate, its 95% interval, reliability
    assert page.locator("#table-closure_rates thead button").count() == 7
    assert page.locator("#table-closure_rates td", has_text="<script>alert(1)</script>").count()


def test_clicking_a_heading_sorts_the_table(open_page):
    page = open_page("2025-01/index.html")
    table = page.locator("#table-closure_rates")
    received = table.get_by_role("button", name="Received")
    assert column(page, "closure_rates", 3) == ["1,200", "5,321", "3", "800"]

    received.click()
    assert column(page, "closure_rates", 3) == ["3", "800", "1,200", "5,321"]
    assert table.locator("th[data-column=received]").get_attribute("aria-sort") == "ascending"
    received.click()
    assert column(page, "closure_rates", 3) == ["5,321", "1,200", "800", "3"]
    assert table.locator("th[data-column=received]").get_attribute("aria-sort") == "descending"

    table.get_by_role("button", name="Agency").click()
    assert column(page, "closure_rates", 1) == ["DOT", "HPD", "HPD", "NYPD"]
    assert table.locator("th[data-column=received]").get_attribute("aria-sort") is None

    # An empty rate (here suppressed: 3 requests) sorts last whichever way.
    rate = table.get_by_role("button", name="Closure rate")
    rate.click()
    assert column(page, "closure_rates", 5) == ["0.7500", "0.9397", "0.9875", "suppressed"]
    rate.click()
    assert column(page, "closure_rates", 5) == ["0.9875", "0.9397", "0.7500", "suppressed"]


def test_filtering_by_agency_and_complaint_type_hides_other_rows(open_page):
    page = open_page("2025-01/index.html")
    page.get_by_label("Agency", exact=True).select_option("HPD")
    assert column(page, "requests_received", 1) == ["HPD", "HPD"]
    assert column(page, "closure_rates", 1) == ["HPD", "HPD"]
    assert column(page, "satisfaction", 1) == ["HPD"]
    assert len(column(page, "reopen_rates", 1)) == 3  # by complaint type only: not filtered
    hidden = page.locator("#table-requests_received tbody tr", has_text="DOT")
    assert hidden.count() == 1 and not hidden.is_visible()
    assert "2 of 4 rows" in page.locator("#requests_received-caption").inner_text()
    assert column(page, "survey_response_rates", 1) == ["HPD"]
    assert page.get_by_role("status").inner_text() == "Showing 9 of 17 rows."

    page.get_by_label("Complaint type contains").fill("heat")
    assert column(page, "requests_received", 3) == ["HEAT/HOT WATER"]
    assert column(page, "reopen_rates", 1) == ["HEAT/HOT WATER"]

    page.get_by_role("button", name="Show all rows").click()
    expect(page.locator("#filter-status")).to_have_text("")
    for table, rows in ROWS.items():
        assert len(column(page, table, 1)) == rows


def test_without_javascript_the_full_tables_are_there(open_page):
    page = open_page("2025-01/index.html", javascript=False)
    for table, rows in ROWS.items():
        assert page.locator(f"#table-{table} tbody tr").count() == rows
        assert all(row.is_visible() for row in page.locator(f"#table-{table} tbody tr").all())
    assert not page.locator("#filters").is_visible()  # it would do nothing without the script
    assert page.locator("svg[role=img]").count() == 2
