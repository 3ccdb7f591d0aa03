"""Monitoring assets: Prometheus config, Grafana dashboards (built by grafana/build.py) and provisioning."""
