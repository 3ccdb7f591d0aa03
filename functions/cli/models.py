"""`ministudio models list|delete`, `deploy MODEL [--wait]`, `deployments list|delete`, `usage`: serving from a
terminal through /v1/models, /v1/deployments and /v1/usage."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

from rich.console import Console

from functions.cli.api import Api, ApiError, common_flags, listing, say

SETTLED = {"ready", "failed", "deleted", "idle"}


def register(sub: Any) -> None:
    flags = common_flags()
    models = sub.add_parser("models", help="base and fine-tuned models").add_subparsers(dest="action", required=True)
    models.add_parser("list", parents=[flags], help="the models you can use").set_defaults(handler=_models)
    delete = models.add_parser("delete", parents=[flags], help="delete a fine-tuned model of yours")
    delete.add_argument("model")
    delete.set_defaults(handler=_delete_model)

    deploy = sub.add_parser("deploy", parents=[flags], help="deploy a base or fine-tuned model")
    deploy.add_argument("model")
    deploy.add_argument("--min-replicas", type=int, default=1)
    deploy.add_argument("--max-replicas", type=int, default=1)
    deploy.add_argument("--wait", action="store_true", help="wait (with a spinner) until it is ready")
    deploy.add_argument("--timeout", type=float, default=900, help="seconds --wait waits (default 900)")
    deploy.set_defaults(handler=_deploy)
    deployments = sub.add_parser("deployments", help="your deployments").add_subparsers(dest="action", required=True)
    deployments.add_parser("list", parents=[flags], help="deployments and their status").set_defaults(
        handler=_deployments
    )
    undeploy = deployments.add_parser("delete", parents=[flags], help="delete a deployment")
    undeploy.add_argument("deployment_id")
    undeploy.set_defaults(handler=_delete_deployment)

    usage = sub.add_parser("usage", parents=[flags], help="requests, tokens, errors and latency per model")
    usage.add_argument("--start", help="ISO date/time or Unix seconds (inclusive)")
    usage.add_argument("--end", help="ISO date/time or Unix seconds (exclusive)")
    usage.set_defaults(handler=_usage)


def _models(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    listing(api.call("GET", "/v1/models"), ["ID", "OWNED BY"], lambda m: [m["id"], m["owned_by"]], args.json, out)
    return 0


def _delete_model(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    body = api.call("DELETE", f"/v1/models/{quote(args.model, safe='/:')}")
    say(body, f"deleted {body['id']}", args.json, out)
    return 0


def wait_ready(api: Api, deployment: dict[str, Any], quiet: bool, timeout: float, interval: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    console = Console(stderr=True, quiet=quiet)
    with console.status(f"deploying {deployment['model']}: {deployment['status']}") as spinner:
        while deployment["status"] not in SETTLED and time.monotonic() < deadline:
            time.sleep(interval)
            deployment = api.call("GET", f"/v1/deployments/{deployment['id']}")
            spinner.update(f"deploying {deployment['model']}: {deployment['status']}")
    return deployment


def _deploy(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    body = {"model": args.model, "min_replicas": args.min_replicas, "max_replicas": args.max_replicas}
    deployment = api.call("POST", "/v1/deployments", json=body)
    if args.wait:
        deployment = wait_ready(api, deployment, args.json, args.timeout)
    say(deployment, f"{deployment['id']}  {deployment['model']}  {deployment['status']}", args.json, out)
    if args.wait and deployment["status"] != "ready":
        raise ApiError(0, f"deployment {deployment['id']} is {deployment['status']}, not ready")
    return 0


def _deployments(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    page = api.call("GET", "/v1/deployments")
    columns = ["ID", "STATUS", "MODEL", "REPLICAS", "ENDPOINT"]

    def row(d: dict[str, Any]) -> list[str]:
        return [d["id"], d["status"], d["model"], f"{d['min_replicas']}-{d['max_replicas']}", d.get("endpoint") or "-"]

    listing(page, columns, row, args.json, out)
    return 0


def _delete_deployment(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    body = api.call("DELETE", f"/v1/deployments/{args.deployment_id}")
    say(body, f"{body['id']}  {body['status']}", args.json, out)
    return 0


def unix_seconds(value: str, flag: str) -> int:
    """Unix seconds or an ISO 8601 date/time (UTC when it names no zone)."""
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(0, f"{flag}: not Unix seconds or an ISO date/time: {value!r}") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _usage(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    params = {}
    if args.start:
        params["start_time"] = unix_seconds(args.start, "--start")
    if args.end:
        params["end_time"] = unix_seconds(args.end, "--end")
    usage = api.call("GET", "/v1/usage", params=params)
    columns = ["MODEL", "REQUESTS", "ERRORS", "PROMPT TOKENS", "COMPLETION TOKENS", "AVG MS"]

    def row(r: dict[str, Any]) -> list[str]:
        numbers = (r["requests"], r["errors"], r["prompt_tokens"], r["completion_tokens"])
        return [r["model"], *map(str, numbers), f"{r['average_latency_ms']:.0f}"]

    if listing(usage, columns, row, args.json, out):
        out.write(f"total: {usage['requests']} requests, {usage['total_tokens']} tokens\n")
    return 0
