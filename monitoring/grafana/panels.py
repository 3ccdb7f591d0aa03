"""The shapes every dashboard panel shares (grafana-foundation-sdk builders): the data source, PromQL selectors for
inference servers and the control plane, time series and stat panels, latency quantiles, and template variables."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.dashboard import QueryVariable
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption, VariableRefresh

# monitoring/grafana/provisioning/datasources/prometheus.yml gives the Prometheus data source this uid.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
RATE = "[$__rate_interval]"
# Inference servers only: `.+` as the "All" value keeps out series without a deployment (the control plane's).
SERVERS = 'deployment=~"$deployment", tenant=~"$tenant"'
CONTROL_PLANE = 'job="control-plane"'  # the job name in monitoring/prometheus/prometheus.yml


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
