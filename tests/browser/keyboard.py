"""The keyboard in the browser tests: what has the focus, and whether a person can see it."""

from __future__ import annotations

from typing import Any

MAX_TABS = 200  # more Tab presses than any page here has stops

# What has the focus, and the focus indicator drawn around it: an outline at least 2px wide or a
# ring (box-shadow) on an element that matches :focus-visible, and the best contrast one of its
# colours has with the background behind the element (WCAG 1.4.11 asks 3:1).
FOCUSED = """() => {
  const element = document.activeElement;
  const style = getComputedStyle(element);
  const rgb = (text) => (text.match(/rgba?\\([^)]*\\)/g) || []).map(
    (colour) => colour.match(/[\\d.]+/g).map(Number));
  const luminance = ([r, g, b]) => {
    const linear = (c) => (c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
  };
  const contrast = (a, b) => {
    const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  let behind = [255, 255, 255];
  for (let node = element.parentElement; node; node = node.parentElement) {
    const colour = rgb(getComputedStyle(node).backgroundColor)[0];
    if (colour && (colour.length < 4 || colour[3] > 0)) { behind = colour; break; }
  }
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
  const colours = (outline ? rgb(style.outlineColor) : []).concat(
    style.boxShadow === "none" ? [] : rgb(style.boxShadow));
  return {
    tag: element.tagName.toLowerCase(), id: element.id, name: element.name || "",
    className: typeof element.className === "string" ? element.className : "",
    text: (element.textContent || "").trim().slice(0, 40),
    value: element.value || "", checked: Boolean(element.checked),
    visible: element.matches(":focus-visible") && colours.length > 0,
    contrast: Math.max(0, ...colours.map((colour) => contrast(colour, behind))),
  };
}"""


def on_body(page: Any) -> bool:
    """Nothing on the page has the focus (past the last Tab stop)."""
    return bool(page.evaluate("() => document.activeElement === document.body"))


def focused(page: Any) -> dict[str, Any]:
    """The element that has the focus; asserts it shows a focus indicator that stands out."""
    found: dict[str, Any] = page.evaluate(FOCUSED)
    assert found["visible"], f"no visible focus indicator on {found}"
    assert found["contrast"] >= 3, f"the focus indicator does not stand out: {found}"
    return found
