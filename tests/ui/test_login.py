"""EXECSIGHT_UI_AUTH=password in a real browser: a visitor without the password sees no data on any
page, a wrong password is refused, the right one shows the dashboard."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from execsight.ui.access import password_ok

from . import observed_fixture as fx
from .chromium_cdp import CHROMIUM, Chromium
from .served_dashboard import served_dashboard

PASSWORD = "correct horse battery staple"
# what any page shows once data is there (the fixture's host, pipeline, overview's headline)
DATA = (fx.HOST, fx.PIPELINE, "Hosts reporting", "Collector health")

pytestmark = [pytest.mark.browser, pytest.mark.db,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium package")]


def test_password_check() -> None:
    assert password_ok(PASSWORD, PASSWORD)
    assert not password_ok("", PASSWORD) and not password_ok(PASSWORD[:-1], PASSWORD)
    assert not password_ok("", ""), "an empty password never opens the dashboard"


@pytest.fixture()
def protected_app(ui_database_url: str, tmp_path: Path) -> Iterator[str]:
    env = {**os.environ, "EXECSIGHT_UI_DATABASE_URL": ui_database_url, "HOME": str(tmp_path),
           "EXECSIGHT_UI_AUTH": "password", "EXECSIGHT_UI_PASSWORD": PASSWORD}
    with served_dashboard(env, tmp_path) as base:
        yield base


TEXT = "document.body ? document.body.innerText : ''"
LOGIN_SHOWN = ("!!document.querySelector('input[type=password]')"
               " && !document.querySelector('[data-testid=stStatusWidget]')")


def _visible_data(browser: Chromium) -> list[str]:
    text = str(browser.evaluate(TEXT))
    return [d for d in DATA if d in text]


def _log_in(browser: Chromium, password: str) -> None:
    browser.evaluate("(() => { const i = document.querySelector('input[type=password]'); i.focus(); i.select(); })()")
    browser.send("Input.insertText", text=password)
    time.sleep(0.3)
    browser.evaluate("[...document.querySelectorAll('button')].find(b => b.innerText.includes('Log in')).click()")


def test_no_data_without_the_password(protected_app: str, tmp_path: Path) -> None:
    browser = Chromium(tmp_path / "chromium-profile")
    try:
        for page in ("", "runs", "hosts", "findings"):
            browser.navigate(f"{protected_app}/{page}")
            browser.wait_for(LOGIN_SHOWN, timeout_s=60, what=f"the login on /{page}")
            time.sleep(1.0)  # anything a page would render has had its time
            assert _visible_data(browser) == [], f"/{page} shows data before the login"
            assert "Runs" not in json.dumps(browser.evaluate(
                "[...document.querySelectorAll('[data-testid=stSidebarNav] a')].map(a => a.innerText)"))

        browser.navigate(protected_app)
        browser.wait_for(LOGIN_SHOWN, timeout_s=60, what="the login")
        _log_in(browser, "wrong password")
        browser.wait_for(f"({TEXT}).includes('Wrong password')", timeout_s=30, what="the refusal")
        assert _visible_data(browser) == []

        _log_in(browser, PASSWORD)
        browser.wait_for(f"({TEXT}).includes({json.dumps(fx.HOST)})", timeout_s=60, what="data after the login")
        assert not browser.evaluate("!!document.querySelector('input[type=password]')")
    finally:
        browser.close()
