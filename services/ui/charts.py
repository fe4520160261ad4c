"""Altair chart builders (pure: DataFrame in, chart out)."""

from __future__ import annotations

from typing import Any, TypeAlias

import altair as alt
import pandas as pd

from execsight.ui.shaping import BREAKDOWN_ORDER

Chart: TypeAlias = Any  # an altair chart (altair is untyped here)

BREAKDOWN_COLORS = ("#4c78a8", "#f58518", "#e45756", "#b279a2", "#bab0ac")
STATE_COLORS = {"busy": "#54a24b", "idle": "#eeca3b", "silent": "#9d9da1"}


def gantt(rows: pd.DataFrame) -> Chart:
    lanes = rows.sort_values("order")["lane"].tolist()
    height = max(120, min(24 * len(lanes), 900))
    return (
        alt.Chart(rows)
        .mark_bar(cornerRadius=2)
        .encode(
            x=alt.X("start:T", title=None),
            x2="end:T",
            y=alt.Y("lane:N", sort=lanes, title=None, axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            color=alt.Color("task:N", title="Task"),
            opacity=alt.condition("datum.kind == 'task'", alt.value(1.0), alt.value(0.6)),
            tooltip=["lane:N", "label:N", "task:N", alt.Tooltip("start:T", format="%H:%M:%S.%L"),
                     alt.Tooltip("end:T", format="%H:%M:%S.%L")],
        )
        .properties(height=height)
    )


def breakdown_bar(breakdown: pd.DataFrame) -> Chart:
    df = breakdown.assign(order=range(len(breakdown)), row="time")
    return (
        alt.Chart(df)
        .mark_bar(height=28)
        .encode(
            x=alt.X("seconds:Q", stack="normalize", title="Share of task time", axis=alt.Axis(format="%")),
            y=alt.Y("row:N", title=None, axis=None),
            color=alt.Color("category:N", sort=list(BREAKDOWN_ORDER),
                            scale=alt.Scale(domain=list(BREAKDOWN_ORDER), range=list(BREAKDOWN_COLORS)),
                            title=None, legend=alt.Legend(orient="bottom")),
            order=alt.Order("order:Q"),
            tooltip=["category:N", alt.Tooltip("seconds:Q", format=".2f"), alt.Tooltip("share:Q", format=".0%")],
        )
        .properties(height=60)
    )


def series(df: pd.DataFrame, value: str, title: str, fmt: str = "~s", color: str = "#4c78a8") -> Chart:
    return (
        alt.Chart(df)
        .mark_area(line={"color": color}, color=color, opacity=0.35, interpolate="step-after")
        .encode(
            x=alt.X("bucket:T", title=None),
            y=alt.Y(f"{value}:Q", title=title, axis=alt.Axis(format=fmt)),
            tooltip=[alt.Tooltip("bucket:T", format="%Y-%m-%d %H:%M:%S"), alt.Tooltip(f"{value}:Q", format=fmt)],
        )
        .properties(height=160)
    )


def cost_bars(df: pd.DataFrame, key: str) -> Chart:
    """Cost per task or tool, split into the useful part and the waste."""
    long = pd.concat([
        pd.DataFrame({key: df[key], "what": "used", "usd": (df["cost_usd"] - df["waste_usd"]).clip(lower=0),
                      "order": 0}),
        pd.DataFrame({key: df[key], "what": "waste", "usd": df["waste_usd"], "order": 1}),
    ], ignore_index=True)
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            y=alt.Y(f"{key}:N", sort=df[key].tolist(), title=None),
            x=alt.X("sum(usd):Q", title="USD", axis=alt.Axis(format="$.2~g")),
            color=alt.Color("what:N", scale=alt.Scale(domain=["used", "waste"], range=["#4c78a8", "#e45756"]),
                            title=None, legend=alt.Legend(orient="bottom")),
            order=alt.Order("order:Q"),
            tooltip=[f"{key}:N", "what:N", alt.Tooltip("sum(usd):Q", format="$.5f")],
        )
        .properties(height=alt.Step(26))
    )


def history_line(df: pd.DataFrame, value: str, title: str, highlight_run: str) -> Chart:
    base = alt.Chart(df).encode(x=alt.X("start_time:T", title=None), y=alt.Y(f"{value}:Q", title=title))
    return (
        base.mark_line(point=True, color="#4c78a8")
        + base.transform_filter(alt.datum.run_id == highlight_run).mark_point(size=160, color="#e45756", filled=True)
    ).encode(tooltip=["run_id:N", "start_time:T", alt.Tooltip(f"{value}:Q", format=".3~f")]).properties(height=180)


def distribution(df: pd.DataFrame, value: str, title: str, group: str = "task") -> Chart:
    return (
        alt.Chart(df)
        .mark_boxplot(extent="min-max", size=22)
        .encode(
            y=alt.Y(f"{group}:N", title=None),
            x=alt.X(f"{value}:Q", title=title, scale=alt.Scale(zero=False)),
            color=alt.Color(f"{group}:N", legend=None),
        )
        .properties(height=max(80, 34 * df[group].nunique()))
    )


def requested_vs_used(df: pd.DataFrame) -> Chart:
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("kind:N", title=None, sort=None),
            x=alt.X("value:Q", title=None),
            color=alt.Color("kind:N", legend=None,
                            scale=alt.Scale(scheme="tableau10")),
            row=alt.Row("resource:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")),
            tooltip=["resource:N", "kind:N", alt.Tooltip("value:Q", format=".3~f")],
        )
        .resolve_scale(x="independent", y="independent")
        .properties(height=alt.Step(18), width=420)
    )


def host_execution(df: pd.DataFrame) -> Chart:
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("start_time:T", title=None), x2="end_time:T",
            y=alt.Y("pipeline:N", title=None),
            color=alt.Color("task:N", title="Task"),
            tooltip=["run_id:N", "task:N", "tool:N", "start_time:T", "end_time:T"],
        )
        .properties(height=max(150, 40 * max(1, df["pipeline"].nunique())))
    )
