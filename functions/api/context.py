"""Per-request context shared by middleware, error handlers and logs."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from functions.core.observability import correlation_id

request_id_var = correlation_id  # the request id is the log correlation id
tenant_var: ContextVar[str | None] = ContextVar("tenant", default=None)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id(incoming: str | None) -> str:
    """Keep a caller's X-Request-ID when it is sane (so traces join up), else mint one."""
    if incoming and _SAFE_ID.fullmatch(incoming):
        return incoming
    return "req_" + uuid.uuid4().hex


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")
