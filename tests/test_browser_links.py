"""Links a class shares, in a real browser: an address copied from any tab opens that tab with that setup, the
README's ``?tab=`` and ``?step=`` links open where they say, and a phone reaches every tab and sees wide charts.

Needs Debian's `chromium` and the `playwright` package, like test_browser.py.
"""
from __future__ import annotations

import pytest

from served import CHROMIUM, CHROMIUM_ARGS, ERRORS, IDLE, SHOTS, TIMEOUT_MS, need_browser

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # need_browser() skips the tests then
    sync_playwright = None

pytestmark = pytest.mark.browser

TABS = ["Model", "Generate", "Speed & accuracy", "Fidelity", "Inside a multiply", "Fewer bits", "Walkthrough",
        "Static or dynamic", "When int8 pays", "Which parts"]
PHONE = {"width": 390, "height": 844}
SELECTED = "[role='tab'][aria-selected='true']"


def _open(browser, url: str, viewport=None):
    page = browser.new_page(viewport=viewport or {"width": 1280, "height": 720})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.get_by_role("tab").first.wait_for()
    page.wait_for_function(IDLE)
    return page


def _selected(page) -> str:
    return page.locator(SELECTED).inner_text().strip()


def test_an_address_copied_from_any_tab_opens_that_tab_with_that_setup(served_app):
    need_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _open(browser, f"{served_app}/?preset=int8%2Bemb8")
            for name in TABS:
                page.get_by_role("tab", name=name, exact=True).click()
                page.wait_for_function(f"() => document.querySelector(\"{SELECTED}\")?.innerText.trim() === "
                                       f"{name!r}")
                slug = "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())
                # The click reruns the page, and the rerun writes the address: wait for it, then for the run's end.
                page.wait_for_function(f"() => new URLSearchParams(window.location.search).get('tab') === {slug!r}")
                page.wait_for_function(IDLE)
                copied = page.url
                assert "preset=int8%2Bemb8" in copied or "preset=int8+emb8" in copied, copied
                assert ("step=" in copied) == (name == "Walkthrough"), copied  # only the Walkthrough reads one
                other = _open(browser, copied)
                assert _selected(other) == name, (name, copied)
                assert other.locator(ERRORS).count() == 0, other.locator(ERRORS).first.inner_text()
                other.close()
        finally:
            browser.close()


@pytest.mark.parametrize("query, opens, shows", [("?tab=fidelity", "Fidelity", "Output agreement"),
                                                 ("?tab=speed-accuracy", "Speed & accuracy", "Threads"),
                                                 ("?step=4", "Walkthrough", "Step 4 of 8"),
                                                 ("?tab=fewer-bits&step=2", "Fewer bits", "Loss against bits")])
def test_the_readmes_links_open_where_they_say(served_app, query, opens, shows):
    need_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _open(browser, served_app + "/" + query)
            assert _selected(page) == opens
            page.get_by_text(shows).first.wait_for(state="visible")
        finally:
            browser.close()


def test_a_phone_reaches_every_tab_and_its_first_chart_is_wide(served_app):
    need_browser()
    shots = SHOTS / "phone"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _open(browser, served_app, PHONE)
            # The page's style arrives in an st.html element, drawn by a part of Streamlit's front end that loads
            # on first use: on a busy machine the run can end before that style applies.
            page.wait_for_function("() => getComputedStyle(document.querySelector(\"[data-testid='stTabs'] "
                                   "[role='tablist']\")).flexWrap === 'wrap'")
            for name in TABS:
                tab = page.get_by_role("tab", name=name, exact=True)
                box = tab.bounding_box()
                # On screen, whole, without scrolling the tab bar: no tab hides behind an arrow.
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (name, box)
            for name in ("Model", "Fidelity", "Inside a multiply", "Fewer bits"):  # tabs that draw a chart at once
                page.get_by_role("tab", name=name, exact=True).click()
                page.wait_for_function(IDLE)
                chart = page.locator("[data-testid='stVegaLiteChart']").first
                chart.wait_for(state="visible")
                page.wait_for_function("() => document.querySelector(\"[data-testid='stVegaLiteChart'] canvas, "
                                       "[data-testid='stVegaLiteChart'] svg\")")
                width = chart.bounding_box()["width"]
                page.screenshot(path=str(shots / f"{name.lower().replace(' ', '-')}.png"))
                assert width > 300, (name, width)
        finally:
            browser.close()
