"""The dashboard served on localhost, opened page by page in Debian's headless Chromium.

Screenshots land in artifacts/ui/<page>.png (CI keeps them as artifacts).
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

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "ui"

# page url -> texts that must be on it once rendered (DOM text; tables and charts draw on canvas)
PAGES: dict[str, tuple[str, ...]] = {
    "overview": ("Hosts reporting", fx.HOST, "rightsize_memory", "Collector health", "Lost events"),
    "runs": (f"{fx.PIPELINE} · {fx.LATEST_RUN}", "Where the time went", "Timeline", "Cost by task and tool",
             fx.FINDING_SUMMARY_START, "Compared with this pipeline"),
    "tasks": ("Duration (s)", "Peak memory (MiB)", "Requested vs used vs recommended"),
    "processes": ("Show short-lived processes", "Short-lived", "Time in short-lived"),
    "hosts": ("onprem-2cpu", "Utilization", "Execution", "Idle periods"),
    "findings": (fx.FINDING_SUMMARY_START, "Savings / waste"),
}

pytestmark = [pytest.mark.browser, pytest.mark.db,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium package")]


@pytest.fixture()
def served_app(ui_database_url: str, tmp_path: Path) -> Iterator[str]:
    env = {**os.environ, "EXECSIGHT_UI_DATABASE_URL": ui_database_url, "HOME": str(tmp_path)}
    with served_dashboard(env, tmp_path) as base:
        yield base


RENDERED = """(() => {
  const text = document.body ? document.body.innerText : '';
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  const drawn = charts.every(c => c.querySelector('canvas, svg'));
  return JSON.stringify({ok: !running && drawn && %s.every(t => text.includes(t)), text: text.slice(0, 400)});
})()"""

ERRORS = """(() => {
  const exc = [...document.querySelectorAll('[data-testid="stException"]')].map(e => e.innerText.slice(0, 500));
  const text = document.body.innerText;
  return JSON.stringify({exceptions: exc, traceback: text.includes('Traceback'),
                         not_found: text.includes('Page not found'),
                         alerts: [...document.querySelectorAll('[data-testid="stAlertContentError"]')]
                                   .map(e => e.innerText)});
})()"""


def test_every_page_renders_in_chromium(served_app: str, tmp_path: Path) -> None:
    browser = Chromium(tmp_path / "chromium-profile")
    try:
        for page, expected in PAGES.items():
            browser.navigate(f"{served_app}/{'' if page == 'overview' else page}")
            browser.wait_for(f"JSON.parse({RENDERED % json.dumps(list(expected))}).ok", timeout_s=60,
                             what=f"{page} to render {expected}")
            time.sleep(0.5)  # let the last charts finish their first paint
            errors = json.loads(browser.evaluate(ERRORS))
            browser.screenshot(ARTIFACTS / f"{page}.png")
            assert errors == {"exceptions": [], "traceback": False, "not_found": False, "alerts": []}, (page, errors)
            assert (ARTIFACTS / f"{page}.png").stat().st_size > 20_000
    finally:
        browser.close()
