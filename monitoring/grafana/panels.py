"""The shapes every dashboard shares (grafana-foundation-sdk builders): the data source, PromQL selectors for
inference servers and the control plane, time series and stat panels, latency quantiles, template variables, and
`dashboard`, which lays a dashboard out from tables of panels (title, unit, description, queries)."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, Row
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption, VariableRefresh

# monitoring/grafana/provisioning/datasources/prometheus.yml gives the Prometheus data source this uid.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
RATE = "[$__rate_interval]"
# Inference servers only: `.+` as the "All" value keeps out series without a deployment (the control plane's).
SERVERS = 'deployment=~"$deployment", tenant=~"$tenant"'
CONTROL_PLANE = 'job="control-plane"'  # the job name in monitoring/prometheus/prometheus.yml
# A query: its expression (legend "__auto"), (expression, legend), or one already built (`quantiles`).
QuerySpec = str | tuple[str, str] | prometheus.Dataquery
PanelSpec = tuple[str, str, str, Sequence[QuerySpec]]  # title, unit, description, queries


def query(expr: str, legend: str = "__auto") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)


def timeseries_panel(title: str, unit: str, description: str, *queries: prometheus.Dataquery) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
    )
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(query.ref_id(ref))
    return panel


def stat_panel(title: str, unit: str, description: str, query: prometheus.Dataquery) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(4)
        .span(6)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(query.ref_id("A"))
    )


def quantiles(metric: str, by: str, legend: str) -> list[prometheus.Dataquery]:
    return [
        query(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{SERVERS}}}{RATE})))",
            f"p{round(q * 100)} {legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def variable(name: str, label: str, query: str, all_value: str) -> QueryVariable:
    return (
        QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .all_value(all_value)
        .current(VariableOption(selected=True, text="All", value="$__all"))
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
    )


def _query(spec: QuerySpec) -> prometheus.Dataquery:
    if isinstance(spec, prometheus.Dataquery):
        return spec
    return query(spec) if isinstance(spec, str) else query(*spec)


def dashboard(
    title: str,
    uid: str,
    description: str,
    tags: list[str],
    overview: list[PanelSpec],
    rows: dict[str, list[PanelSpec]],
    variables: tuple[QueryVariable, ...] = (),
) -> Dashboard:
    """A dashboard: a row "Overview" of stat panels (one query each), then each row of `rows` as time series."""
    board = (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(tags)
        .refresh("10s")
        .time("now-30m", "now")
        .timezone(common.TimeZoneBrowser)
    )
    for var in variables:
        board = board.with_variable(var)
    board = board.with_row(Row("Overview"))
    for name, unit, text, (single,) in overview:
        board = board.with_panel(stat_panel(name, unit, text, _query(single)))
    for row, panels in rows.items():
        board = board.with_row(Row(row))
        for name, unit, text, queries in panels:
            board = board.with_panel(timeseries_panel(name, unit, text, *map(_query, queries)))
    return board
