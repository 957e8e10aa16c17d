"""The app in a real browser: `streamlit run` on localhost, driven by Playwright with the system Chromium.

Needs Debian's `chromium` package and the `playwright` Python package (.ci/run installs both).
"""
import os
import time
from pathlib import Path

import pytest

from wlm.generate import generate
from wlm.quantize import PRESETS, quantize

from conftest import REPO
from served import CHROMIUM, CHROMIUM_ARGS, ERRORS, IDLE, SHOTS, TIMEOUT_MS, need_browser, start_app, stop_app

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # need_browser() skips the tests then
    expect = sync_playwright = None

pytestmark = pytest.mark.browser


def test_toggle_quantization_and_generate_in_a_real_browser(served_app):
    need_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(served_app)
            # The size chart draws, with its takeaway for the tutorial's setup (embedding left in float).
            page.locator("[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg").first.wait_for()
            page.get_by_text("so it caps the saving").wait_for()
            # Quantize the embedding too: the size table and takeaway follow, and the link records it.
            page.locator("[data-testid='stSidebar']").get_by_text("Embedding", exact=True).click()
            page.get_by_text("quantizing the embedding took it from").wait_for()
            page.wait_for_function("() => window.location.search.includes('emb=true')")
            assert "preset=int8%2Bemb8" in page.url or "preset=int8+emb8" in page.url
            page.screenshot(path=str(SHOTS / "model.png"), full_page=True)
            # Generate text from both models.
            page.get_by_role("tab", name="Generate").click()
            page.get_by_role("button", name="Generate", exact=True).click()
            page.get_by_text("the two models would pick the same word").first.wait_for()
            panel = page.get_by_role("tabpanel").filter(has_text="quantized (int8+emb8)")
            vocabulary = {"the", "cat", "dog", "sat", "on", "mat", "log", "a", "ran"}

            def texts_words() -> list[str]:
                return [w for w in panel.inner_text().split() if w in vocabulary]

            # Read once no run is under way: a run of the page draws the text boxes from empty again, and one was
            # seen under way when the takeaway of the run before it was already on the page (boxes empty, chart on).
            page.wait_for_function(IDLE)
            deadline = time.monotonic() + 30
            while len(texts_words()) < 20 and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            assert len(texts_words()) >= 20, panel.inner_text()[:2000]
            page.screenshot(path=str(SHOTS / "generate.png"), full_page=True)
        finally:
            browser.close()


def test_a_page_loads_the_parts_that_draw_results_before_anything_is_pressed(served_app):
    """The Generate tab draws no chart until its button is pressed; its browser has loaded Streamlit's chart and
    table parts by then, so a class's results, arriving at once, are not each waiting for those."""
    need_browser()
    from ui.widgets import front_end_modules

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{served_app}/?tab=generate")
            page.get_by_role("button", name="Generate", exact=True).wait_for()
            page.wait_for_function(IDLE)
            page.wait_for_function("(names) => names.every((name) => performance.getEntriesByType('resource')"
                                   ".some((entry) => entry.name.endsWith('/static/js/' + name)))",
                                   arg=list(front_end_modules()))
            assert page.locator("[data-testid='stVegaLiteChart'], [data-testid='stDataFrame']").count() == 0
        finally:
            browser.close()


SESSIONS = 20


def test_twenty_browser_sessions_generating_and_evaluating_at_once(served_app, trained_tiny):
    """Twenty real sessions on one server share its cached models: half generate while the other half
    evaluate, and each gets what one session alone gets."""
    need_browser()
    model, corpus = trained_tiny
    quant = quantize(model, PRESETS["tutorial"])

    def expected(seed: int) -> list[str]:
        # The app's two texts for a seed, as the page shows them (<eos> is a line break).
        return [" ".join(w for w in generate(m, corpus.dictionary, words=100, temperature=1.0, seed=seed)
                         if w != "<eos>") for m in (model, quant)]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            context.set_default_timeout(TIMEOUT_MS * 2)
            pages = []
            for i in range(SESSIONS):  # opened together: the server runs their first scripts at once
                page = context.new_page()
                page.goto(f"{served_app}/?seed={i % 4}", wait_until="commit")
                pages.append(page)
            for i, page in enumerate(pages):
                page.get_by_role("tab", name="Generate" if i % 2 == 0 else "Speed & accuracy").click()
            for i, page in enumerate(pages):  # each tab click reruns its page: the tab is drawn before it is used
                slug = "generate" if i % 2 == 0 else "speed-accuracy"
                page.wait_for_function("slug => new URLSearchParams(window.location.search).get('tab') === slug",
                                       arg=slug)
                page.wait_for_function(IDLE)
            for i, page in enumerate(pages):  # all at once: even sessions generate, odd ones evaluate
                page.get_by_role("button", name="Generate" if i % 2 == 0 else "Run evaluation", exact=True).click()
            for i, page in enumerate(pages):
                panel = page.get_by_role("tabpanel").filter(has_text="Takeaway:")
                panel.first.wait_for()
                assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).first.inner_text()
                if i % 2 == 0:
                    shown = " ".join(panel.first.inner_text().split())
                    assert all(text in shown for text in expected(i % 4)), (i, shown[:300])
        finally:
            browser.close()


def _fresh_clone(target: Path) -> Path:
    """The repository's files as a fresh clone has them: no ./data, no caches, no artifacts."""
    import shutil

    skip = shutil.ignore_patterns(".git", "data", "runs", "artifacts", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, target, ignore=skip)
    return target


def test_a_fresh_clone_offline_has_every_tab_working(tmp_path):
    """No WLM_DATA_DIR, no model or corpus cache: the bundled model and the bundled Wikitext-2 serve every tab."""
    need_browser()
    clone = _fresh_clone(tmp_path / "wlm")
    env = {k: v for k, v in os.environ.items() if k not in ("WLM_DATA_DIR", "WLM_MODEL")}
    env["WLM_CACHE_DIR"] = str(tmp_path / "empty-cache")
    with open(tmp_path / "streamlit.log", "w") as log:
        try:
            server, url = start_app(env, output=log, repo=clone)
        except RuntimeError:
            pytest.fail("streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text())
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 720})
                    page.set_default_timeout(TIMEOUT_MS * 2)
                    page.goto(url)
                    sidebar = page.locator("[data-testid='stSidebar']")
                    sidebar.get_by_text("Wikitext-2, bundled").first.wait_for()
                    page.get_by_role("tab", name="Speed & accuracy").click()
                    panel = page.get_by_role("tabpanel").filter(has_text="Test tokens to evaluate")
                    slider = panel.get_by_role("slider").first
                    slider.focus()
                    slider.press("Home")  # the first step: 100 tokens
                    for _ in range(2):
                        slider.press("ArrowRight")
                    panel.get_by_text("300").first.wait_for()
                    panel.get_by_role("button", name="Run evaluation", exact=True).click()
                    panel.locator("[data-testid='stDataFrame']").first.wait_for()
                    charts = panel.locator("[data-testid='stVegaLiteChart']")
                    page.wait_for_function(
                        "() => [...document.querySelectorAll(\"[role='tabpanel'] [data-testid='stVegaLiteChart']\")]"
                        ".filter(e => e.offsetParent !== null).length >= 2")
                    assert charts.count() >= 2
                    SHOTS.mkdir(parents=True, exist_ok=True)
                    panel.locator("[data-testid='stDataFrame']").first.scroll_into_view_if_needed()
                    page.screenshot(path=str(SHOTS / "fresh-clone-speed.png"))
                    assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).first.inner_text()
                    for tab in page.get_by_role("tab").all():
                        tab.click()
                        # Switching tabs reruns the page, which then writes the open tab into the address: once
                        # that is there and the page idle, the panel shows all it will show, so a missing corpus
                        # would be there to see.
                        expect(tab).to_have_attribute("aria-selected", "true")
                        slug = "-".join("".join(c if c.isalnum() else " " for c in tab.inner_text().lower()).split())
                        page.wait_for_function("slug => new URLSearchParams(window.location.search).get('tab') "
                                               "=== slug", arg=slug)
                        page.wait_for_function(IDLE)
                        shown = page.locator("[role='tabpanel']:visible").first.inner_text()
                        assert shown.strip(), tab.inner_text()
                        assert "No corpus" not in shown, (tab.inner_text(), shown[:300])
                    assert "No corpus" not in sidebar.inner_text()
                    assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).first.inner_text()
                finally:
                    browser.close()
        finally:
            stop_app(server)
