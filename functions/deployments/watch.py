"""Deployment records that follow their servers at once: a backend that sees a server get ready, exit or restart
(the local backend's supervisor does) calls the listener made here, which refreshes every deployment on that server,
its own and the adapters riding on it. Each refresh drops the route cache of what it changed, so a chat right after
a crash is told the deployment is restarting (or failed) instead of being sent to a dead port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from functions.core.models import DeploymentStatus
from functions.core.observability import log
from functions.core.settings import Settings

D = DeploymentStatus


def follow(settings: Settings) -> Callable[[Any, str], None]:
    def server_changed(backend: Any, name: str) -> None:
        from functions.deployments.lifecycle import refresh_quietly
        from functions.store.cache import get_cache
        from functions.store.mongo import get_store

        store, cache = get_store(), get_cache()
        on_it = [d for d in store.deployments.in_status([D.deploying.value, D.ready.value]) if d.name == name]
        on_it.sort(key=lambda d: not d.dedicated)  # the server's own deployment first: riders read its record
        for deployment in on_it:
            after = refresh_quietly(store, cache, backend, settings, deployment)
            if after.status != deployment.status:
                log("info", "deployment follows its server", deployment_id=deployment.id, status=after.status.value)

    return server_changed
