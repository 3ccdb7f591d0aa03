"""The deployment half of the dispatch worker, and `refresh`, which moves a deployment to where its backend is.

Every step is a conditional write and every backend call is idempotent by the deployment's backend name, so a
redelivered message, a reconciler pass and a GET racing each other still end in one server and one state.
A shared server (a base deployment hosting other deployments' adapters) outlives its own deployment's deletion
until its last rider is gone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from functions.compute.serving import AdapterSpec, EndpointState, EndpointStatus, ServingBackend, ServingSpec
from functions.core.models import Deployment, DeploymentStatus, now
from functions.core.observability import log
from functions.core.settings import Settings
from functions.deployments import faults, idle, redact
from functions.deployments.route_cache import invalidate_route
from functions.store.cache import Cache
from functions.store.mongo import Store

D = DeploymentStatus
MOVING = [D.pending.value, D.deploying.value]


def handle(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, deployment_id: str, action: str
) -> None:
    deployment = store.deployments.get(deployment_id)
    if deployment is None:
        log("warning", "dispatch: no such deployment; message dropped", deployment_id=deployment_id)
        return
    if action == "deploy":
        deploy(store, cache, backend, settings, deployment)
    elif action == "delete":
        teardown(store, cache, backend, deployment)
    else:
        raise ValueError(f"unknown deployment action {action!r}")


def spec_for(deployment: Deployment, settings: Settings) -> ServingSpec:
    adapters: tuple[AdapterSpec, ...] = ()
    if deployment.kind == "fine_tuned" and deployment.adapter_uri:
        adapters = (AdapterSpec(deployment.model, deployment.adapter_uri, deployment.client_code),)
    return ServingSpec(
        deployment_id=deployment.id,
        name=deployment.name,
        tenant=deployment.client_code,
        model=deployment.base_model,
        gpu_count=deployment.gpu_count,
        min_replicas=deployment.min_replicas,
        max_replicas=deployment.max_replicas,
        prometheus_threshold=deployment.prometheus_threshold,
        idle_seconds=deployment.idle_seconds,
        adapters=adapters,
        profile="tabular" if deployment.profile == "tabular" else "llm",
    )


def deploy(store: Store, cache: Cache, backend: ServingBackend, settings: Settings, deployment: Deployment) -> None:
    if deployment.status == D.pending:
        deployment = store.deployments.transition(deployment.id, [D.pending.value], D.deploying.value) or deployment
    if deployment.status != D.deploying:
        return  # redelivered after it moved on
    if not deployment.dedicated:
        _attach(store, cache, backend, settings, deployment)
        return
    status = _create(store, cache, backend, settings, deployment)
    if status is None:
        return
    after = apply(store, cache, backend, settings, deployment, status)
    if after.status == D.failed:  # failed (timed out, or a reader saw it fail) while we created it: none may linger
        backend.delete(deployment.name)


def _create(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, deployment: Deployment
) -> EndpointStatus | None:
    """backend.deploy. An error worth another try (throttled, a 5xx, no answer) raises, so SQS redelivers the
    message (or the reconciler's next pass tries again) and the deploy, idempotent by name, resumes. A refusal for
    good (quota, validation, a bad image) removes what the attempt created and fails the deployment with the reason:
    None."""
    try:
        return backend.deploy(spec_for(deployment, settings))
    except Exception as exc:
        if faults.transient(exc):
            log("warning", "deploy: backend error, to be retried", deployment_id=deployment.id, error=repr(exc))
            raise
        _clean_up(backend, deployment)
        _fail(store, cache, deployment, "deploy_failed", f"{type(exc).__name__}: {exc}")
        return None


def _clean_up(backend: ServingBackend, deployment: Deployment) -> None:
    """Delete whatever a refused deploy left (a SageMaker model and config without their endpoint, a Deployment
    without its Service). A transient failure here re-raises: the redelivered message deploys (refused again) and
    cleans up again; a permanent one is logged and the deployment fails all the same."""
    try:
        backend.delete(deployment.name)
    except Exception as exc:
        if faults.transient(exc):
            raise
        log("warning", "deploy: cleaning up after a refusal failed", deployment_id=deployment.id, error=repr(exc))


def _attach(store: Store, cache: Cache, backend: ServingBackend, settings: Settings, deployment: Deployment) -> None:
    """Load the adapter on the host's server; a host that went away makes this deployment get its own."""
    host = store.deployments.get(deployment.host_id or "")
    if host is None or host.status not in (D.ready, D.deploying):
        moved = store.deployments.update(
            deployment.id, MOVING, dedicated=True, host_id=None, name=f"{deployment.name}-own"[:63]
        )
        if moved is not None:
            deploy(store, cache, backend, settings, moved)
        return
    if host.status != D.ready:
        return  # the reconciler tries again once the host is ready
    assert deployment.adapter_uri is not None
    try:
        status = backend.add_adapter(
            host.name, AdapterSpec(deployment.model, deployment.adapter_uri, deployment.client_code)
        )
    except (
        ValueError,
        LookupError,
    ) as exc:  # a broken or mismatched adapter: this deployment fails, the host serves on
        # Only a deployment still being attached fails: a racing attach that lost must not demote a ready one.
        _fail(store, cache, deployment, "invalid_adapter", str(exc), expected=[D.deploying.value])
        return
    own = backend.adapter_endpoint(host.name, deployment.model)
    apply(store, cache, backend, settings, deployment, replace(status, endpoint=own or status.endpoint))


def refresh_quietly(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, deployment: Deployment
) -> Deployment:
    """refresh for readers (GET, the proxy): a backend that cannot answer now leaves the record as it was."""
    try:
        return refresh(store, cache, backend, settings, deployment)
    except Exception as exc:  # the reconciler retries; the reader gets the last known state, not a 500
        log("warning", "deployment refresh failed", deployment_id=deployment.id, error=f"{type(exc).__name__}: {exc}")
        return store.deployments.get(deployment.id) or deployment


def refresh(
    store: Store, cache: Cache, backend: ServingBackend, settings: Settings, deployment: Deployment
) -> Deployment:
    """Ask the backend (or, for a rider, the host's record) and apply what it says; returns the current record."""
    if deployment.status in (D.pending, D.deleted, D.failed):
        return deployment
    if deployment.status == D.deleting:
        return teardown(store, cache, backend, deployment) or deployment
    if not deployment.dedicated:
        host = store.deployments.get(deployment.host_id or "")
        if host is not None and host.status in (D.deploying, D.ready, D.idle):
            host = refresh(store, cache, backend, settings, host)
        if host is None or (host.status in (D.failed, D.deleted) and not host.dedicated):
            return _fail(store, cache, deployment, "host_lost", "the server hosting this adapter is gone") or deployment
        if host.status == D.failed:
            return _fail(store, cache, deployment, "host_failed", _host_failure(deployment, host)) or deployment
        if deployment.status == D.ready and host.status == D.deploying and host.status_message:
            # The server is restarting: the adapter comes back with it (reloaded at start), and is re-attached below.
            moved = store.deployments.transition(
                deployment.id, [D.ready.value], D.deploying.value, status_message=host.status_message
            )
            invalidate_route(cache, deployment.client_code, deployment.model)
            return moved or store.deployments.get(deployment.id) or deployment
        deployment = idle.mirror_host(store, cache, deployment, host)  # a rider sleeps and wakes with its server
        if deployment.status == D.deploying and host.status == D.ready:
            _attach(store, cache, backend, settings, deployment)
        return store.deployments.get(deployment.id) or deployment
    return apply(store, cache, backend, settings, deployment, backend.status(deployment.name))


def apply(
    store: Store,
    cache: Cache,
    backend: ServingBackend,
    settings: Settings,
    deployment: Deployment,
    status: EndpointStatus,
) -> Deployment:
    fields: dict[str, Any] = {
        "replicas": status.replicas,
        "ready_replicas": status.ready_replicas,
        "endpoint": _endpoint(status),
        "adapters": list(status.adapters),
    }
    if status.state == EndpointState.ready:
        moved = store.deployments.transition(
            deployment.id, [*MOVING, D.idle.value], D.ready.value, ready_at=now(), status_message=None, **fields
        )
        if moved is None:
            moved = store.deployments.update(deployment.id, [D.ready.value], **fields)
        if moved is not None:
            invalidate_route(cache, moved.client_code, moved.model)
            return moved
    elif status.state == EndpointState.deploying and status.restarting:
        # Its server exited and the backend is restarting it (the backend bounds the attempts): not ready meanwhile.
        moved = store.deployments.transition(
            deployment.id, [D.ready.value], D.deploying.value, status_message=status.message, **fields
        )
        if moved is not None:
            invalidate_route(cache, moved.client_code, moved.model)
            return moved
        return store.deployments.update(deployment.id, MOVING, status_message=status.message, **fields) or deployment
    elif status.state == EndpointState.idle:  # scaled to zero (by the idle sweep, or KEDA and SageMaker themselves)
        return idle.follow(store, cache, deployment, fields)
    elif status.state == EndpointState.deploying:  # a woken deployment's start is timed from its wake-up
        overdue = now() - max(deployment.created_at, deployment.woken_at or 0) > settings.serving_ready_timeout_seconds
        if overdue and deployment.dedicated:
            backend.delete(deployment.name)
            why = f"not ready after {settings.serving_ready_timeout_seconds} s ({status.message or 'starting'})"
            return _fail(store, cache, deployment, "deploy_timeout", why) or deployment
        return store.deployments.update(deployment.id, MOVING, **fields) or deployment
    elif status.state == EndpointState.missing and deployment.status == D.deploying and deployment.dedicated:
        # The dispatch worker may be creating it this very moment; after a quiet period, create it here
        # (idempotent by name): a message lost after the `deploying` write must not leave it hanging.
        if now() - deployment.updated_at > settings.reconcile_stale_seconds:
            store.deployments.update(deployment.id, MOVING)  # touch: once per period
            _create(store, cache, backend, settings, deployment)
        return store.deployments.get(deployment.id) or deployment
    elif status.state in (EndpointState.failed, EndpointState.missing):
        reason = status.message or "the backend has no such deployment"
        return _fail(store, cache, deployment, "deploy_failed", reason, **fields) or deployment
    return store.deployments.get(deployment.id) or deployment


def teardown(store: Store, cache: Cache, backend: ServingBackend, deployment: Deployment) -> Deployment | None:
    if deployment.status != D.deleting:
        return deployment
    if not deployment.dedicated:
        host = store.deployments.get(deployment.host_id or "")
        if host is not None:  # a deleted host may still run, kept for its riders
            try:
                backend.remove_adapter(host.name, deployment.model)
            except (ValueError, LookupError) as exc:  # the host's server is gone or refused: nothing left to unload
                log("warning", "deployment: unloading adapter failed", deployment_id=deployment.id, error=str(exc))
        done = _deleted(store, cache, deployment)
        if host is not None and host.status == D.deleted:
            _release(store, backend, host)  # the last rider of a server whose own deployment is gone
        return done
    riders = [r for r in store.deployments.riders(deployment.id) if r.id != deployment.id]
    if riders:  # keep the server for the adapters riding on it; the last one to go releases it
        log("info", "deployment: server kept for other adapters", deployment_id=deployment.id, riders=len(riders))
        return _deleted(store, cache, deployment)
    state = backend.delete(deployment.name).state
    if state == EndpointState.missing:
        return _deleted(store, cache, deployment)
    return deployment  # still going: the next refresh or reconciler pass finishes it


def _release(store: Store, backend: ServingBackend, host: Deployment) -> None:
    if not any(r.status != D.deleted for r in store.deployments.riders(host.id)):
        backend.delete(host.name)


def _deleted(store: Store, cache: Cache, deployment: Deployment) -> Deployment | None:
    done = store.deployments.transition(deployment.id, [D.deleting.value], D.deleted.value, deleted_at=now())
    invalidate_route(cache, deployment.client_code, deployment.model)
    return done


def _fail(
    store: Store,
    cache: Cache,
    deployment: Deployment,
    code: str,
    message: str,
    expected: list[str] | None = None,
    **fields: Any,
) -> Deployment | None:
    """The owner reads what went wrong for it, redacted (a shared server's messages name other tenants); the
    operator's log gets the whole message."""
    shown = redact.for_tenant(message, own=[deployment.model])
    failed = store.deployments.transition(
        deployment.id,
        expected or [*MOVING, D.ready.value, D.idle.value],
        D.failed.value,
        error={"code": code, "message": shown},
        status_message=None,
        **fields,
    )
    invalidate_route(cache, deployment.client_code, deployment.model)
    if failed is not None:
        log("warning", "deployment failed", deployment_id=deployment.id, code=code, reason=message)
    return failed


def _host_failure(deployment: Deployment, host: Deployment) -> str:
    """A rider learns that its server failed; the host's own reason only when the host is the rider's tenant's."""
    if host.client_code == deployment.client_code:
        return f"the server hosting this adapter failed: {(host.error or {}).get('message', 'failed')}"
    return "the shared server hosting this adapter failed"


def _endpoint(status: EndpointStatus) -> dict[str, Any] | None:
    e = status.endpoint
    return None if e is None else {"kind": e.kind, "url": e.url, "target": e.target, "component": e.component}
