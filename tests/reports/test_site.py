"""The website as files: structure, accessibility basics, escaping, self-containment, links.

Pages are parsed with the standard library's HTML parser, so the checks are about elements and
attributes (one h1, headings in order, captions, labelled controls, no inline script or style),
not about strings that happen to appear somewhere in the markup.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest

from reports.files import data_files
from reports.model import TABLES
from reports.site import site_files, write_tree
from tests.reports.publications import ACCENTED, CHANGE, SCRIPT, publication

SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # an identifier in a standalone SVG, never fetched


@dataclass
class Page:
    """What the checks need from one HTML page."""

    elements: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    headings: list[tuple[int, str]] = field(default_factory=list)
    script_text: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.elements if name == tag]

    def ids(self) -> set[str]:
        return {attrs["id"] for _, attrs in self.elements if "id" in attrs}


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._stack: list[str] = []
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.elements.append((tag, {k: v or "" for k, v in attrs}))
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = []
        self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.page.headings.append((int(tag[1]), "".join(self._heading).strip()))
            self._heading = None
        if tag in self._stack:
            while self._stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1] == "script":
            self.page.script_text.append(data)
        if self._heading is not None:
            self._heading.append(data)
        self.page.text.append(data)


def parse(body: bytes) -> Page:
    parser = _Parser()
    parser.feed(body.decode("utf-8"))
    parser.close()
    return parser.page


@pytest.fixture(scope="module")
def site() -> dict[str, bytes]:
    return site_files([publication("2024-12", revision=1), publication("2025-01", revision=2)])


def first(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.S)
    assert match, pattern
    return match.group(0)


def pages(site: dict[str, bytes]) -> dict[str, Page]:
    return {path: parse(body) for path, body in site.items() if path.endswith(".html")}


def test_the_tree_has_the_pages_assets_and_every_months_data(site):
    assert {"index.html", "methodology.html", "2025-01/index.html", "2024-12/index.html",
            "assets/site.css", "assets/site.js", "data.json"} <= set(site)
    for month in ("2024-12", "2025-01"):
        pub = publication(month, revision=1 if month == "2024-12" else 2)
        assert {k: v for k, v in site.items() if k.startswith(f"data/{month}/")} == data_files(pub)


def test_every_page_has_lang_csp_one_h1_and_headings_in_order(site):
    for path, page in pages(site).items():
        assert page.all("html") == [{"lang": "en"}], path
        csp = [m["content"] for m in page.all("meta")
               if m.get("http-equiv", "").lower() == "content-security-policy"]
        assert len(csp) == 1 and "default-src 'self'" in csp[0], path
        assert [level for level, _ in page.headings].count(1) == 1, path
        assert page.headings[0][0] == 1, path
        for (before, _), (after, text) in zip(page.headings, page.headings[1:], strict=False):
            assert after <= before + 1, f"{path}: h{before} then h{after} {text!r}"
        assert all(text for _, text in page.headings), path


def test_every_table_has_a_caption_and_scoped_headers(site):
    for path, page in pages(site).items():
        tables = sum(1 for name, _ in page.elements if name == "table")
        assert tables and sum(1 for name, _ in page.elements if name == "caption") == tables, path
        assert all(th.get("scope") in ("col", "row") for th in page.all("th")), path


def test_no_inline_script_style_or_event_handler(site):
    for path, page in pages(site).items():
        assert "".join(page.script_text).strip() == "", path
        assert all(s.get("src") for s in page.all("script")), path
        assert page.all("style") == [], path
        for tag, attrs in page.elements:
            assert "style" not in attrs, f"{path}: <{tag} style>"
            assert not [a for a in attrs if a.startswith("on")], f"{path}: <{tag}> handler"
            assert not attrs.get("href", "").lower().startswith("javascript:"), path


def test_nothing_refers_to_another_host(site):
    for path, body in site.items():
        if path.startswith("data/") or path == "data.json":  # data files, not loaded by pages
            continue
        text = body.decode("utf-8")
        if path.endswith(".svg"):
            text = text.replace(SVG_NAMESPACE, "")
        assert not re.search(r"https?://|(?:src|href)=\"//|url\(", text, re.I), path


def test_every_link_and_fragment_resolves_within_the_tree(site):
    parsed = pages(site)
    for path, page in parsed.items():
        for _, attributes in page.elements:
            for name in ("href", "src"):
                target = attributes.get(name)
                if target is None:
                    continue
                url = urlsplit(target)
                assert not url.scheme and not url.netloc, f"{path}: {target}"
                resolved = (str(PurePosixPath(os.path.normpath(
                    PurePosixPath(path).parent / url.path))) if url.path else path)
                assert resolved in site, f"{path}: {target} -> {resolved}"
                if url.fragment:
                    assert url.fragment in parsed[resolved].ids(), f"{path}: {target}"
        for label in page.all("label"):
            assert label["for"] in page.ids(), path


# The attributes whose value names other elements of the page by id (a space-separated list
# for the ARIA ones and headers).
ID_REFERENCES = ("aria-labelledby", "aria-describedby", "aria-details", "aria-controls",
                 "aria-owns", "aria-activedescendant", "aria-errormessage", "for", "headers",
                 "list")


def test_no_page_gives_an_id_twice_and_every_id_reference_finds_its_element(site):
    """An id given to two elements (the month page once had two satisfaction-heading, a chart's
    and a table's, both named by aria-labelledby): axe-core's duplicate-id-aria in a browser,
    caught here without one, on every page of the site and of a site with no month yet (inline
    SVG included: its ids share the page's)."""
    checked = set()
    for built, files in (("site", site), ("site with no month", site_files([]))):
        for path, page in pages(files).items():
            where = f"{built}: {path}"
            ids = [attrs["id"] for _, attrs in page.elements if "id" in attrs]
            twice = sorted({i for i in ids if ids.count(i) > 1})
            assert twice == [], f"{where}: ids given to more than one element: {twice}"
            assert all(i and not re.search(r"\s", i) for i in ids), where
            for tag, attrs in page.elements:
                for name in ID_REFERENCES:
                    for target in attrs.get(name, "").split():
                        assert target in page.ids(), f"{where}: <{tag} {name}> names no {target!r}"
            checked.add(path)
    assert {"index.html", "methodology.html", "2024-12/index.html", "2025-01/index.html",
            "trends/index.html"} <= checked


def test_markup_in_data_is_escaped(site):
    month = site["2025-01/index.html"].decode()
    assert SCRIPT not in month
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in month
    assert len(parse(site["2025-01/index.html"]).all("script")) == 1  # site.js only
    assert ACCENTED in month


def test_month_page_has_the_four_tables_with_every_row(site):
    html = site["2025-01/index.html"].decode()
    pub = publication()
    for spec in (spec for spec in TABLES if spec.on_page):
        body = first(rf'<table class="data" id="table-{spec.name}".*?</table>', html)
        assert re.search(rf"<caption[^>]*>{re.escape(spec.title.replace(chr(39), '&#39;'))}",
                         body), spec.name
        assert body.count("<tr") == len(pub.tables[spec.name]) + 1  # + the header row
        assert all('scope="col"' in th for th in re.findall(r"<th[ >][^>]*>", body))
    closure = first(r'id="table-closure_rates".*?</table>', html)
    assert ">0.9397<" in closure and ">5,321<" in closure
    reopen = first(r'id="table-reopen_rates".*?</table>', html)
    assert re.search(r'class="num empty" data-sort="">n/a<', reopen)  # an empty rate
    # a rate from fewer than 10 cases is suppressed, and the row says so
    assert re.search(r'<tr class="suppressed"[^>]*>.*class="num empty" data-sort="">suppressed<'
                     r'.*<td class="flag" data-sort="suppressed">suppressed</td></tr>', reopen)


def test_filters_are_labelled_and_offer_every_agency_and_type(site):
    page = parse(site["2025-01/index.html"])
    form = page.all("form")
    assert form == [{"class": "filters", "id": "filters", "hidden": ""}]  # shown by site.js
    labels = {attrs["for"] for attrs in page.all("label")}
    assert labels == {"filter-agency", "filter-type"}
    options = [o["value"] for o in page.all("option")]
    assert {"", "DOT", "HPD", "NYPD"} <= set(options)
    assert {"HEAT/HOT WATER", ACCENTED, SCRIPT} <= set(options)


def test_charts_are_labelled_svg_with_their_numbers_as_a_table(site):
    html = site["2025-01/index.html"].decode()
    charts = re.findall(r"<svg .*?</svg>", html, re.S)
    assert len(charts) == 2
    for svg in charts:
        assert 'role="img"' in svg and 'aria-labelledby="' in svg and "<title" in svg
    closure, satisfaction = charts
    # DOT closed 900 of 1200: 75% of the 520-pixel plot; HPD 5,001 of 5,324 over two types.
    assert 'width="390.0"' in closure and "75.0%" in closure and "93.9%" in closure
    assert closure.index(">NYPD<") < closure.index(">HPD<") < closure.index(">DOT<")
    for level in ("Strongly agree", "Agree", "Neutral", "Disagree", "Strongly disagree"):
        assert f">{level}</text>" in satisfaction
    assert ">NYPD<" not in satisfaction  # no answer, no bar
    hpd = first(r"<g class=\"bar\">\s*<title>HPD.*?</g>", satisfaction)
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"'
                                           r' height="16" fill="#', hpd)]
    assert len(widths) == 5 and sum(widths) == pytest.approx(520, abs=0.05)
    captions = re.findall(r"<caption[^>]*>([^<]*)</caption>", html)
    assert "Closure rate by agency, January 2025" in captions
    assert "Satisfaction by agency, January 2025" in captions


def test_month_page_links_every_download_and_says_what_changed(site):
    page = parse(site["2025-01/index.html"])
    hrefs = {a["href"] for a in page.all("a") if "href" in a}
    for spec in TABLES:
        assert {f"../data/2025-01/{spec.name}.csv", f"../data/2025-01/{spec.name}.json"} <= hrefs
    assert {"../data/2025-01/datapackage.json", "../data/2025-01/revisions.json"} <= hrefs
    assert (2, "What changed in revision 2") in page.headings
    assert (2, "Revision history") in page.headings
    text = " ".join("".join(page.text).split())
    assert CHANGE in text and "Revision 1, published February 2, 2025: first publication" in text

    first = parse(site["2024-12/index.html"])
    assert not [h for h in first.headings if h[1].startswith("What changed")]


def test_index_lists_months_newest_first_with_revision_and_downloads(site):
    page = parse(site["index.html"])
    months = [a["href"] for a in page.all("a")
              if re.fullmatch(r"\d{4}-\d{2}/index\.html", a.get("href", ""))]
    assert months == ["2025-01/index.html", "2024-12/index.html"]
    text = " ".join("".join(page.text).split())
    assert "January 2025 2 February 20, 2025" in text
    assert "December 2024 1 January 2, 2025" in text
    assert "data/2025-01/datapackage.json" in {a.get("href") for a in page.all("a")}
    catalog = [a for a in page.all("a") if a.get("href") == "data.json"]
    assert len(catalog) == 1
    assert "catalog (DCAT-US)" in text


def test_methodology_states_every_definition(site):
    text = " ".join("".join(parse(site["methodology.html"]).text).split())
    for spec in TABLES:
        assert spec.description in text
        for column in spec.columns:
            assert column.name in text and " ".join(column.description.split()) in text
    for statement in ("America/New_York", "as_of", "event", "revision", "4 decimals",
                      "empty in the CSV files", "free-text feedback", "personal data"):
        assert statement in text, statement
    scores = re.findall(r'<tr><th scope="row">([^<]+)</th><td><code>(\w+)</code></td>'
                        r'<td class="num">(\d+)</td></tr>', site["methodology.html"].decode())
    assert scores == [("Strongly agree", "strongly_agree", "100"), ("Agree", "agree", "75"),
                      ("Neutral", "neutral", "50"), ("Disagree", "disagree", "25"),
                      ("Strongly disagree", "strongly_disagree", "0")]


def test_same_publications_same_bytes_in_any_order(site):
    again = site_files([publication("2025-01", revision=2), publication("2024-12", revision=1)])
    assert again == site


def test_the_newest_revision_of_a_month_is_the_one_published():
    one = publication("2025-01", revision=1)
    two = publication("2025-01", revision=2)
    assert site_files([two, one]) == site_files([two])
    assert b"Revision 2, published" in site_files([one, two])["2025-01/index.html"]


def test_no_month_yet_is_still_a_valid_site():
    site = site_files([])
    assert b"Nothing has been published yet." in site["index.html"]
    assert parse(site["index.html"]).headings[0] == (1, "NYC 311 service metrics")


def test_write_tree_writes_every_file_readable_and_replaces_atomically(tmp_path, monkeypatch):
    files = {"index.html": b"new index", "data/2025-01/a.csv": b"a,b\n1,2\n", "same.txt": b"x"}
    (tmp_path / "index.html").write_bytes(b"old index")
    (tmp_path / "same.txt").write_bytes(b"x")
    same_mtime = (tmp_path / "same.txt").stat().st_mtime_ns

    seen: list[tuple[str, bytes, bytes | None]] = []
    real_replace = os.replace

    def watching_replace(src, dst):
        # At the moment of the swap the new content is complete in the temporary file and
        # the target still holds the whole old file (or does not exist yet).
        target = Path(dst)
        seen.append((target.name, Path(src).read_bytes(),
                     target.read_bytes() if target.exists() else None))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    write_tree(files, tmp_path)

    assert seen == [("a.csv", b"a,b\n1,2\n", None), ("index.html", b"new index", b"old index")]
    for path, body in files.items():
        assert (tmp_path / path).read_bytes() == body
    assert (tmp_path / "same.txt").stat().st_mtime_ns == same_mtime  # unchanged: not rewritten
    mode = stat.S_IMODE((tmp_path / "index.html").stat().st_mode)
    assert mode == 0o644
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("path", ["../escape.html", "/etc/passwd", "a/../../b"])
def test_write_tree_refuses_paths_outside_the_folder(tmp_path, path):
    with pytest.raises(ValueError):
        write_tree({path: b"x"}, tmp_path / "out")
    assert not (tmp_path / "escape.html").exists()


def test_write_tree_writes_the_whole_site(tmp_path, site):
    write_tree(site, tmp_path)
    written = {str(p.relative_to(tmp_path)): p.read_bytes()
               for p in tmp_path.rglob("*") if p.is_file()}
    assert written == site
    third = replace(publication("2025-01", revision=2), revision=3, changes=["More."])
    write_tree(site_files([third]), tmp_path)
    assert b"What changed in revision 3" in (tmp_path / "2025-01/index.html").read_bytes()
