"""axe-core in the browser tests: load the engine into a page and check it against WCAG 2.1 AA.

axe-core comes from npm (``tests/browser/package.json``, installed by ``make axe``, which
``make test`` runs). It is evaluated in the page through the DevTools protocol
(``page.evaluate``), which the page's Content Security Policy does not govern, so the pages are
checked with their real, strict policy in force (a ``<script>`` tag added to the page would be
blocked by it).

axe-core reports a failure of a few rules as "needs review" (``reviewOnFail``) rather than as a
violation, although the check did fail: an id that ARIA refers to given to two elements
(``duplicate-id-aria``) is one. The helper turns that off for those rules
(:data:`FAILURES_NOT_REVIEWS`), so such a failure is a violation here; what axe-core truly
could not decide (the contrast of text over an SVG shape) stays out of the result.

Without axe-core the accessibility tests skip on a developer's machine, and fail under CI
(``CI=true``), where ``make test`` installs it: a check that silently did not run is no check.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

AXE_JS = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
#: WCAG 2.0 and 2.1, levels A and AA: what the site and the survey page must pass.
WCAG_21_AA = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
#: The rules of those levels whose failed checks axe-core files under "needs review"
#: (``reviewOnFail`` in axe-core 4.14): reported as violations here.
FAILURES_NOT_REVIEWS = ("bypass", "duplicate-id-aria", "frame-title-unique", "no-autoplay-audio")

# Each rule must exist (axe.configure would add an unknown id as a new, empty rule).
_CONFIGURE = """(ids) => {
  const known = new Set(axe.getRules().map((rule) => rule.ruleId));
  const missing = ids.filter((id) => !known.has(id));
  if (missing.length) { throw new Error("axe-core has no rule " + missing.join(", ")); }
  axe.configure({ rules: ids.map((id) => ({ id: id, reviewOnFail: false })) });
}"""

_RUN = """async (tags) => {
  const results = await axe.run(document, {
    runOnly: { type: "tag", values: tags },
    resultTypes: ["violations"],
  });
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({ target: n.target, html: n.html, summary: n.failureSummary })),
  }));
}"""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


class Axe:
    """axe-core's source, ready to run in pages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def violations(self, page: Any, tags: tuple[str, ...] = WCAG_21_AA) -> list[dict[str, Any]]:
        """Run axe-core on the page as it is now; its violations of ``tags``."""
        if not page.evaluate("() => typeof window.axe === 'object'"):
            # an expression, not a function: run as a script in the page's own world
            page.evaluate(self.source + "\n;undefined")
            page.evaluate(_CONFIGURE, list(FAILURES_NOT_REVIEWS))
        found: list[dict[str, Any]] = page.evaluate(_RUN, list(tags))
        return found

    def check(self, page: Any, where: str = "") -> None:
        """Assert axe-core finds no WCAG 2.1 AA violation on the page; say which if it does."""
        found = self.violations(page)
        assert found == [], summary(found, where or page.url)


@cache
def _load() -> Axe:
    return Axe(AXE_JS.read_text(encoding="utf-8"))


@pytest.fixture
def axe() -> Axe:
    """axe-core; skips the test (fails it under CI) when ``make axe`` has not installed it.

    Ask for it first, before any fixture that starts something, so a skip costs nothing.
    """
    if not AXE_JS.is_file():
        message = (f"axe-core is not installed: {AXE_JS} is missing "
                   "(`make axe` runs npm ci in tests/browser)")
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return _load()


def summary(violations: list[dict[str, Any]], where: str = "") -> str:
    """One block per rule: id, impact, what it asks, then each element's selector and why."""
    lines = [f"{len(violations)} axe-core violation(s) of WCAG 2.1 AA"
             + (f" on {where}:" if where else ":")]
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"]:
            # a target is a list of selectors, one per shadow root or frame on the way
            target = " >> ".join(part if isinstance(part, str) else " ".join(part)
                                 for part in node["target"])
            lines.append(f"    {target}")
            for reason in (node.get("summary") or "").splitlines():
                if reason.strip():
                    lines.append(f"      {reason.strip()}")
    return "\n".join(lines)
