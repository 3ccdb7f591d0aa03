"""Seeds 002-004's routes through the control plane: `/inference/{deployment_id}/{path}` reaches `{path}` on the
server of the caller's own deployment.

The deployment must be the caller's (another tenant's id is a 404, as every id route), ready, and have a server of its
own (an adapter riding on a shared server is refused: that server's /info and /logs are the host's). Only the seed
routes of the deployment's profile pass (`allowed`). The tenant the server acts for is the control plane's to say:
`X-Tenant-ID` is the caller's client_code, sent with the server key, and a caller's own `X-Tenant-ID` is never passed
on. Bodies go through as the caller sent them (multipart uploads included) and answers come back as the server gave
them, in the seed's shapes; an error answer's messages are redacted as every proxied error is. Each call is logged
for /v1/usage and /v1/logs.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import Response

from functions.core.errors import Conflict, NotFound, ServiceUnavailable
from functions.core.models import Deployment, DeploymentStatus
from functions.core.observability import log
from functions.core.settings import Settings
from functions.deployments import redact, wake
from functions.deployments.proxy_call import Call
from functions.deployments.proxy_errors import UpstreamError, rejected
from functions.deployments.routing import Route
from functions.store.mongo import Store

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
# (method, path) per profile, as the seeds name them. llm: seed 003's task models, seed 002's extras; tabular: seed 004.
ROUTES: dict[str, tuple[tuple[str, str], ...]] = {
    "llm": (
        ("GET", "models"),
        ("POST", "infer"),
        ("POST", "infer/batch"),
        ("POST", "predict"),
        ("POST", "predict/batch"),
        ("GET", "info"),
        ("GET", "status"),
    ),
    "tabular": (
        ("POST", "predict"),
        ("POST", f"predict/{_NAME}"),
        ("POST", f"predict/{_NAME}/{_NAME}"),
        ("GET", "logs"),
        ("DELETE", "delete-models"),
        ("GET", "models"),
        ("GET", f"models/{_NAME}"),
        ("GET", f"models/{_NAME}/{_NAME}"),
        ("POST", f"models/{_NAME}/versions"),
        ("PUT", "models/active"),
        ("PUT", f"models/{_NAME}/active"),
    ),
}
_COMPILED = {p: [(m, re.compile(path)) for m, path in routes] for p, routes in ROUTES.items()}


def allowed(profile: str, method: str, path: str) -> bool:
    return any(m == method and pattern.fullmatch(path) for m, pattern in _COMPILED.get(profile, []))


def target(store: Store, client_code: str, deployment_id: str, method: str, path: str) -> Deployment:
    """The caller's deployment that answers `method path`, or the error that says why none does."""
    deployment = store.deployments.get(deployment_id, client_code)
    if deployment is None or deployment.status == DeploymentStatus.deleted:
        raise NotFound(f"deployment {deployment_id!r} not found", param="deployment_id")
    if not allowed(deployment.profile, method, path):
        routes = ", ".join(f"{m} {p}" for m, p in ROUTES.get(deployment.profile, ()))
        raise NotFound(f"{method} /{path} is not a route of a {deployment.profile} deployment; its routes: {routes}")
    if wake.asleep(deployment):  # at zero: the route holds the request while it wakes (functions/deployments/wake.py)
        raise wake.Asleep(deployment, deployment.model)
    if not deployment.dedicated:
        raise Conflict(
            f"deployment {deployment.id} is an adapter on a shared server; its seed routes need a server of its own "
            "(deploy it with `dedicated: true`), or call it through /v1/chat/completions"
        )
    if deployment.status != DeploymentStatus.ready or not deployment.endpoint:
        raise ServiceUnavailable(f"deployment {deployment.id} is {deployment.status.value}; retry when it is ready")
    return deployment


def route_of(deployment: Deployment) -> Route:
    e = deployment.endpoint or {}
    return Route(
        deployment_id=deployment.id,
        model=deployment.model,
        kind=str(e.get("kind") or "http"),
        url=e.get("url"),
        target=e.get("target"),
        component=e.get("component"),
    )


async def forward(
    call: Call, method: str, query: str, body: bytes, content_type: str | None, store: Store, settings: Settings
) -> Response:
    """`method call.path?query` with the caller's bytes on the deployment's server; its answer as it came."""
    check_models(call.client_code, body)
    if call.route.kind == "sagemaker":
        from functions.deployments import proxy_sagemaker

        return await proxy_sagemaker.forward_seed(call, method, body, content_type, store, settings)
    import aiohttp

    from functions.deployments.proxy import session

    headers = {
        "X-Request-ID": call.request_id or "",
        "X-Tenant-ID": call.client_code,  # the control plane's word: never the caller's header
        **({"Content-Type": content_type} if content_type else {}),
        **({"X-User-ID": call.user} if call.user else {}),
    }
    if settings.inference_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.inference_api_key.get_secret_value()}"
    url = f"{call.route.url}{call.path}" + (f"?{query}" if query else "")
    sent = time.perf_counter()
    try:
        timeout = aiohttp.ClientTimeout(total=settings.proxy_timeout_seconds)
        async with session().request(method, url, data=body or None, headers=headers, timeout=timeout) as upstream:
            content = await upstream.read()
            status, media = upstream.status, upstream.headers.get("content-type", "application/json")
    except (aiohttp.ClientError, TimeoutError) as exc:
        call.timing.upstream += time.perf_counter() - sent
        log("warning", "inference server did not answer", deployment_id=call.route.deployment_id, error=repr(exc))
        call.record_later(store, 502, f"the inference server did not answer ({type(exc).__name__})")
        raise UpstreamError(f"deployment {call.route.deployment_id} did not answer: {type(exc).__name__}") from exc
    call.timing.upstream += time.perf_counter() - sent
    return answer(call, status, content, media, store)


def check_models(client_code: str, body: bytes) -> None:
    """Seed 002's `model` may name an adapter, and a tenant's server may carry other tenants' adapters: a request
    may name only its own `ft:` models (another tenant's is as unknown as one that does not exist)."""
    try:  # parsed, so that an escaped `\u0066t:` is read as the server will read it
        names = [v for v in _strings(json.loads(body)) if v.startswith("ft:")] if body else []
    except ValueError:  # not JSON (a multipart upload): its text as it is
        names = [m.group(1) for m in _FT_ID.finditer(body.decode(errors="replace"))]
    for name in names:
        if _tenant_of(name) != client_code:
            raise NotFound(f"model {name!r} not found", param="model", code="model_not_found")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def hide_other_adapters(content: bytes, client_code: str) -> bytes:
    """An answer naming adapters (seed 002's /info lists the server's) names only the caller's."""
    text = content.decode(errors="replace")
    if "ft:" not in text:
        return content
    shown = _FT_ID.sub(lambda m: m.group(0) if _tenant_of(m.group(1)) == client_code else '"<another model>"', text)
    return shown.encode()


_FT_ID = re.compile(r'"(ft:[^"\\]*)"')


def _tenant_of(model_id: str) -> str | None:
    parts = model_id.rsplit(":", 3)  # ft:{base}:{tenant}:{suffix}:{job_id}; the base may contain ':' never
    return parts[1] if len(parts) == 4 else None


def answer(call: Call, status: int, content: bytes, media: str, store: Store) -> Response:
    """The server's answer for the caller: as it came, but other tenants' adapters hidden, an error's messages
    redacted, and a refused server key turned into the platform's 502 (the caller did nothing wrong)."""
    if status in (401, 403):
        raise rejected(status, content, [call.route.model])
    content = hide_other_adapters(content, call.client_code)
    if status >= 400:
        content = redacted(content, [call.route.model])
        log_it = BackgroundTask(call.record, store, status, content[:500].decode(errors="replace"))
    else:
        log_it = BackgroundTask(call.record_answer, store, status, content)
    return Response(content, status_code=status, media_type=media, background=log_it)


def redacted(content: bytes, own: list[str]) -> bytes:
    """A seed error body with its text fields redacted for the tenant (a server's messages name paths, addresses)."""
    body: Any = None
    with contextlib.suppress(ValueError):
        body = json.loads(content)
    if not isinstance(body, dict):
        text = redact.for_tenant(content.decode(errors="replace"), own)
        return json.dumps({"error": "inference_error", "message": text}).encode()
    return json.dumps(_scrub(body, own, False)).encode()


_TEXT_KEYS = frozenset({"message", "detail", "details", "error", "errors", "msg"})


def _scrub(value: Any, own: list[str], text: bool) -> Any:
    """Redact the strings under the keys that carry messages; ids, timestamps and codes stay as they are."""
    if isinstance(value, str):
        return redact.for_tenant(value, own) if text else value
    if isinstance(value, dict):
        return {k: _scrub(v, own, text or k in _TEXT_KEYS) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, own, text) for v in value]
    return value
