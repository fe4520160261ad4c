"""What a webhook receives (pure): a Slack-compatible message or the finding as generic JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from execsight.notify.routes import ESCALATED, OPENED, REOPENED, RESOLVED

Finding = Mapping[str, Any]

_TITLE = {OPENED: "New finding", ESCALATED: "Finding escalated", REOPENED: "Finding reopened",
          RESOLVED: "Finding resolved"}
_EMOJI = {"HIGH": ":red_circle:", "MEDIUM": ":large_orange_circle:", "LOW": ":large_yellow_circle:",
          "INFO": ":information_source:"}
_SUBJECT = ("pipeline", "run_id", "task", "tool", "host_id", "resource_type", "resource_id", "region")


def _number(value: float, unit: str) -> str:
    if unit == "usd":
        return f"${value:,.2f}"
    if unit == "bytes":
        return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.1f} MiB"
    if unit == "ns":
        return f"{value / 1e9:.1f} s"
    if unit == "ratio":
        return f"{value:.0%}"
    return f"{value:g} {unit}".strip()


def subject(finding: Finding) -> list[tuple[str, str]]:
    return [(k, str(finding[k])) for k in _SUBJECT if finding.get(k) not in (None, "")]


def headline(finding: Finding, event: str, source: str) -> str:
    sev = str(finding.get("severity"))
    return f"{_TITLE.get(event, event)} [{sev}] {finding.get('kind')} ({source}): {finding.get('summary')}"


def slack_payload(finding: Finding, event: str, source: str) -> dict[str, Any]:
    """Slack incoming-webhook JSON: ``text`` (the notification line) and Block Kit ``blocks``."""
    sev = str(finding.get("severity"))
    text = headline(finding, event, source)
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": f"{_TITLE.get(event, event)}: {finding.get('kind')}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": f"{_EMOJI.get(sev, '')} *{sev}* {finding.get('summary')}".strip()}},
    ]
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in subject(finding)]
    for key, per in (("monthly_waste_usd", "per month"), ("estimated_savings_usd", "per run")):
        if finding.get(key) is not None:
            fields.append({"type": "mrkdwn", "text": f"*{key}*\n${float(finding[key]):,.2f} {per}"})
    if fields:
        blocks.append({"type": "section", "fields": fields[:10]})  # Slack's limit per section
    evidence = [f"{e['name']}: {_number(float(e['value']), str(e['unit']))}" for e in finding.get("evidence") or []]
    if evidence:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(evidence)[:3000]}]})
    if finding.get("recommendation") and event != RESOLVED:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"*Recommendation* {finding['recommendation']}"[:3000]}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"finding `{finding.get('finding_id')}` · status {finding.get('status')}"}]})
    return {"text": text, "blocks": blocks}


def json_payload(finding: Finding, event: str, source: str) -> dict[str, Any]:
    """The generic POST: the event, where the finding came from, and the finding as decoded."""
    return {"event": event, "source": source, "finding": dict(finding)}


def payload(fmt: str, finding: Finding, event: str, source: str) -> dict[str, Any]:
    return slack_payload(finding, event, source) if fmt == "slack" else json_payload(finding, event, source)
