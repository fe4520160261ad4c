"""Who may see the dashboard (EXECSIGHT_UI_AUTH).

- `none`: no login; only for a dashboard on loopback (the default, a developer's machine).
- `password`: one shared password (EXECSIGHT_UI_PASSWORD), asked once per browser session.
- `oidc`: Streamlit's built-in OpenID Connect login (`st.login`), configured in the `[auth]` section
  of `.streamlit/secrets.toml` (redirect_uri, cookie_secret, client_id, client_secret,
  server_metadata_url), e.g. behind your identity provider.

`gate()` runs before any page: until the visitor is logged in, the app renders the login form only
and stops, so no query runs and no data reaches the browser.
"""

from __future__ import annotations

import hmac

import streamlit as st

from execsight.settings import Settings

SESSION_KEY = "execsight_authenticated"


def password_ok(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def logged_in(settings: Settings) -> bool:
    if settings.ui_auth == "none":
        return True
    if settings.ui_auth == "oidc":
        return bool(st.user.is_logged_in)
    return bool(st.session_state.get(SESSION_KEY))


def gate(settings: Settings) -> None:
    """Returns when the visitor may see data; otherwise renders the login and stops the script."""
    if logged_in(settings):
        if settings.ui_auth == "oidc":
            st.sidebar.button("Log out", on_click=st.logout)
        return
    st.title("execsight")
    if settings.ui_auth == "oidc":
        st.button("Log in", on_click=st.login, type="primary")
        st.stop()
    with st.form("login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        if password_ok(given, settings.ui_password):
            st.session_state[SESSION_KEY] = True
            st.rerun()
        st.error("Wrong password.")
    st.stop()
