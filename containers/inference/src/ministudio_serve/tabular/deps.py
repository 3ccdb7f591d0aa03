"""The tabular routes' dependencies: the service (built on first use from the server's settings), the tenant the
control plane names in `X-Tenant-ID`, and a route class that answers a bad feature with 422 naming it."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.routing import APIRoute

from ministudio_serve.errors import ApiError, error_response, request_id_of
from ministudio_serve.tabular.schema import InputInvalid
from ministudio_serve.tabular.service import TabularService

DEFAULT_TENANT = "default"
_TENANT = re.compile(r"^[a-z][a-z0-9-]{1,31}$")  # DESIGN.md's client_code
_build = threading.Lock()


def get_tabular(request: Request) -> TabularService:
    service: TabularService | None = getattr(request.app.state, "tabular", None)
    if service is None:
        with _build:
            service = getattr(request.app.state, "tabular", None)
            if service is None:
                server = request.app.state.server
                service = TabularService.from_settings(server.settings, server.request_log)
                service.on_cache = lambda hit: server.metrics.cache_lookup("prediction", hit)
                request.app.state.tabular = service
    return service


def get_tenant(x_tenant_id: Annotated[str | None, Header(alias="X-Tenant-ID")] = None) -> str:
    """The server holds one key, the control plane's; it names the tenant it calls for (DESIGN.md, tenancy)."""
    tenant = (x_tenant_id or "").strip() or DEFAULT_TENANT
    if not _TENANT.match(tenant):
        raise ApiError(400, "X-Tenant-ID must be 2-32 of [a-z0-9-], starting with a letter", code="invalid_tenant")
    return tenant


def request_id(request: Request) -> str:
    return request_id_of(request)


TabularDep = Annotated[TabularService, Depends(get_tabular)]
TenantDep = Annotated[str, Depends(get_tenant)]
RequestIdDep = Annotated[str, Depends(request_id)]


class TabularRoute(APIRoute):
    """Answers InputInvalid with 422 and the seed error body, `details` listing every bad feature."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except InputInvalid as exc:
                param = f"input_data.{exc.errors[0]['field']}"
                details = {"code": "invalid_input", "errors": exc.errors}  # seed 002's details: an object
                return error_response(request.url.path, 422, str(exc), request_id_of(request), None, param, details)

        return route
