"""execsight dashboard: `streamlit run services/ui/app.py` (or `execsight ui`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from execsight.settings import load_settings
from execsight.ui import access

HERE = Path(__file__).resolve().parent

PAGES = (
    ("dashboard_pages/overview.py", "Overview", ":material/dashboard:", "overview"),
    ("dashboard_pages/runs.py", "Runs", ":material/play_circle:", "runs"),
    ("dashboard_pages/tasks.py", "Tasks & tools", ":material/build:", "tasks"),
    ("dashboard_pages/processes.py", "Processes", ":material/account_tree:", "processes"),
    ("dashboard_pages/hosts.py", "Hosts", ":material/dns:", "hosts"),
    ("dashboard_pages/findings.py", "Findings", ":material/lightbulb:", "findings"),
)

settings = load_settings()
st.set_page_config(page_title="execsight", page_icon=":material/monitoring:", layout="wide")
navigation = st.navigation(
    [
        st.Page(path, title=title, icon=icon, url_path=url, default=(url == "overview"))
        for path, title, icon, url in PAGES
    ],
    position="sidebar" if access.logged_in(settings) else "hidden",
)
if (HERE / "logo.svg").exists():  # not in package-data of a non-editable install
    st.logo(str(HERE / "logo.svg"), size="large")
access.gate(settings)  # no page runs (no query, no data) before the login, when one is required
navigation.run()
