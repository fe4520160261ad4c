"""The run page in headless Chromium at 1400 px: screenshots under artifacts/ui/, cut-off tiles and cut table
columns measured in the DOM, the links clicked through, and the live section refreshing on its own.

Cut-off: an element whose content is wider than its box (scrollWidth > clientWidth) is cut: a metric tile's
value or label ellipsised, a table whose columns need a horizontal scroll (the data grid's scroller).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import observed_fixture as fx
from .chromium_cdp import CHROMIUM, Chromium
from .served_dashboard import served_dashboard
from .test_browser import ERRORS, RENDERED
from .test_pages import start_live_task

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "ui"
WIDTH = 1400

pytestmark = [pytest.mark.browser, pytest.mark.db,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium package")]

# Every metric tile (label and value) and every data grid's scroller; the cut ones with their widths.
CUT_OFF = """(() => {
  const cut = [];
  const check = (el, what) => {
    if (el.scrollWidth > el.clientWidth + 1)
      cut.push({what, text: (el.innerText || '').slice(0, 60), scroll: el.scrollWidth, client: el.clientWidth});
  };
  let tiles = 0, grids = 0;
  document.querySelectorAll('[data-testid="stMetric"]').forEach(m => {
    tiles += 1;
    m.querySelectorAll('[data-testid="stMetricValue"], [data-testid="stMetricValue"] *, '
                       + '[data-testid="stMetricLabel"] p, [data-testid="stMetricDelta"] div').forEach(
      e => check(e, 'metric'));
  });
  document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller').forEach(g => { grids += 1;
    check(g, 'table'); });
  document.querySelectorAll('[data-testid="stTable"] table').forEach(t => check(t.parentElement, 'table'));
  return JSON.stringify({tiles, grids, cut});
})()"""


@pytest.fixture()
def served_app(ui_database_url: str, tmp_path: Path) -> Iterator[str]:
    env = {**os.environ, "EXECSIGHT_UI_DATABASE_URL": ui_database_url, "HOME": str(tmp_path)}
    with served_dashboard(env, tmp_path) as base:
        yield base


def rendered(browser: Chromium, texts: list[str], what: str, timeout_s: float = 60) -> None:
    browser.wait_for(f"JSON.parse({RENDERED % json.dumps(texts)}).ok", timeout_s=timeout_s, what=what)
    time.sleep(0.8)  # grids and charts size themselves after the first paint
    errors = json.loads(browser.evaluate(ERRORS))
    assert errors == {"exceptions": [], "traceback": False, "not_found": False, "alerts": []}, (what, errors)


def cut_off(browser: Chromium) -> dict[str, object]:
    result: dict[str, object] = json.loads(browser.evaluate(CUT_OFF))
    return result


def test_run_page_at_1400_px_has_no_cut_tiles_or_columns(served_app: str, browser: Chromium) -> None:
    browser.navigate(f"{served_app}/runs?run={fx.LATEST_RUN}")
    rendered(browser, ["At a glance", "Compared with this pipeline", "Where the time went", "Tools: time and I/O",
                       "Resources over time", "Disk read"], "the run page")
    assert browser.evaluate("document.documentElement.clientWidth") == WIDTH
    browser.screenshot(ARTIFACTS / "run_page_1400.png")
    measured = cut_off(browser)
    assert int(str(measured["tiles"])) >= 8 and int(str(measured["grids"])) >= 3, measured
    assert measured["cut"] == [], measured
    text = browser.evaluate("document.body.innerText")
    assert "None" not in text and "NaN" not in text
    # every chart has a legend (vega-lite draws it as a group with role graphics-symbol entries / a legend class)
    legends = browser.evaluate("""[...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
        .map(c => c.querySelectorAll('g.role-legend').length)""")
    assert legends and all(n > 0 for n in legends), legends
    # the check can fail: the same tiles squeezed into 60 px are reported as cut
    browser.evaluate("""document.querySelectorAll('[data-testid="stMetric"]').forEach(
        m => { m.style.width = '60px'; m.style.maxWidth = '60px'; })""")
    time.sleep(0.3)
    squeezed = cut_off(browser)["cut"]
    assert isinstance(squeezed, list) and any(c["what"] == "metric" for c in squeezed), squeezed


def test_links_click_through_finding_run_host_runs_task_processes(served_app: str, browser: Chromium) -> None:
    def click(label_start: str) -> None:
        ok = browser.evaluate(f"""(() => {{
            const a = [...document.querySelectorAll('[data-testid="stPageLink"] a, [data-testid="stPageLink-NavLink"]')]
              .find(a => a.innerText.includes({json.dumps(label_start)}));
            if (!a) return false; a.click(); return true; }})()""")
        assert ok, f"no link {label_start!r}"

    browser.navigate(f"{served_app}/findings")
    rendered(browser, [fx.FINDING_SUMMARY_START], "the findings page")
    browser.evaluate("""[...document.querySelectorAll('[data-testid="stExpander"] summary')][0].click()""")
    browser.wait_for("document.body.innerText.includes('Open run')", what="the finding's links")
    click("Open run")
    rendered(browser, ["At a glance", f"{fx.PIPELINE} · {fx.LATEST_RUN}"], "the finding's run")
    assert f"run={fx.LATEST_RUN}" in browser.evaluate("location.search")
    click(f"Host {fx.HOST}")
    rendered(browser, ["Utilization", "Runs on this host"], "the run's host")
    assert f"host={fx.HOST}" in browser.evaluate("location.search")
    click("Runs on this host")
    rendered(browser, [f"Runs on host {fx.HOST} (2)", "At a glance", "Processes of "], "the host's runs")
    click("Processes of ")
    rendered(browser, ["Show short-lived processes"], "a task's processes")
    search = browser.evaluate("location.search")
    assert "task=" in search and "run=" in search, search
    browser.screenshot(ARTIFACTS / "links_processes.png")


def test_live_section_refreshes_without_rerendering_the_page(
    served_app: str, browser: Chromium, database_url: str
) -> None:
    start_live_task(database_url)
    browser.navigate(f"{served_app}/runs?run={fx.LATEST_RUN}")
    rendered(browser, ["Live: tasks now", "Running now", "align-live"], "the live run page")
    stamp = "(document.body.innerText.match(/%s ([0-9:]+) UTC/) || [])[1]"
    page_at, live_at = browser.evaluate(stamp % "Page rendered at"), browser.evaluate(stamp % "Live as of")
    assert page_at and live_at
    browser.screenshot(ARTIFACTS / "run_page_live.png")
    # a task ends meanwhile: the live section shows it within a refresh, the rest of the page stays as rendered
    import psycopg
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE processes SET end_time = now() WHERE pid = 424242")
    browser.wait_for(f"({stamp % 'Live as of'}) !== {json.dumps(live_at)} && "
                     "!document.body.innerText.includes('align-live')", timeout_s=30, what="the live refresh")
    assert browser.evaluate(stamp % "Page rendered at") == page_at
