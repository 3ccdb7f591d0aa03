"""A real Prometheus for `ministudio run --prometheus` (or LOCAL_PROMETHEUS=1): a child process scraping the API
and every local inference server, configured from monitoring/prometheus/prometheus.yml.

Inference servers are found through Prometheus' file service discovery. Whoever starts one calls `write_target`,
which writes `{targets_dir}/{deployment}.json`, and `remove_target` when it stops; Prometheus watches the folder,
so servers come and go without a reload. The `deployment` label is the one `queue_depth_query` (KEDA's query)
selects on, so the same PromQL answers locally and on EKS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from functions.compute.serving import DEPLOYMENT_LABEL
from functions.core.settings import Settings
from functions.local import procs

# The config ships in the repository, beside the Grafana dashboards that query its job names.
CONFIG_TEMPLATE = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus" / "prometheus.yml"
CONTROL_PLANE_JOB = "control-plane"
INFERENCE_JOB = "inference"
_FALLBACK_PATHS = ("/usr/bin/prometheus", "/usr/local/bin/prometheus")
# A target file is named after its deployment: keep names to what backend names already are (DNS-1123).
_TARGET_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


def find_prometheus() -> str | None:
    """Path of a `prometheus` binary, or None."""
    found = shutil.which("prometheus")
    if found:
        return found
    return next((p for p in _FALLBACK_PATHS if os.access(p, os.X_OK)), None)


def home(settings: Settings) -> Path:
    """The folder holding the rendered config and the targets folder."""
    if settings.local_prometheus_dir:
        return Path(settings.local_prometheus_dir)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ministudio" / "prometheus"


def targets_dir(settings: Settings) -> Path:
    """Where local inference servers are announced (the `targets_dir` of `write_target`)."""
    return home(settings) / "targets"


def write_target(
    targets_dir: Path | str, name: str, port: int, labels: Mapping[str, str] | None = None, host: str = "127.0.0.1"
) -> Path:
    """Announce the server of deployment `name` listening on host:port. Written atomically: Prometheus reads the
    folder whenever it changes and would drop a target whose file it caught half-written."""
    folder = Path(targets_dir)
    folder.mkdir(parents=True, exist_ok=True)
    group = {"targets": [f"{host}:{port}"], "labels": {**(labels or {}), DEPLOYMENT_LABEL: name}}
    path = _target_path(folder, name)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")  # a dotfile: outside the `*.json` glob
    try:
        with os.fdopen(fd, "w") as out:
            json.dump([group], out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_target(targets_dir: Path | str, name: str) -> None:
    """Stop scraping deployment `name`; removing a target that is not there is not an error."""
    _target_path(Path(targets_dir), name).unlink(missing_ok=True)


def _target_path(folder: Path, name: str) -> Path:
    if not _TARGET_NAME.match(name):
        raise ValueError(f"not a deployment name usable as a target file: {name!r}")
    return folder / f"{name}.json"


def render_config(
    api_port: int, targets: Path, scrape_interval_seconds: float | None = None, template: Path = CONFIG_TEMPLATE
) -> dict[str, Any]:
    """The shipped config with the local API port and targets folder in place of Compose's."""
    import yaml

    config: dict[str, Any] = yaml.safe_load(template.read_text())
    jobs = {job["job_name"]: job for job in config.get("scrape_configs", [])}
    missing = {CONTROL_PLANE_JOB, INFERENCE_JOB} - jobs.keys()
    if missing:
        raise ValueError(f"{template} has no scrape job named {', '.join(sorted(missing))}")
    jobs[CONTROL_PLANE_JOB]["static_configs"] = [{"targets": [f"127.0.0.1:{api_port}"]}]
    discovery = jobs[INFERENCE_JOB]["file_sd_configs"]
    discovery[:] = [{**discovery[0], "files": [str(targets / "*.json")]}]
    if scrape_interval_seconds is not None:
        interval = f"{round(scrape_interval_seconds * 1000)}ms"
        config["global"].update(scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval)
        discovery[0]["refresh_interval"] = interval
    return config


@dataclass
class LocalPrometheus:
    child: procs.Child
    home: Path
    data: Path
    targets: Path = field(init=False)

    def __post_init__(self) -> None:
        self.targets = self.home / "targets"

    @property
    def url(self) -> str:
        return self.child.url

    def query(self, expr: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """An instant query through the HTTP API: the result vector (each item's `metric` and `value`)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=timeout)
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"Prometheus refused {expr!r}: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        self.child.stop()
        shutil.rmtree(self.data, ignore_errors=True)


def start(
    api_port: int,
    home: Path,
    port: int | None = None,
    *,
    scrape_interval_seconds: float | None = None,
    timeout: float = 60.0,
) -> LocalPrometheus:
    """Start Prometheus on 127.0.0.1 (`port`, or any free one) scraping the API on `api_port` and the targets in
    `home/targets`. Its data lives in a temporary folder removed by `stop`: local metrics need not outlive a run."""
    binary = find_prometheus()
    if binary is None:
        raise FileNotFoundError("prometheus not found: install it (apt-get install prometheus)")
    import yaml

    targets = home / "targets"
    targets.mkdir(parents=True, exist_ok=True)
    config_path = home / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(render_config(api_port, targets, scrape_interval_seconds), sort_keys=False))
    data = Path(tempfile.mkdtemp(prefix="ministudio-prometheus-"))

    def argv(p: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{p}",
        ]

    try:
        child = procs._start("prometheus", argv, _ready, "http://127.0.0.1:{port}", port, timeout, None)
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)
        raise
    return LocalPrometheus(child, home, data)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
