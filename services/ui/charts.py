"""Altair chart builders (pure: DataFrame in, chart out)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from services.ui.shaping import BREAKDOWN_ORDER

BREAKDOWN_COLORS = ("#4c78a8", "#f58518", "#e45756", "#b279a2", "#bab0ac")
STATE_COLORS = {"busy": "#54a24b", "idle": "#eeca3b", "silent": "#9d9da1"}


def gantt(rows: pd.DataFrame) -> alt.Chart:
    height = max(120, min(22 * len(rows), 900))
    return (
        alt.Chart(rows)
        .mark_bar(cornerRadius=2)
        .encode(
            x=alt.X("start:T", title=None),
            x2="end:T",
            y=alt.Y("lane:N", sort=alt.EncodingSortField("order"), title=None, axis=alt.Axis(labelLimit=260)),
            color=alt.Color("task:N", title="Task"),
            opacity=alt.condition("datum.kind == 'task'", alt.value(1.0), alt.value(0.65)),
            tooltip=["lane:N", "label:N", "task:N", alt.Tooltip("start:T", format="%H:%M:%S.%L"),
                     alt.Tooltip("end:T", format="%H:%M:%S.%L")],
        )
        .properties(height=height)
    )


def breakdown_bar(breakdown: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(breakdown)
        .mark_bar()
        .encode(
            x=alt.X("sum(seconds):Q", stack="normalize", title="Share of task time", axis=alt.Axis(format="%")),
            color=alt.Color("category:N", sort=list(BREAKDOWN_ORDER),
                            scale=alt.Scale(domain=list(BREAKDOWN_ORDER), range=list(BREAKDOWN_COLORS)),
                            title=None, legend=alt.Legend(orient="bottom")),
            order=alt.Order("order:Q"),
            tooltip=["category:N", alt.Tooltip("seconds:Q", format=".2f"), alt.Tooltip("share:Q", format=".0%")],
        )
        .transform_calculate(order=f"indexof({list(BREAKDOWN_ORDER)!r}, datum.category)")
        .properties(height=70)
    )


def series(df: pd.DataFrame, value: str, title: str, fmt: str = "~s", color: str = "#4c78a8") -> alt.Chart:
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


def cost_bars(df: pd.DataFrame, key: str) -> alt.Chart:
    long = df.melt(id_vars=[key], value_vars=["cost_usd", "waste_usd"], var_name="what", value_name="usd")
    long["what"] = long["what"].map({"cost_usd": "cost", "waste_usd": "of which waste"})
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            y=alt.Y(f"{key}:N", sort="-x", title=None),
            x=alt.X("usd:Q", title="USD"),
            yOffset="what:N",
            color=alt.Color("what:N", scale=alt.Scale(range=["#4c78a8", "#e45756"]), title=None,
                            legend=alt.Legend(orient="bottom")),
            tooltip=[f"{key}:N", "what:N", alt.Tooltip("usd:Q", format="$.4f")],
        )
        .properties(height=max(100, 36 * df[key].nunique()))
    )


def history_line(df: pd.DataFrame, value: str, title: str, highlight_run: str) -> alt.Chart:
    base = alt.Chart(df).encode(x=alt.X("start_time:T", title=None), y=alt.Y(f"{value}:Q", title=title))
    return (
        base.mark_line(point=True, color="#4c78a8")
        + base.transform_filter(alt.datum.run_id == highlight_run).mark_point(size=160, color="#e45756", filled=True)
    ).encode(tooltip=["run_id:N", "start_time:T", alt.Tooltip(f"{value}:Q", format=".3~f")]).properties(height=180)


def distribution(df: pd.DataFrame, value: str, title: str, group: str = "task") -> alt.Chart:
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


def requested_vs_used(df: pd.DataFrame) -> alt.Chart:
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


def host_execution(df: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("start_time:T", title=None), x2="end_time:T",
            y=alt.Y("pipeline:N", title=None),
            color=alt.Color("task:N", title="Task"),
            tooltip=["run_id:N", "task:N", "tool:N", "start_time:T", "end_time:T"],
        )
        .properties(height=max(80, 40 * max(1, df["pipeline"].nunique())))
    )
