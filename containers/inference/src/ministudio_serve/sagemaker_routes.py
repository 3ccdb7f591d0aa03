"""SageMaker's `/invocations` for every route, not only OpenAI chat and completions.

InvokeEndpoint always POSTs `/invocations`; the only thing a caller can add is `CustomAttributes`, which SageMaker
passes to the container as `X-Amzn-SageMaker-Custom-Attributes`. The control plane names there the route the
request is for (`route=/predict;method=POST;tenant=acme`), and this middleware turns the request into that route
before anything else sees it, so seed 001's `/inference/infer/{model}` gets `/predict`'s answer, embeddings get
`/v1/embeddings`', seed 004's routes theirs. The tenant replaces any `X-Tenant-ID` the request had: only callers
IAM allows reach the container, and the control plane is the one that names tenants.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from ministudio_serve.errors import error_response

HEADER = b"x-amzn-sagemaker-custom-attributes"
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
# The routes a request may be turned into: the seeds' model routes and embeddings (never adapter loading and the like).
ROUTES = re.compile(
    rf"/(predict|predict/batch|infer|infer/batch|models|info|status|logs|delete-models|v1/embeddings"
    rf"|predict/{_NAME}|predict/{_NAME}/{_NAME}|models/{_NAME}|models/{_NAME}/{_NAME}|models/{_NAME}/versions"
    rf"|models/active|models/{_NAME}/active)"
)
METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})
_TENANT = re.compile(r"[a-z][a-z0-9-]{1,31}")


def parse(value: str) -> dict[str, str]:
    """`k=v;k=v` (SageMaker passes the string as it was given)."""
    pairs = (part.partition("=") for part in value.split(";"))
    return {k.strip().lower(): v.strip() for k, _, v in pairs if k.strip()}


class SageMakerRoutes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/invocations" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers", [])).get(HEADER)
        attributes = parse(raw.decode("latin-1")) if raw else {}
        route = attributes.get("route")
        if not route:
            await self.app(scope, receive, send)  # an OpenAI chat or completion body
            return
        method = attributes.get("method", "POST").upper()
        tenant = attributes.get("tenant", "")
        if not ROUTES.fullmatch(route) or method not in METHODS or (tenant and not _TENANT.fullmatch(tenant)):
            message = f"CustomAttributes: {route!r} with {method} is not a route /invocations can take"
            await error_response("/invocations", 400, message, "", code="invalid_route")(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (HEADER, b"x-tenant-id")]
        if tenant:
            headers.append((b"x-tenant-id", tenant.encode()))
        routed = {**scope, "path": route, "raw_path": route.encode(), "method": method, "headers": headers}
        await self.app(routed, receive, send)
