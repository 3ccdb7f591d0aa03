"""The eks serving backend: one Deployment + Service + KEDA ScaledObject per deployment (manifests in serving.py).

Adapters are not pushed to servers. Every replica resolves `ft:{base}:{tenant}:{suffix}:{job_id}` ids on demand
from the artifacts bucket (`--adapter-source`) and keeps MAX_LORAS of them in an LRU, so a replica KEDA adds later
serves every adapter too; POSTing `/v1/load_lora_adapter` to today's pods would miss tomorrow's. `add_adapter`
therefore checks that the adapter lives where the servers will look and records it on the Deployment (an
annotation, which does not roll the pods), so `status` lists it. One server serves its base model and every adapter,
so an adapter's endpoint is the deployment's.

The endpoint is the Service's internal NLB (serving.py): `ready` needs ready pods and the load balancer's hostname
(serving_status.py).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from functions.compute.k8s import serving, serving_status
from functions.compute.k8s.client import (
    DEPLOYMENTS,
    EVENTS,
    PODS,
    SECRETS,
    SERVICES,
    ClientHolder,
    Conflict,
    Kind,
    KubeClient,
    KubeError,
    NotFound,
    Resource,
)
from functions.compute.serving import AdapterSpec, Endpoint, EndpointState, EndpointStatus, ServingSpec
from functions.core.settings import Settings, get_settings

_ATTEMPTS = 5  # optimistic-concurrency retries for annotation updates racing each other
SCALED_OBJECTS = Kind.custom(serving.SCALED_OBJECT[0], serving.SCALED_OBJECT[2])


class EksServingBackend(ClientHolder):
    name = "eks"

    def __init__(self, settings: Settings | None = None, *, client: KubeClient | None = None) -> None:
        super().__init__(settings or get_settings(), client)

    def _in_namespace(self, kind: Kind) -> Resource:
        return self.client.resource(kind, self.settings.eks_namespace)

    # --- the protocol ---------------------------------------------------------------------------------------
    def deploy(self, spec: ServingSpec) -> EndpointStatus:
        """Create what is missing and keep what exists: a redelivered deploy, or one that died halfway, completes
        the set without touching objects that are already there."""
        s = self.settings
        serving.replica_range(spec.min_replicas, spec.max_replicas)  # refuse a bad range before creating anything
        self._put_secret()
        bodies = {
            DEPLOYMENTS: serving.render_deployment(spec, s),
            SERVICES: serving.render_service(spec, s),
            SCALED_OBJECTS: serving.render_scaled_object(spec, s),
        }
        for kind, body in bodies.items():
            with contextlib.suppress(Conflict):  # already there: deploy is idempotent by name
                self._in_namespace(kind).create(body)
        return self.status(spec.name)

    def status(self, name: str) -> EndpointStatus:
        try:
            deployment = self._in_namespace(DEPLOYMENTS).get(name)
        except NotFound:
            return EndpointStatus(name, EndpointState.missing)
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        pods: list[dict[str, Any]] = []
        if not ready:  # only then do the pods' reasons matter (unschedulable, image pull, crash loop)
            selector = f"{serving.POD_DEPLOYMENT_LABEL}={name}"
            pods = self._in_namespace(PODS).list(label_selector=selector)
        status = serving_status.to_status(name, deployment, pods)
        if status.state is not EndpointState.ready:
            return status
        # Pods are ready: the endpoint is the Service's load balancer, once the controller has provisioned it.
        try:
            service: dict[str, Any] | None = self._in_namespace(SERVICES).get(name)
        except NotFound:
            service = None
        events = self._service_events(name) if service and not serving.load_balancer_url(service) else []
        return serving_status.with_load_balancer(status, service, events)

    def scale(self, name: str, min_replicas: int, max_replicas: int) -> EndpointStatus:
        """The ScaledObject owns the range; the Deployment's replicas are moved into it at once, so a shrunk maximum
        does not wait for KEDA's next poll."""
        bounds = serving.replica_range(min_replicas, max_replicas)
        deployments = self._in_namespace(DEPLOYMENTS)
        try:
            current = deployments.get(name)
        except NotFound:
            return EndpointStatus(name, EndpointState.missing)
        self._in_namespace(SCALED_OBJECTS).patch(name, {"spec": bounds})
        replicas = int((current.get("spec") or {}).get("replicas") or 0)
        patch = {
            "metadata": {
                "annotations": {serving.ANNOTATION_MIN: str(min_replicas), serving.ANNOTATION_MAX: str(max_replicas)}
            },
            "spec": {"replicas": min(max(replicas, min_replicas), max_replicas)},
        }
        deployments.patch(name, patch)
        return self.status(name)

    def delete(self, name: str) -> EndpointStatus:
        """ScaledObject first, so KEDA stops scaling what is being removed; the Deployment goes in the foreground,
        so `deleting` lasts until its pods are gone and a later call answers `missing`."""
        found = False
        for kind in (SCALED_OBJECTS, SERVICES, DEPLOYMENTS):
            try:
                self._in_namespace(kind).delete(name)
                found = True
            except NotFound:
                continue
        if not found:
            return EndpointStatus(name, EndpointState.missing)
        return EndpointStatus(name, EndpointState.deleting, message="deleting the Deployment and its pods")

    def add_adapter(self, name: str, adapter: AdapterSpec) -> EndpointStatus:
        """Servers load adapters on demand: check the adapter is where they will look, then record it."""
        expected = self._resolved_uri(adapter.model_id)
        if expected is None:
            raise ValueError(f"{adapter.model_id!r} is not an ft:{{base}}:{{tenant}}:{{suffix}}:{{job_id}} model id")
        if adapter.artifact_uri.rstrip("/") != expected.rstrip("/"):
            raise ValueError(
                f"adapter {adapter.model_id} is at {adapter.artifact_uri}, but servers resolve it at {expected}"
            )
        return self._change_adapters(name, lambda ids: [*ids, adapter.model_id] if adapter.model_id not in ids else ids)

    def remove_adapter(self, name: str, model_id: str) -> EndpointStatus:
        """Forgets the record; a replica that holds the adapter drops it when its LRU needs the slot."""
        return self._change_adapters(name, lambda ids: [i for i in ids if i != model_id])

    def adapter_endpoint(self, name: str, model_id: str) -> Endpoint | None:
        """The deployment's own endpoint: its servers resolve every adapter of their base model on demand (the
        request's `model` picks it), so there is no per-adapter address. None while it has none (not ready, no load
        balancer yet, or gone)."""
        return self.status(name).endpoint

    # --- helpers ----------------------------------------------------------------------------------------------
    def _put_secret(self) -> None:
        """The server key Secret, written on every deploy so a rotated INFERENCE_API_KEY reaches new pods."""
        body = serving.render_secret(self.settings)
        secrets = self._in_namespace(SECRETS)
        try:
            secrets.create(body)
        except Conflict:
            secrets.patch(serving.SECRET_NAME, {"stringData": body["stringData"]})

    def _service_events(self, name: str) -> list[dict[str, Any]]:
        """Events about the Service (the load balancer controller reports failures there); best effort."""
        selector = f"involvedObject.kind=Service,involvedObject.name={name}"
        try:
            return self._in_namespace(EVENTS).list(field_selector=selector)
        except KubeError:
            return []

    def _resolved_uri(self, model_id: str) -> str | None:
        if not model_id.startswith("ft:"):
            return None
        parts = model_id[3:].rsplit(":", 3)
        if len(parts) != 4 or not all(parts):
            return None
        _, tenant, _, job_id = parts
        return serving.adapter_source(self.settings).format(tenant=tenant, job_id=job_id)

    def _change_adapters(self, name: str, change: Any) -> EndpointStatus:
        deployments = self._in_namespace(DEPLOYMENTS)
        for _ in range(_ATTEMPTS):
            try:
                current = deployments.get(name)
            except NotFound:
                raise LookupError(f"deployment {name} does not exist on the cluster") from None
            meta = current.get("metadata") or {}
            ids = list(json.loads((meta.get("annotations") or {}).get(serving.ANNOTATION_ADAPTERS) or "[]"))
            wanted = change(ids)
            if wanted == ids:
                return self.status(name)
            # resourceVersion makes the merge patch conditional: a concurrent change answers 409 and we re-read.
            patch = {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "annotations": {serving.ANNOTATION_ADAPTERS: json.dumps(wanted)},
                }
            }
            try:
                deployments.patch(name, patch)
            except Conflict:
                continue
            return self.status(name)
        raise RuntimeError(f"deployment {name}: adapters changed concurrently {_ATTEMPTS} times; try again")
