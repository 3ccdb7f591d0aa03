"""Grafana dashboards for Mini Studio: `python -m monitoring.grafana.build` (`make dashboards`)."""
