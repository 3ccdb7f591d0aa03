"""The reconciler's deployment pass: re-send deploys whose message was lost, move every deployment to where its
backend says it is (ready, idle, failed, gone, still deleting), and put zero-minimum deployments idle past their
`idle_seconds` to sleep (functions/deployments/idle.py)."""

from __future__ import annotations

from typing import Any

from functions.compute.serving import ServingBackend
from functions.core.models import DeploymentStatus, now
from functions.core.observability import log
from functions.core.settings import Settings
from functions.deployments import idle
from functions.deployments.lifecycle import refresh
from functions.store.cache import Cache
from functions.store.mongo import Store
from functions.store.queues import Queues

D = DeploymentStatus


def reconcile_deployments(
    store: Store, cache: Cache, queues: Queues, backend: ServingBackend, settings: Settings
) -> dict[str, Any]:
    report: dict[str, Any] = {"deploys_resent": [], "deployments_changed": {}, "deployments_idle": []}
    stale = now() - settings.reconcile_stale_seconds
    for deployment in store.deployments.in_status([D.pending.value]):
        if deployment.updated_at < stale:
            queues.send_deployment(deployment.id, "deploy")
            store.deployments.update(deployment.id, [D.pending.value])  # touch: re-sent once per period
            report["deploys_resent"].append(deployment.id)
    for deployment in store.deployments.in_status([D.deploying.value, D.ready.value, D.idle.value, D.deleting.value]):
        try:
            after = refresh(store, cache, backend, settings, deployment)
        except Exception as exc:  # one backend hiccup must not stop the pass for everyone else
            log("warning", "reconcile: deployment refresh failed", deployment_id=deployment.id, error=str(exc))
            continue
        if after.status != deployment.status:
            report["deployments_changed"][deployment.id] = after.status.value
    try:
        report["deployments_idle"] = idle.sweep(store, cache, backend, settings)
    except Exception as exc:  # the next pass tries again
        log("warning", "reconcile: idle sweep failed", error=str(exc))
    if report["deploys_resent"] or report["deployments_changed"] or report["deployments_idle"]:
        log("info", "reconcile: deployments", **report)
    return report
