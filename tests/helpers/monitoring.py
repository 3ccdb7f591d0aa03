"""What the monitoring tests share: the PromQL the generated dashboards run, the metric names in it, the series a
/metrics page exports, and a real inference server (tiny random Llama, SmolLM2's tokenizer) to scrape."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO_ROOT / "monitoring" / "grafana" / "dashboards"
SERVER_KEY = "monitoring-test-server-key"
# Series Prometheus makes itself for every target: a dashboard may query them though no server exports them.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# Numbers and durations (`0.95`, `1e3`, `offset 5m`): their letters are no metric names.
_NUMBERS = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")
_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def dashboard_queries(path: Path) -> list[str]:
    """Every PromQL expression a dashboard runs: panel targets and the selectors of its query variables."""
    model = json.loads(path.read_text())
    exprs: list[str] = []
    for panel in model.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            exprs += [target["expr"] for target in inner.get("targets", []) if target.get("expr")]
    for variable in model.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        found = _LABEL_VALUES.match(text.strip())
        if found and found.group("selector"):
            exprs.append(found.group("selector"))
        elif text:
            exprs.append(text)
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers left once strings, label matchers, ranges and grouping
    clauses are gone, other than functions and aggregations (followed by `(`) and keywords."""
    bare = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub('""', expr))))
    bare = _NUMBERS.sub(" ", bare)
    names = set()
    for found in _IDENTIFIER.finditer(bare):
        if bare[found.end() :].lstrip().startswith("(") or found.group().lower() in _KEYWORDS:
            continue
        names.add(found.group())
    return names


def exported_series(exposition: str) -> set[str]:
    """Series names a /metrics page can carry: those with samples, and those its `# TYPE` lines declare (a labelled
    metric no request has touched yet has no sample, but it is exported all the same)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names |= {name + suffix for suffix in _SUFFIXES.get(kind.strip(), ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def concrete(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, so Prometheus itself can run it."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$deployment", ".+")
        .replace("$tenant", ".*")
    )


def tiny_inference_app(tmp: Path, **engine_options: Any) -> tuple[Any, Any]:
    """`ministudio-serve`'s app around a running tiny random Llama, behind the server key; returns (app, engine)."""
    from ministudio_common import loader
    from ministudio_serve.app import create_app
    from ministudio_serve.engines.transformers_engine import TransformersEngine
    from ministudio_serve.settings import ServeSettings
    from transformers import AutoTokenizer

    from tests.helpers.tiny_models import BASE, tiny_model

    tokenizer = AutoTokenizer.from_pretrained(str(loader.resolve(BASE)))
    engine_options.setdefault("batch_timeout_ms", 0)
    engine = TransformersEngine(tiny_model(len(tokenizer)), tokenizer, BASE, **engine_options)
    settings = ServeSettings(model=BASE, api_key=SERVER_KEY, request_log=tmp / "requests.sqlite")
    return create_app(settings, engine=engine), engine


@dataclass
class Served:
    url: str
    port: int


@contextmanager
def serve(app: Any) -> Iterator[Served]:
    """Run an ASGI app under uvicorn on a free port in a thread, as a real server Prometheus can scrape."""
    import uvicorn

    from functions.local.procs import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the test server did not start on {url}")
        time.sleep(0.05)
    try:
        yield Served(url, port)
    finally:
        server.should_exit = True
        thread.join(30)


def scrape(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    response.raise_for_status()
    return response.text
