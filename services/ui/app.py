"""execsight dashboard: `streamlit run services/ui/app.py` (or `execsight ui`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

PAGES = (
    ("dashboard_pages/overview.py", "Overview", ":material/dashboard:", "overview"),
    ("dashboard_pages/runs.py", "Runs", ":material/play_circle:", "runs"),
    ("dashboard_pages/tasks.py", "Tasks & tools", ":material/build:", "tasks"),
    ("dashboard_pages/processes.py", "Processes", ":material/account_tree:", "processes"),
    ("dashboard_pages/hosts.py", "Hosts", ":material/dns:", "hosts"),
    ("dashboard_pages/findings.py", "Findings", ":material/lightbulb:", "findings"),
)

st.set_page_config(page_title="execsight", page_icon=":material/monitoring:", layout="wide")
navigation = st.navigation(
    [
        st.Page(path, title=title, icon=icon, url_path=url, default=(url == "overview"))
        for path, title, icon, url in PAGES
    ]
)
if (HERE / "logo.svg").exists():  # not in package-data of a non-editable install
    st.logo(str(HERE / "logo.svg"), size="large")
navigation.run()
