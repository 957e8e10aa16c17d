"""Every tab on a projector-sized window (1280x720) in a real browser: the buttons that draw charts are pressed, each
tab and each Walkthrough card is saved to artifacts/browser/, and no chart is squashed below 150 px.

Needs Debian's `chromium` and the `playwright` package, like test_browser.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from served import CHROMIUM, CHROMIUM_ARGS, ERRORS, IDLE, SHOTS, TIMEOUT_MS, need_browser

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # need_browser() skips the tests then
    sync_playwright = None

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1280, "height": 720}
MIN_CHART_PX = 150
# The buttons each tab needs pressed before its charts are drawn.
BUTTONS = {"Model": [], "Generate": ["Generate"], "Speed & accuracy": ["Run evaluation", "Sweep threads"],
           "Fidelity": ["Compare outputs", "Measure weight error", "Measure all presets"], "Inside a multiply": [],
           "Fewer bits": ["Run the sweep", "Write with both"], "Walkthrough": [],
           "Static or dynamic": ["Measure static against dynamic"], "When int8 pays": [],
           "Which parts": ["Draw the map", "Pick and measure", "Write with both"]}
VISIBLE_CHARTS = ("() => [...document.querySelectorAll(\"[data-testid='stVegaLiteChart']\")]"
                  ".filter(e => e.offsetParent !== null)")


def _settle(page) -> None:
    """Wait until the app has stopped running and every visible chart is drawn."""
    page.wait_for_timeout(500)  # a click's rerun starts
    page.wait_for_function("() => document.querySelector(\"[data-testid='stApp']\").dataset.testScriptState"
                           " === 'notRunning' && !document.querySelector(\"[data-testid='stSkeleton']\")")
    page.wait_for_function(f"() => ({VISIBLE_CHARTS})().every(e => e.querySelector('canvas, svg'))")
    page.wait_for_timeout(300)  # charts finish their layout


def _shoot(page, path: Path, pages: int = 4) -> None:
    """Screenshots of what a 1280x720 window shows, scrolled down a screen at a time (the app scrolls inside
    its main area, so a full-page capture would show only the first screen): path-1.png, path-2.png, …"""
    main = page.locator("[data-testid='stMain']")
    height = main.evaluate("e => e.scrollHeight")
    for i in range(min(pages, 1 + int(height // 620))):
        main.evaluate(f"e => e.scrollTo(0, {620 * i})")
        page.wait_for_timeout(150)
        page.screenshot(path=str(path.with_name(f"{path.name}-{i + 1}.png")))
    main.evaluate("e => e.scrollTo(0, 0)")


def _chart_heights(page) -> list[float]:
    return page.evaluate(f"() => ({VISIBLE_CHARTS})().map(e => e.getBoundingClientRect().height)")


def tour(url: str, shots: Path, tabs: dict[str, list[str]] = BUTTONS,
         viewport: dict = VIEWPORT) -> dict[str, list[float]]:
    """Open every tab of the app at ``url`` in a ``viewport`` window, press its buttons and save screenshots
    (``shots``/tab-<name>-<screen>.png, and walkthrough-<step>-<screen>.png per card).

    Returns the heights of the charts each tab shows."""
    shots.mkdir(parents=True, exist_ok=True)
    heights: dict[str, list[float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport)
            page.set_default_timeout(TIMEOUT_MS * 2)
            page.goto(url)
            page.get_by_role("tab").first.wait_for()
            for name, buttons in tabs.items():
                page.get_by_role("tab", name=name, exact=True).click()
                _settle(page)
                for label in buttons:  # hidden tabs' buttons are not in the accessibility tree
                    page.get_by_role("button", name=label, exact=True).click()
                    _settle(page)
                assert page.locator(ERRORS).count() == 0, (name, page.locator(ERRORS).first.inner_text())
                heights[name] = _chart_heights(page)
                slug = name.lower().replace(" & ", "-").replace(" ", "-")
                _shoot(page, shots / f"tab-{slug}", pages=8)
                if name == "Walkthrough":
                    for step in range(1, 9):
                        page.get_by_text(f"Step {step} of 8").wait_for()
                        _settle(page)
                        assert page.locator(ERRORS).count() == 0, (step, page.locator(ERRORS).first.inner_text())
                        _shoot(page, shots / f"walkthrough-{step}")
                        if step < 8:
                            page.get_by_role("button", name="Next →").click()
        finally:
            browser.close()
    return heights


def test_every_tab_reads_on_a_projector(served_app):
    need_browser()
    heights = tour(served_app, SHOTS)
    assert set(heights) == set(BUTTONS)
    # Size per part; next word; size, throughput, threads; KL, SQNR, histogram, trade-off.
    assert len(heights["Model"]) >= 1 and len(heights["Speed & accuracy"]) >= 3 and len(heights["Fidelity"]) >= 4
    assert len(heights["Inside a multiply"]) >= 1 and len(heights["Fewer bits"]) >= 1
    squashed = {tab: [round(h) for h in hs if h < MIN_CHART_PX] for tab, hs in heights.items()}
    assert not any(squashed.values()), squashed


def test_a_shared_step_link_opens_on_the_walkthrough_and_clicks_still_decide(served_app):
    need_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{served_app}/?step=4")
            step = page.get_by_text("Step 4 of 8")
            step.wait_for(state="visible")  # shown at once: the Walkthrough is the open tab
            assert page.get_by_role("tab", name="Walkthrough").get_attribute("aria-selected") == "true"
            page.get_by_role("tab", name="Model", exact=True).click()
            page.get_by_role("button", name="Next →").wait_for(state="hidden")
            page.wait_for_function("() => window.location.search.includes('tab=model')")  # the tab's rerun is over
            page.wait_for_function(IDLE)
            # A rerun (a sidebar change) keeps the tab the visitor chose.
            page.locator("[data-testid='stSidebar']").get_by_text("Embedding", exact=True).click()
            page.wait_for_function("() => window.location.search.includes('emb=true')")  # set by the rerun
            # The rerun has drawn the Model tab for the new setup and finished: whatever it did to the tabs is done.
            page.get_by_text("quantizing the embedding took it from").wait_for()
            page.wait_for_function(IDLE)
            assert page.get_by_role("tab", name="Model", exact=True).get_attribute("aria-selected") == "true"
            assert "tab=model" in page.url and "step=" not in page.url  # the Model tab reads no step
            page.get_by_role("tab", name="Walkthrough", exact=True).click()
            step.wait_for(state="visible")  # the session's card, back in the address bar
            page.wait_for_function("() => window.location.search.includes('step=4')")
        finally:
            browser.close()



# The browser code of the sidebar's toggles, select box and number box, which Streamlit's page loads when it first
# draws one: held back, the page shows its tabs and buttons but not yet those widgets.
SIDEBAR_WIDGET_CODE = re.compile(r"/static/js/(Checkbox|Selectbox|NumberInput)\.[^/]*\.js$")


def _sidebar_values(page) -> tuple:
    sidebar = page.locator("[data-testid='stSidebar']")
    return (sidebar.get_by_role("combobox", name="Preset").input_value(),
            [sidebar.get_by_role("switch", name=name, exact=True).is_checked()
             for name in ("LSTM", "Linear (decoder)", "Embedding")],
            sidebar.get_by_role("spinbutton", name="Seed").input_value())


def test_a_tab_clicked_and_at_once_its_button_keeps_the_links_setup(served_app):
    """A class clicks as soon as a page shows: a tab, then at once its button, while the browser has not yet drawn
    the sidebar the link set up (on a slow laptop; here its widgets' code is held back until after the clicks).
    Every time the button's result comes, and the sidebar keeps the link's values: it used to be drawn at its
    widgets' defaults (fp32, seed 0) and send those back as the visitor's choice with the next click."""
    need_browser()
    link = f"{served_app}/?preset=int8%2Bemb8&seed=7"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for attempt in range(4):
                page = browser.new_page(viewport=VIEWPORT)  # a fresh page, which has no widget code yet
                page.set_default_timeout(TIMEOUT_MS)
                held = []
                page.route(SIDEBAR_WIDGET_CODE, lambda route: route.continue_() if held is None else held.append(route))
                page.goto(link)
                page.get_by_role("tab").first.wait_for()
                page.wait_for_function(IDLE)
                page.get_by_role("tab", name="Generate", exact=True).click()
                page.get_by_role("button", name="Generate", exact=True).click()  # no wait for the tab's rerun
                held, waiting = None, held
                for route in waiting:
                    route.continue_()
                panel = page.get_by_role("tabpanel").filter(has_text="the two models would pick the same word")
                panel.wait_for()  # the Generate tab's result: the click was not lost
                page.wait_for_function(IDLE)
                assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).first.inner_text()
                assert "Seed 7 (sidebar)" in panel.inner_text(), attempt  # written with the link's seed
                setup = ("int8+emb8", [True, True, True], "7")
                assert _sidebar_values(page) == setup, (attempt, _sidebar_values(page))
                assert "seed=7" in page.url and "emb=true" in page.url, (attempt, page.url)
                # The next click sends what the sidebar shows: still the link's setup.
                page.get_by_role("tab", name="Model", exact=True).click()
                page.wait_for_function("() => window.location.search.includes('tab=model')")
                page.wait_for_function(IDLE)
                assert "preset=int8%2Bemb8" in page.url or "preset=int8+emb8" in page.url, (attempt, page.url)
                assert _sidebar_values(page) == setup, (attempt, _sidebar_values(page))
                page.close()
        finally:
            browser.close()
