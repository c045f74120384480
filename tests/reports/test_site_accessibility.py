"""The website against WCAG 2.1 AA: axe-core in headless Chromium on every page, and the charts'
text alternatives.

The pages are found by following the site's own links from the index, so a page type added
later is checked without a change here; the site and the page opener are test_site_browser's
(served over HTTP, every console error a failure). axe-core runs with the page's strict Content
Security Policy in force and JavaScript on, and again in the states the script makes (sorted,
filtered, a chart's table opened).
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin

import pytest

from reports import charts
from tests.browser import axe as axe_engine
from tests.browser.axe import Axe, summary
from tests.browser.keyboard import MAX_TABS, focused, on_body
from tests.reports import test_site_browser as site_browser
from tests.servers import http_get, needs_chromium

pytestmark = needs_chromium

# the fixtures used here: axe-core, and test_site_browser's site and page opener
axe = axe_engine.axe
base_url = site_browser.base_url
open_page = site_browser.open_page


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


@pytest.fixture(scope="module")
def site_pages(base_url: str) -> list[str]:
    """Every HTML page reachable from the index by the site's links, as paths from its root."""
    root = f"{base_url}/"
    found, queue = [], ["index.html"]
    while queue:
        path = queue.pop(0)
        if path in found:
            continue
        found.append(path)
        status, body = http_get(root + path)
        assert status == 200, f"{path}: HTTP {status}"
        parser = _Links()
        parser.feed(body)
        for href in parser.hrefs:
            url = urldefrag(urljoin(root + path, href)).url
            if url.startswith(root) and url.endswith(".html"):
                queue.append(url.removeprefix(root))
    return found


def test_the_crawl_finds_every_kind_of_page(site_pages):
    assert {"index.html", "methodology.html", "2024-12/index.html",
            "2025-01/index.html"} <= set(site_pages)


# A desktop, and a phone 320 CSS pixels wide (WCAG's reflow width), where the wide charts and
# tables scroll inside boxes of their own that the keyboard must reach.
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 320, "height": 640}}


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_page_passes_axe(axe: Axe, open_page, site_pages, viewport):
    failures = []
    for path in site_pages:
        page = open_page(path)
        page.set_viewport_size(VIEWPORTS[viewport])
        if found := axe.violations(page):
            failures.append(summary(found, f"{path} ({viewport})"))
        page.context.close()
    assert failures == [], "\n\n".join(failures)


def test_axe_runs_under_the_csp_and_reports_what_it_finds(axe: Axe, open_page):
    """The check can fail: an unlabelled field, grey-on-white text and a heading id that a
    region's aria-labelledby names given twice, added to a page, are reported, with rule,
    impact, selector and reason (the last one axe-core itself files as "needs review")."""
    page = open_page("index.html")
    page.evaluate("""() => {
      const field = document.createElement("input");
      field.id = "unlabelled";
      const faint = document.createElement("p");
      faint.id = "faint";
      faint.textContent = "Hard to read";
      faint.style.color = "#bbbbbb";
      const region = document.createElement("section");
      region.setAttribute("aria-labelledby", "twice");
      region.innerHTML = '<h2 id="twice">One</h2><h2 id="twice">Two</h2>';
      document.querySelector("main").append(field, faint, region);
    }""")
    found = axe.violations(page)
    assert {"label", "color-contrast", "duplicate-id-aria"} <= {v["id"] for v in found}
    text = summary(found, "index.html")
    assert "axe-core violation(s) of WCAG 2.1 AA on index.html" in text
    assert "- label (critical): Form elements must have labels" in text
    assert "#unlabelled" in text and "#faint" in text and "contrast" in text
    assert "the same id attribute: twice" in text


def test_month_page_passes_axe_in_the_states_the_script_makes(axe: Axe, open_page):
    page = open_page("2025-01/index.html")
    # every chart's table opened
    for summary_element in page.locator("details.chart-data > summary").all():
        summary_element.click()
    assert page.locator("details.chart-data[open]").count() == 2
    axe.check(page, "month page, chart tables open")

    # sorted, then filtered down with the status line showing
    page.locator("#table-closure_rates").get_by_role("button", name="Received").click()
    page.get_by_label("Agency", exact=True).select_option("HPD")
    page.get_by_label("Complaint type contains").fill("heat")
    assert page.get_by_role("status").inner_text() != ""
    axe.check(page, "month page, sorted and filtered")


@pytest.mark.parametrize("path", ["index.html", "2025-01/index.html"])
def test_the_skip_link_shows_when_focused_and_passes_axe(axe: Axe, open_page, path):
    page = open_page(path)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    box = page.locator("a.skip").bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0  # on the screen, not off it
    axe.check(page, f"{path}, skip link focused")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_month_page_passes_axe_without_its_script(axe: Axe, browser, base_url):
    """The page as a browser without JavaScript shows it: site.js served empty (axe-core itself
    cannot run where JavaScript is off)."""
    context = browser.new_context()
    try:
        context.route("**/assets/site.js", lambda route: route.fulfill(
            status=200, content_type="text/javascript", body=""))
        page = context.new_page()
        page.goto(f"{base_url}/2025-01/index.html")
        assert page.locator("#filters").is_hidden()
        assert page.locator("th button").count() == 0
        axe.check(page, "month page without its script")
    finally:
        context.close()


# Every chart on a page, as the browser sees it: the <svg> elements (not nested, not hidden as
# decoration) with the role, name and description it exposes and the table its aria-details
# (or aria-describedby) names.
CHARTS = """() => Array.from(document.querySelectorAll("svg"))
  .filter((svg) => !svg.parentElement.closest("svg") && svg.getAttribute("aria-hidden") !== "true")
  .map((svg) => {
    const ids = (name) => (svg.getAttribute(name) || "").split(/\\s+/).filter(Boolean);
    const text = (id) => {
      const element = document.getElementById(id);
      return element === null ? null : element.textContent.trim();
    };
    const tables = ids("aria-details").concat(ids("aria-describedby")).map((id) => {
      const element = document.getElementById(id);
      if (element === null || element.tagName !== "TABLE") { return null; }
      return { id: id, caption: element.caption ? element.caption.textContent.trim() : "",
               rows: element.tBodies.length ? element.tBodies[0].rows.length : 0 };
    }).filter(Boolean);
    return { id: svg.id, role: svg.getAttribute("role"),
             name: ids("aria-labelledby").map(text), description: ids("aria-describedby").map(text),
             title: svg.querySelector(":scope > title")?.textContent.trim(), tables: tables };
  })"""


def test_every_chart_has_a_text_alternative_linked_to_its_table(open_page, site_pages):
    seen = 0
    for path in site_pages:
        page = open_page(path)
        for chart in page.evaluate(CHARTS):
            where = f"{path} #{chart['id']}"
            seen += 1
            assert chart["role"] == "img", where
            # named by its own <title>, described by text that exists
            assert chart["name"] and all(chart["name"]), where
            assert chart["title"] and chart["title"] in " ".join(chart["name"]), where
            assert chart["description"] and all(chart["description"]), where
            assert page.get_by_role("img", name=chart["title"], exact=True).count() >= 1, where
            # and pointing at a table of its numbers, with a caption and rows
            assert chart["tables"], f"{where}: no aria-details/aria-describedby names a table"
            for table in chart["tables"]:
                assert table["caption"] and table["rows"] > 0, f"{where}: {table}"
        page.context.close()
    assert seen >= 4  # the two charts of each of the two month pages, at least


# Every element the keyboard can reach on a page, in the order of the document (no positive
# tabindex is used, so this is the Tab order).
TABBABLE = """() => Array.from(document.querySelectorAll(
    "a[href], button, input, select, textarea, summary, [tabindex]"))
  .filter((element) => element.tabIndex >= 0 && !element.disabled
          && element.checkVisibility())  // not hidden, nor in a closed <details>
  .length"""


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_tab_reaches_every_control_on_every_page_with_a_visible_focus(open_page,
                                                                      site_pages, viewport):
    for path in site_pages:
        page = open_page(path)
        page.set_viewport_size(VIEWPORTS[viewport])
        expected = page.evaluate(TABBABLE)
        stops = []
        for _ in range(MAX_TABS):
            page.keyboard.press("Tab")
            if on_body(page):
                break
            stops.append(focused(page))  # asserts the focus shows, and stands out
        assert len(stops) == expected, f"{path}: {len(stops)} Tab stops of {expected}"
        assert stops[0]["className"] == "skip", path
        # a chart's box is a stop, so it can be scrolled where it is wider than the screen
        charts = page.locator(".chart-wrap").count()
        assert sum(s["className"] == "chart-wrap" for s in stops) == charts, path
        page.context.close()


def luminance(colour: str) -> float:
    """WCAG's relative luminance of '#rrggbb'."""
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_shares_written_on_the_bars_have_4_5_to_1():
    """What axe-core cannot measure: text drawn over an SVG shape. A share inside a segment is
    white on the dark answer colours and #1b1b1b on the others (site.css, svg.chart text)."""
    for _, level, _, fill, dark in charts.LEVELS:
        assert contrast("#ffffff" if dark else "#1b1b1b", fill) >= 4.5, level
